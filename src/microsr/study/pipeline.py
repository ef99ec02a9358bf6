"""``microsr study``: prepare -> train (per site + pooled) -> predict -> evaluate ->
morphometry -> stats -> report, resumable.

Every stage writes its outputs atomically and is skipped when they exist, so running the
same command again continues an interrupted study. A stage that fails for one model or
specimen is recorded in ``problems.json`` and the rest of the study still completes.
"""

from __future__ import annotations

from pathlib import Path

from microsr.data.manifest import read_manifest
from microsr.data.splits import make_folds
from microsr.study.config import StudyConfig, StudyLayout
from microsr.study.crossval import run_folds, subjects_of, write_cv_stats
from microsr.study.single import run_single, start_study


def run_study(
    manifest: str | Path,
    out_dir: str | Path,
    config: StudyConfig | None = None,
    *,
    report: bool = True,
    progress: bool = True,
    title: str | None = None,
) -> dict:
    """Run (or resume) a whole study; see :mod:`microsr.study.config` for the layout.

    ``title`` is the report's (saved in ``study.json``); default: from the manifest's name.
    With ``config.folds = K`` the study is a subject-level K-fold cross-validation: one
    sub-study per fold in ``fold_<i>/``, pooled in ``stats/`` (:mod:`microsr.study.crossval`).

    Returns
    -------
    dict
        ``sites``, ``models``, ``n_evaluations``, ``problems`` and the ``report`` path
        (cross-validation: ``folds``, ``n_evaluations``, ``subjects``, ``problems``, ``report``).

    Raises
    ------
    MicrosrError
        Bad manifest or data that no stage can use (preparation failed), a study folder
        holding another config.
    """
    manifest, config, layout = Path(manifest), config or StudyConfig(), StudyLayout(Path(out_dir))
    if config.folds is None:
        summary = run_single(manifest, layout, config, progress=progress, title=title)
        return _report(layout, summary) if report else summary
    rows = read_manifest(manifest)
    make_folds(subjects_of(rows), k=config.folds, seed=config.prepare.split_seed)  # check
    start_study(layout, manifest, config, title)
    problems = run_folds(manifest, layout.root, config, progress=progress)
    summary = write_cv_stats(layout.root, config.folds, rows, problems)
    return _report(layout, summary) if report else summary


def _report(layout: StudyLayout, summary: dict) -> dict:
    from microsr.report import build_report

    return summary | {"report": str(build_report(layout.root))}
