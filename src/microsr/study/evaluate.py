"""Predict one test specimen with one model and score it: PSNR/SSIM, BA/TA, 3D morphometry.

Writes ``models/<model>/evaluation/<specimen>.json`` (3D features, the example slice's
file, problems) and then ``<specimen>.csv`` (slice-wise), the CSV last, as the marker that
the specimen is complete; an existing CSV means "skip".
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from microsr.data.manifest import SpecimenRow
from microsr.data.normalize import NormalizationConfig, normalize
from microsr.data.upsample import upsample_bilinear
from microsr.errors import MicrosrError
from microsr.evaluation import evaluate_volumes
from microsr.inference.predict import predict_file
from microsr.io import read_volume
from microsr.io.atomic import atomic_path
from microsr.morphometry.paired import paired_morphometry
from microsr.pairing.geometry import nearest_slices
from microsr.study.config import StudyConfig, StudyLayout
from microsr.volume import Volume

log = logging.getLogger(__name__)
BA_COLUMNS = ("ta", "ba_ta_lr", "ba_ta_sr", "ba_ta_hr")


def save_example(hr: Volume, lr: Volume, sr: Volume, scores: pd.DataFrame, path: Path) -> None:
    """The middle paired slice of LR (upsampled), SR and HR, min-max normalised, as ``.npz``."""
    mid = scores.iloc[len(scores) // 2]
    k, j = int(mid["lr_slice"]), int(mid["hr_slice"])
    f = round(lr.spacing_mm[1] / hr.spacing_mm[1])
    s = int(nearest_slices(lr, sr)[k])
    images = {
        "lr": upsample_bilinear(np.asarray(lr.array[k : k + 1], np.float32), factor=f)[0],
        "sr": np.asarray(sr.array[s], np.float32),
        "hr": np.asarray(hr.array[j], np.float32),
    }
    h = min(a.shape[0] for a in images.values())
    w = min(a.shape[1] for a in images.values())
    norm = NormalizationConfig()
    images = {key: normalize(a[:h, :w], norm).astype(np.float16) for key, a in images.items()}
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh,
            **images,
            lr_slice=k,
            hr_slice=j,
            scores=np.array([mid[c] for c in ("psnr_lr", "psnr_sr", "ssim_lr", "ssim_sr")]),
        )


def _morphometry(hr, lr, sr, config: StudyConfig, sid: str) -> tuple[pd.DataFrame | None, dict]:
    try:
        table, features = paired_morphometry(
            hr, lr, sr, config=config.morphometry, name=sid, features_3d=config.features_3d
        )
    except MicrosrError as exc:
        log.error("%s: no morphometry: %s", sid, exc)
        return None, {"problems": [f"{sid}: no morphometry: {exc}"]}
    return table, features | {"problems": []}


def evaluate_specimen(
    layout: StudyLayout,
    model: str,
    row: SpecimenRow,
    checkpoint: Path,
    config: StudyConfig,
    normalization: NormalizationConfig,
) -> Path:
    """Predict (unless done), score and measure one specimen; returns the slice-wise CSV."""
    out = layout.evaluation(model, row.specimen)
    if out.is_file():
        return out
    sr_path = layout.prediction(model, row.specimen)
    if not sr_path.is_file():
        predict_file(
            checkpoint,
            row.lr_path,
            sr_path,
            spacing_mm=row.lr_spacing_mm,
            device=config.device,
            batch_size=config.predict_batch_size,
            progress=False,
        )
    hr = read_volume(row.hr_path, spacing_mm=row.hr_spacing_mm)
    lr = read_volume(row.lr_path, spacing_mm=row.lr_spacing_mm)
    sr = read_volume(sr_path)
    scores = evaluate_volumes(hr, lr, sr, normalization=normalization, name=row.specimen)
    table, features = _morphometry(hr, lr, sr, config, row.specimen)
    if table is not None:
        scores = scores.merge(table[["lr_slice", *BA_COLUMNS]], on="lr_slice", how="left")
    else:
        scores = scores.assign(**dict.fromkeys(BA_COLUMNS, np.nan))
    scores.insert(1, "site", row.site)
    scores.insert(0, "model", model)
    example = out.with_name(f"{row.specimen}_example.npz")
    save_example(hr, lr, sr, scores, example)
    features |= {"model": model, "specimen": row.specimen, "site": row.site}
    with atomic_path(out.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(features, indent=2, allow_nan=True))
    with atomic_path(out) as tmp:
        scores.to_csv(tmp, index=False, float_format="%.6g")
    log.info("evaluated %s with model %s (%d slices)", row.specimen, model, len(scores))
    return out
