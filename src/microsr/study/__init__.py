"""The whole study of the paper from a manifest: per-site and pooled models, morphometry,
statistics, cross-site generalisation, figures and a report (:func:`run_study`)."""

from microsr.study.config import POOLED, StudyConfig, StudyLayout
from microsr.study.demo import demo_config, phantom_manifest, slab_manifest, study_config
from microsr.study.pipeline import run_study

__all__ = [
    "POOLED",
    "StudyConfig",
    "StudyLayout",
    "demo_config",
    "phantom_manifest",
    "run_study",
    "slab_manifest",
    "study_config",
]
