"""Predict one test specimen with one model and score it through the one evaluation path.

Writes ``models/<model>/evaluation/<specimen>.json`` (the specimen summary: threshold, TA
rule, intensity bias, threshold sweep, 3D features (with the errors against the manifest's
``truth_path`` mask, when given), problems) and then ``<specimen>.csv``
(slice-wise scores), the CSV last, as the marker that the specimen is complete; an existing
CSV means "skip".
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from microsr.data.config import NormalizationConfig
from microsr.data.manifest import SpecimenRow
from microsr.evaluation import ScoreConfig, score_stacks, volume_stacks
from microsr.evaluation.dataset import SCORING
from microsr.evaluation.run import read_truth
from microsr.evaluation.scores import dataset_window
from microsr.inference.predict import predict_file
from microsr.io import read_volume
from microsr.io.atomic import atomic_path
from microsr.study.config import StudyConfig, StudyLayout

log = logging.getLogger(__name__)
BA_COLUMNS = ("ta", "ba_ta_lr", "ba_ta_sr", "ba_ta_hr")
EXAMPLE_KEYS = ("lr", "sr", "hr")


def save_example(stacks, scores: pd.DataFrame, window: tuple[float, float], path: Path) -> None:
    """The middle paired slice of LR (interpolated), SR and HR on the score window, ``.npz``."""
    mid = len(scores) // 2
    images = stacks.read(mid, mid + 1)
    lo, hi = window
    scaled = {
        k: ((images[k][0] - lo) / (hi - lo)).clip(0, 1).astype(np.float16) for k in EXAMPLE_KEYS
    }
    row = scores.iloc[mid]
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh,
            **scaled,
            hr_slice=int(row["hr_slice"]),
            scores=np.array([row[c] for c in ("psnr_lr", "psnr_sr", "ssim_lr", "ssim_sr")]),
        )


def score_config(config: StudyConfig, normalization: dict | NormalizationConfig) -> ScoreConfig:
    """The study's scoring: its morphometry, on the dataset's HR window (window mode)."""
    return ScoreConfig(
        window=dataset_window(normalization),
        morphometry=config.morphometry,
        features_3d=config.features_3d,
    )


def predict_specimen(
    checkpoint: Path, row: SpecimenRow, sr_path: Path, config: StudyConfig
) -> Path:
    """The study's SR file of one specimen: :data:`SCORING` options (fp32, as compare), and
    the trained factors on the specimen's own voxel size with ``config.keep_factors``."""
    update = {"batch_size": config.predict_batch_size, "keep_factors": bool(config.keep_factors)}
    options = SCORING.model_copy(update=update)
    return predict_file(
        checkpoint, row.lr_path, sr_path, spacing_mm=row.lr_spacing_mm, device=config.device,
        options=options, progress=False,
    )  # fmt: skip


def evaluate_specimen(
    layout: StudyLayout,
    model: str,
    row: SpecimenRow,
    checkpoint: Path,
    config: StudyConfig,
    normalization: dict | NormalizationConfig,
) -> Path:
    """Predict (unless done), score and measure one specimen; returns the slice-wise CSV."""
    out = layout.evaluation(model, row.specimen)
    if out.is_file():
        return out
    sr_path = layout.prediction(model, row.specimen)
    if not sr_path.is_file():
        predict_specimen(checkpoint, row, sr_path, config)
    hr = read_volume(row.hr_path, spacing_mm=row.hr_spacing_mm)
    lr = read_volume(row.lr_path, spacing_mm=row.lr_spacing_mm)
    truth = read_truth(row.truth_path, hr) if row.truth_path else None
    stacks = volume_stacks(hr, lr, read_volume(sr_path), name=row.specimen, truth=truth)
    result = score_stacks(stacks, score_config(config, normalization), strict=False)
    problems = result.summary.pop("problems", [])
    scores = result.slices.copy()
    scores.insert(1, "site", row.site)
    scores.insert(0, "model", model)
    save_example(
        stacks,
        scores,
        tuple(result.summary["window"]),
        out.with_name(f"{row.specimen}_example.npz"),
    )
    summary = result.summary | {"model": model, "specimen": row.specimen, "site": row.site}
    with atomic_path(out.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(summary | {"problems": problems}, indent=2, allow_nan=True))
    with atomic_path(out) as tmp:
        scores.to_csv(tmp, index=False, float_format="%.6g")
    for problem in problems:
        log.error("%s", problem)
    log.info("evaluated %s with model %s (%d slices)", row.specimen, model, len(scores))
    return out
