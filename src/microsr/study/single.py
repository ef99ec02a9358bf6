"""One study over one split (no folds): prepare -> train (per site + pooled) -> evaluate
-> stats, resumable (:func:`run_single`).

Both :func:`microsr.study.pipeline.run_study` and each fold of a cross-validation
(:func:`microsr.study.crossval.run_folds`) call :func:`run_single`; it sits below both so
that neither imports the other's caller.
"""

from __future__ import annotations

import json
import logging
import platform
from dataclasses import dataclass, field
from pathlib import Path

from microsr import __version__
from microsr.data.config import NormalizationConfig
from microsr.data.manifest import SpecimenRow, read_manifest
from microsr.data.prepare import load_dataset_info, prepare_dataset
from microsr.data.splits import Splits
from microsr.errors import MicrosrError
from microsr.io.atomic import atomic_path
from microsr.report.record import StudyRecord
from microsr.runtime import progress as make_progress
from microsr.study.analysis import write_stats
from microsr.study.config import StudyConfig, StudyLayout
from microsr.study.evaluate import evaluate_specimen
from microsr.study.models import model_dataset, model_names, train_model

log = logging.getLogger(__name__)


def software_versions() -> dict[str, str]:
    """Versions of Python and the packages whose numbers the study depends on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "microsr": __version__}
    for pkg in ("numpy", "scipy", "torch", "lightning", "scikit-image", "statsmodels", "pandas"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    for pkg in ("itk-bonemorphometry", "matplotlib", "SimpleITK"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def start_study(
    layout: StudyLayout, manifest: Path, config: StudyConfig, title: str | None = None
) -> None:
    """Write ``study.json``, or check that a resumed study has the same config.

    ``title`` (the report's) is not part of the config: a resumed study may change it.
    """
    record = StudyRecord(
        manifest=str(manifest.resolve()),
        config=json.loads(config.model_dump_json()),
        software=software_versions(),
        **({"title": title} if title else {}),
    )
    if layout.study_json.is_file():
        old = StudyRecord.read(layout.study_json)
        if not old.same_config(record):
            raise MicrosrError(
                f"{layout.study_json}: this folder holds a study with another config; "
                "use a new folder (or the same options) to resume"
            )
        if title and old.title != title:
            with atomic_path(layout.study_json) as tmp:
                new = old.model_copy(update={"title": title})
                tmp.write_text(json.dumps(new.to_json(), indent=2))
        return
    if layout.dataset.exists() or (layout.root / "models").exists():
        raise MicrosrError(
            f"{layout.root}: holds study outputs but no study.json; use a new folder"
        )
    with atomic_path(layout.study_json) as tmp:
        tmp.write_text(json.dumps(record.to_json(), indent=2))


@dataclass
class StudyRun:
    """What one study run (a single split: no folds) carries from stage to stage.

    Attributes
    ----------
    rows
        The manifest's specimens.
    splits
        The prepared dataset's ``splits.json``.
    normalization
        The prepared dataset's intensity normalisation (its HR window scores every model).
    problems
        What could not be done, and why (appended by the stages; ``problems.json``).
    """

    layout: StudyLayout
    config: StudyConfig
    rows: list[SpecimenRow]
    splits: Splits
    normalization: NormalizationConfig
    progress: bool = True
    problems: list[str] = field(default_factory=list)

    @property
    def sites(self) -> dict[str, str]:
        """Each specimen's site."""
        return {r.specimen: r.site for r in self.rows}

    @property
    def models(self) -> list[str]:
        """The models the study trains: one per site, and the pooled one (if configured)."""
        return model_names(self.sites, pooled=self.config.pooled)


def _train_all(run: StudyRun) -> dict[str, Path]:
    checkpoints, sites = {}, run.sites
    for model in run.models:
        try:
            dataset = model_dataset(run.layout, model, run.splits, sites)
            checkpoints[model] = train_model(
                run.layout, model, dataset, run.config, progress=run.progress
            )
        except Exception as exc:  # noqa: BLE001 - one model's failure must not end the study
            log.error("model %s: training failed: %s", model, exc)
            run.problems.append(f"model {model!r}: not trained: {exc}")
    return checkpoints


def _evaluate_all(run: StudyRun, checkpoints: dict[str, Path]) -> None:
    test = set(run.splits.test)
    jobs = [(m, c, r) for m, c in checkpoints.items() for r in run.rows if r.specimen in test]
    for model, ckpt, row in make_progress(jobs, desc="evaluate", unit="specimen", every=1):
        try:
            evaluate_specimen(run.layout, model, row, ckpt, run.config, run.normalization)
        except Exception as exc:  # noqa: BLE001 - one specimen must not end the study
            log.error("%s with model %s: evaluation failed: %s", row.specimen, model, exc)
            run.problems.append(f"{row.specimen} with model {model!r}: not evaluated: {exc}")


def run_single(
    manifest: Path,
    layout: StudyLayout,
    config: StudyConfig,
    *,
    progress: bool = True,
    title: str | None = None,
) -> dict:
    """Run (or resume) the study of one split in ``layout`` (``config.folds`` is ignored).

    Returns
    -------
    dict
        ``sites``, ``models``, ``n_evaluations`` and ``problems`` (``stats/summary.json``).

    Raises
    ------
    MicrosrError
        Bad manifest, data that no stage can use, a folder holding another config.
    """
    rows = read_manifest(manifest)
    start_study(layout, manifest, config, title)
    if not (layout.dataset / "dataset.json").is_file():
        prepare_dataset(manifest, layout.dataset, config.prepare, progress=progress)
    info, splits = load_dataset_info(layout.dataset)
    run = StudyRun(layout, config, rows, splits, info.normalization, progress=progress)
    _evaluate_all(run, _train_all(run))
    return write_stats(layout, run.problems)
