"""Train every candidate on the same split with the same budget, then score and tabulate."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from microsr.compare.candidates import Candidate, CompareConfig
from microsr.compare.scoring import score_split, time_prediction
from microsr.compare.table import BILINEAR, format_table, summary_table
from microsr.data.normalize import NormalizationConfig
from microsr.data.prepare import PrepareConfig, load_dataset_info, prepare_dataset
from microsr.demo import make_pairs, phantom_specimens, slab_specimens
from microsr.errors import MicrosrError
from microsr.inference.checkpoint import load_checkpoint
from microsr.io import read_volume
from microsr.io.atomic import atomic_path
from microsr.models.factory import build_model, count_parameters
from microsr.simulate import AcquisitionConfig
from microsr.training.config import TrainConfig
from microsr.training.device import resolve_device
from microsr.training.train import train

log = logging.getLogger(__name__)

__all__ = ["CompareResult", "make_compare_dataset", "run_compare"]

# More test specimens than the default split: the paired tests need them.
COMPARE_FRACTIONS = (0.5, 0.2, 0.3)


@dataclass(frozen=True)
class CompareResult:
    """Outputs of :func:`run_compare` (also written to ``out_dir``)."""

    slices: pd.DataFrame  # per-slice scores, all candidates and bilinear
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
) -> Path:
    """Simulated LR/HR pairs -> a prepared dataset in ``out_dir/dataset``.

    Phantom specimens (``data=None``) or ``n_specimens`` z-slabs of the HR volume ``data``
    (pseudo-specimens), split by specimen 50/20/30 % into train/val/test.
    """
    out_dir = Path(out_dir)
    acq = AcquisitionConfig(seed=seed)
    if data is None:
        specimens = phantom_specimens(n_specimens, seed=seed)
    else:
        import numpy as np

        hr = read_volume(data, spacing_mm=spacing_mm)
        ref = float(np.percentile(np.asarray(hr.array, np.float32), 99.5))
        acq = acq.model_copy(update={"reference_value": max(ref, 1e-6)})
        specimens = slab_specimens(hr, n_specimens, factor=acq.factor)
    manifest = make_pairs(specimens, out_dir / "data", acq)
    config = PrepareConfig(
        normalization=NormalizationConfig(), split_seed=seed, fractions=COMPARE_FRACTIONS
    )
    return prepare_dataset(manifest, out_dir / "dataset", config, progress=progress)


def _train_config(candidate: Candidate, config: CompareConfig) -> TrainConfig:
    return TrainConfig(
        model=candidate.model,
        loss=candidate.loss,
        grad_weight=candidate.grad_weight,
        epochs=config.epochs,
        max_minutes=config.minutes,
        patch=config.patch,
        batch_size=config.batch_size,
        seed=config.seed,
        device=config.device,
    )


def _epochs(metrics_csv: Path | None) -> int:
    if metrics_csv is None:
        return 0
    return int(pd.read_csv(metrics_csv)["epoch"].max()) + 1


def _write(out_dir: Path, result: CompareResult) -> None:
    for name, frame in (("slices", result.slices), ("table", result.table), ("runs", result.runs)):
        with atomic_path(out_dir / f"{name}.csv") as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(out_dir / "table.md") as tmp:
        Path(tmp).write_text(result.markdown + "\n")


def run_compare(
    dataset_dir: str | Path,
    out_dir: str | Path,
    config: CompareConfig | None = None,
    *,
    progress: bool = False,
) -> CompareResult:
    """Train each candidate, score it and bilinear on the test specimens, tabulate.

    Writes ``runs/<candidate>/`` (checkpoints), ``slices.csv``, ``table.csv`` (long:
    level, candidate, metric, mean, CI, paired tests vs bilinear and vs the reference),
    ``runs.csv`` (epochs reached, parameters, prediction time) and ``table.md``.
    """
    config = config or CompareConfig()
    out_dir = Path(out_dir)
    if (out_dir / "runs").exists():
        raise MicrosrError(f"{out_dir}: already holds a comparison (use another folder)")
    info, splits = load_dataset_info(dataset_dir)
    if not splits["test"]:
        raise MicrosrError(f"{dataset_dir}: the test split is empty")
    shape = tuple(info["specimens"][splits["test"][0]]["crop_yxhw"][2:])
    frames = [score_split(dataset_dir, info, splits["test"], None, name=BILINEAR)]
    runs = []
    for candidate in config.candidates:
        log.info("compare: training %s", candidate.name)
        result = train(dataset_dir, out_dir / "runs" / candidate.name,
                       _train_config(candidate, config), progress=progress)  # fmt: skip
        loaded = load_checkpoint(result.best, device=resolve_device(config.device))
        frames.append(score_split(dataset_dir, info, splits["test"], loaded,
                                  name=candidate.name, tta=config.tta))  # fmt: skip
        runs.append({
            "candidate": candidate.name,
            "epochs": _epochs(result.metrics_csv),
            "params": count_parameters(build_model(candidate.model)),
            "s_per_slice": time_prediction(loaded, shape, tta=config.tta),
        })  # fmt: skip
    slices = pd.concat(frames, ignore_index=True)
    table = summary_table(slices, reference=config.reference)
    runs_df = pd.DataFrame(runs)
    markdown = "\n\n".join(
        f"**{level}-level** (n = {int(table[table.level == level].n.iloc[0])} {level}s)\n\n"
        + format_table(table, runs_df, level=level, reference=config.reference)
        for level in ("specimen", "slice")
    )
    out = CompareResult(slices, table, runs_df, markdown)
    _write(out_dir, out)
    return out
