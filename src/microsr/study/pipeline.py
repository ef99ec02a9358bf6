"""``microsr study``: prepare -> train (per site + pooled) -> predict -> evaluate ->
morphometry -> stats -> report, resumable.

Every stage writes its outputs atomically and is skipped when they exist, so running the
same command again continues an interrupted study. A stage that fails for one model or
specimen is recorded in ``problems.json`` and the rest of the study still completes.
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
from microsr.data.splits import make_folds
from microsr.errors import MicrosrError
from microsr.io.atomic import atomic_path
from microsr.runtime import progress as make_progress
from microsr.study.analysis import write_stats
from microsr.study.config import StudyConfig, StudyLayout, StudyRecord
from microsr.study.crossval import run_folds, subjects_of, write_cv_stats
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


def _start(
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
        The prepared dataset's ``splits.json`` (``train``, ``val``, ``test`` specimen ids).
    normalization
        The prepared dataset's intensity normalisation (its HR window scores every model).
    problems
        What could not be done, and why (appended by the stages; ``problems.json``).
    """

    layout: StudyLayout
    config: StudyConfig
    rows: list[SpecimenRow]
    splits: dict[str, list[str]]
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
    test = set(run.splits["test"])
    jobs = [(m, c, r) for m, c in checkpoints.items() for r in run.rows if r.specimen in test]
    for model, ckpt, row in make_progress(jobs, desc="evaluate", unit="specimen", every=1):
        try:
            evaluate_specimen(run.layout, model, row, ckpt, run.config, run.normalization)
        except Exception as exc:  # noqa: BLE001 - one specimen must not end the study
            log.error("%s with model %s: evaluation failed: %s", row.specimen, model, exc)
            run.problems.append(f"{row.specimen} with model {model!r}: not evaluated: {exc}")


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
    rows = read_manifest(manifest)
    if config.folds is not None:
        make_folds(subjects_of(rows), k=config.folds, seed=config.prepare.split_seed)  # check
    _start(layout, manifest, config, title)
    if config.folds is not None:
        problems = run_folds(manifest, layout.root, config, progress=progress)
        summary = write_cv_stats(layout.root, config.folds, rows, problems)
        return _report(layout, summary) if report else summary
    if not (layout.dataset / "dataset.json").is_file():
        prepare_dataset(manifest, layout.dataset, config.prepare, progress=progress)
    info, splits = load_dataset_info(layout.dataset)
    run = StudyRun(layout, config, rows, splits, info.normalization, progress=progress)
    _evaluate_all(run, _train_all(run))
    summary = write_stats(layout, run.problems)
    return _report(layout, summary) if report else summary


def _report(layout: StudyLayout, summary: dict) -> dict:
    from microsr.report import build_report

    return summary | {"report": str(build_report(layout.root))}
