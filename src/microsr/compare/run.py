"""Train every candidate on the same split with the same budget, then score and tabulate."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from microsr.compare.candidates import Candidate, CompareConfig
from microsr.compare.scoring import score_candidate, time_prediction
from microsr.compare.table import BILINEAR, format_table, summary_table
from microsr.data.prepare import PrepareConfig, load_dataset_info, prepare_dataset
from microsr.data.prepare_config import file_prepare_config
from microsr.data.records import DatasetInfo
from microsr.data.simulated import simulated_manifest
from microsr.device import resolve_device
from microsr.errors import MicrosrError
from microsr.evaluation.scores import dataset_scoring
from microsr.inference.checkpoint import load_checkpoint
from microsr.io.atomic import atomic_path
from microsr.models.factory import count_parameters
from microsr.simulate.acquisition_file import AcquisitionFile
from microsr.training.config import TrainConfig
from microsr.training.train import train_or_reuse

log = logging.getLogger(__name__)

__all__ = [
    "CompareResult",
    "make_compare_dataset",
    "run_compare",
    "score_runs",
    "train_candidates",
]

# More test specimens than the default split: the paired tests need them.
COMPARE_FRACTIONS = (0.5, 0.2, 0.3)


@dataclass(frozen=True)
class CompareResult:
    """Outputs of :func:`run_compare` (also written to ``out_dir``)."""

    slices: pd.DataFrame  # per-slice scores, all candidates and bilinear
    specimens: pd.DataFrame  # per-specimen scores (intensity bias, 3D morphometry too)
    table: pd.DataFrame  # long table of means, CIs and paired tests
    runs: pd.DataFrame  # per candidate: epochs, params, s_per_slice, minutes
    markdown: str


def make_compare_dataset(
    out_dir: str | Path,
    *,
    data: str | Path | None = None,
    spacing_mm: float | None = None,
    n_specimens: int = 10,
    seed: int = 0,
    progress: bool = False,
    acquisition: AcquisitionFile | None = None,
) -> Path:
    """Simulated LR/HR pairs -> a prepared dataset in ``out_dir/dataset``.

    Phantom specimens (``data=None``) or ``n_specimens`` z-slabs of the HR volume ``data``
    (pseudo-specimens), split by specimen 50/20/30 % into train/val/test, simulated with the
    default protocol or the acquisition file ``acquisition`` (recorded in dataset.json). A
    dataset already prepared there is reused.
    """
    out_dir = Path(out_dir)
    if (out_dir / "dataset" / "dataset.json").is_file():
        log.info("compare: reusing the prepared dataset %s", out_dir / "dataset")
        return out_dir / "dataset"
    manifest = simulated_manifest(
        out_dir / "data", data=data, spacing_mm=spacing_mm, n_specimens=n_specimens, seed=seed,
        file=acquisition,
    )  # fmt: skip
    config = PrepareConfig(split_seed=seed, fractions=COMPARE_FRACTIONS)
    config = file_prepare_config(config, acquisition)
    return prepare_dataset(manifest, out_dir / "dataset", config, progress=progress)


def _train_config(candidate: Candidate, config: CompareConfig) -> TrainConfig:
    return TrainConfig(
        model=candidate.model,
        loss=candidate.loss,
        grad_weight=candidate.grad_weight,
        structure_weight=candidate.structure_weight,
        cldice=candidate.cldice,
        epochs=config.epochs,
        max_minutes=config.minutes,
        patch=config.patch,
        batch_size=config.batch_size,
        seed=config.seed,
        device=config.device,
    )


def _epochs(metrics_csv: Path) -> int:
    if not metrics_csv.is_file():
        return 0
    return int(pd.read_csv(metrics_csv)["epoch"].max()) + 1


def _interleaved_timing(
    models: dict, shape: tuple[int, int], *, tta: bool, rounds: int = 3
) -> dict[str, float]:
    """Best-of-``rounds`` seconds per slice of each model, timed round-robin.

    Interleaving spreads the load of a shared machine over all candidates alike, so the
    ratios are fairer than timing one model after the other.
    """
    best = {name: float("inf") for name in models}
    for _ in range(rounds):
        for name, loaded in models.items():
            t = time_prediction(loaded, shape, tta=tta, repeats=1)
            best[name] = min(best[name], t)
    return best


def _write(out_dir: Path, result: CompareResult) -> None:
    frames = {"slices": result.slices, "specimens": result.specimens, "table": result.table}
    for name, frame in (frames | {"runs": result.runs}).items():
        with atomic_path(out_dir / f"{name}.csv") as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(out_dir / "table.md") as tmp:
        Path(tmp).write_text(result.markdown + "\n")


def train_candidates(
    dataset_dir: str | Path, out_dir: str | Path, config: CompareConfig, *, progress: bool = False
) -> None:
    """Train every candidate into ``out_dir/runs/<name>``; finished matching runs are reused."""
    for candidate in config.candidates:
        run_dir = Path(out_dir) / "runs" / candidate.name
        log.info("compare: %s", candidate.name)
        train_or_reuse(dataset_dir, run_dir, _train_config(candidate, config), progress=progress)


def score_runs(
    dataset_dir: str | Path,
    out_dir: str | Path,
    config: CompareConfig,
    *,
    runs_dir: str | Path | None = None,
) -> CompareResult:
    """Score interpolated LR and every trained candidate on the test specimens; write tables.

    ``runs_dir``: where the trained candidates are (default ``out_dir/runs``).
    """
    out_dir = Path(out_dir)
    runs_dir = Path(runs_dir) if runs_dir is not None else out_dir / "runs"
    info, splits = load_dataset_info(dataset_dir)
    if not splits.test:
        raise MicrosrError(f"{dataset_dir}: the test split is empty")
    shape = DatasetInfo.of(info).specimens[splits.test[0]].crop_yxhw[2:]
    scoring = dataset_scoring(info, morphometry=config.morphometry)
    slices, specimens, models = [], [], {}
    for i, candidate in enumerate(config.candidates):
        run_dir = runs_dir / candidate.name
        loaded = load_checkpoint(run_dir / "best.ckpt", device=resolve_device(config.device))
        if config.tta:
            log.info("compare: scoring %s with test-time augmentation", candidate.name)
        a, b = score_candidate(
            dataset_dir, info, splits.test, loaded, name=candidate.name, config=scoring,
            baseline=BILINEAR if i == 0 else None,
        )  # fmt: skip
        slices.append(a)
        specimens.append(b)
        models[candidate.name] = loaded
    seconds = _interleaved_timing(models, shape, tta=config.tta)
    runs = [
        {
            "candidate": name,
            "epochs": _epochs(runs_dir / name / "logs" / "metrics.csv"),
            "params": count_parameters(loaded.model),
            "s_per_slice": seconds[name],
        }
        for name, loaded in models.items()
    ]
    slices_df = pd.concat(slices, ignore_index=True)
    specimens_df = pd.concat(specimens, ignore_index=True)
    table = summary_table(slices_df, specimens_df, reference=config.reference)
    runs_df = pd.DataFrame(runs)
    markdown = "\n\n".join(
        f"**{level}-level** (n = {int(table[table.level == level].n.iloc[0])} {level}s)\n\n"
        + format_table(table, runs_df, level=level, reference=config.reference)
        for level in ("specimen", "slice")
    )
    out = CompareResult(slices_df, specimens_df, table, runs_df, markdown)
    _write(out_dir, out)
    return out


def run_compare(
    dataset_dir: str | Path,
    out_dir: str | Path,
    config: CompareConfig | None = None,
    *,
    also_test: Sequence[str | Path] = (),
    progress: bool = False,
) -> CompareResult:
    """Train each candidate with the same budget, score it and bilinear on the test specimens.

    Writes ``runs/<candidate>/`` (checkpoints; a finished run with the same config is
    reused, so a second call only re-scores), ``slices.csv``, ``table.csv`` (long: level,
    candidate, metric, mean, CI, paired tests vs bilinear and vs the reference), ``runs.csv``
    (epochs reached, parameters, best-of-3 prediction time per slice) and ``table.md``.

    ``also_test``: further prepared datasets (e.g. the same kind of bones acquired with
    another protocol) whose test specimens every candidate is also scored on, without
    retraining: the cross-acquisition columns, in ``out_dir/cross/<dataset name>/``. Their
    test specimen ids must not be training or validation ids of ``dataset_dir``.
    """
    config = config or CompareConfig()
    for other in also_test:
        check_disjoint(dataset_dir, other)
    train_candidates(dataset_dir, out_dir, config, progress=progress)
    for other in also_test:
        cross = Path(out_dir) / "cross" / Path(other).name
        score_runs(other, cross, config, runs_dir=Path(out_dir) / "runs")
    return score_runs(dataset_dir, out_dir, config)


def check_disjoint(train_dataset: str | Path, test_dataset: str | Path) -> None:
    """Refuse a cross-test whose test bones (ids or subjects) were trained on."""
    info, splits = load_dataset_info(train_dataset)
    other_info, other_splits = load_dataset_info(test_dataset)
    info, other_info = DatasetInfo.of(info), DatasetInfo.of(other_info)

    def bone(meta: DatasetInfo, sid: str) -> str:
        record = meta.specimens.get(sid)
        return (record.subject if record is not None else None) or sid

    seen = {bone(info, s) for s in splits.train + splits.val}
    leak = sorted(s for s in other_splits.test if bone(other_info, s) in seen)
    if leak:
        raise MicrosrError(
            f"{test_dataset}: test specimens {leak} were trained on in {train_dataset}"
        )
