"""Morphometry of one volume: slice-wise BA/TA (``slices.csv``) and 3D features (``volume.json``)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from microsr import __version__
from microsr.errors import MicrosrError
from microsr.io.atomic import atomic_path
from microsr.morphometry.area import bone_area_fraction
from microsr.morphometry.config import MorphometryConfig
from microsr.morphometry.features3d import FEATURE_NOTES, bone_features_3d
from microsr.morphometry.segment import resolve_threshold, segment
from microsr.morphometry.total_area import choose_total_area
from microsr.volume import Volume

log = logging.getLogger(__name__)


_TA_TEXT = {
    "envelope": "filled periosteal envelope",
    "roi": "whole ROI",
    "mask": "the given ROI mask",
    "nonzero": "voxels != 0 (VOI contour)",
}


@dataclass(frozen=True)
class MorphometryResult:
    """Slice-wise table, 3D features and a description of how they were computed."""

    slices: pd.DataFrame
    features: dict
    info: dict


def morphometry_volume(
    volume: Volume,
    config: MorphometryConfig | None = None,
    *,
    mask: np.ndarray | None = None,
    features_3d: bool = True,
    name: str = "volume",
    progress: bool = True,
) -> MorphometryResult:
    """Segment ``volume`` (see :mod:`microsr.morphometry.segment`) and measure it.

    Parameters
    ----------
    volume
        ``(Z, Y, X)`` volume; calibrated for an mg HA/cm3 threshold.
    mask
        Optional ``(Z, Y, X)`` bool region of interest: TA never extends beyond it
        (under ``ta="auto"`` it is TA).
    features_3d
        Also compute the 3D features (itk-bonemorphometry, local thickness, Conn.D) over
        the TA mask, block by block (:mod:`microsr.morphometry.blocks`).
    progress
        Progress of the 3D features (a bar on a terminal, log lines otherwise).

    Raises
    ------
    MicrosrError
        mg HA/cm3 threshold on uncalibrated data; mask of another shape.
    """
    config = config or MorphometryConfig()
    if mask is not None and tuple(mask.shape) != volume.shape:
        raise MicrosrError(f"{name}: mask shape {tuple(mask.shape)} != volume {volume.shape}")
    threshold = resolve_threshold(volume, config, name=name)
    arr = np.asarray(volume.array, np.float32)
    bone = segment(
        arr, threshold, sigma_vox=config.sigma_vox, calibration=volume.calibration, name=name
    )
    ta = choose_total_area(bone, config, mask, image=arr, name=name)
    _, sy, sx = volume.spacing_mm
    slices = bone_area_fraction(bone, ta.mask, pixel_area_mm2=sy * sx).assign(ta_rule=ta.rule)
    features = (
        bone_features_3d(bone, volume.spacing_mm, mask=ta.mask, progress=progress, name=name)
        if features_3d
        else {}
    )
    info = {
        "threshold": threshold.describe(),
        "threshold_config": config.model_dump(),
        "smoothing": f"2D in-plane Gaussian, sigma {config.sigma_vox} voxels "
        f"= {config.sigma_vox * sy * 1000:.3g} um",
        "ta": _TA_TEXT[ta.rule],
        "ta_rule": ta.rule,
        "ta_reason": ta.reason,
        "spacing_mm": list(volume.spacing_mm),
        "shape": list(volume.shape),
        "feature_notes": FEATURE_NOTES,
        "microsr_version": __version__,
    }
    return MorphometryResult(slices, features, info)


def write_morphometry(result: MorphometryResult, out_dir: str | Path) -> Path:
    """Write ``slices.csv`` and ``volume.json`` into a new folder ``out_dir`` (atomically)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise MicrosrError(f"{out_dir}: output folder exists and is not empty")
    with atomic_path(out_dir, directory=True) as tmp:
        result.slices.to_csv(tmp / "slices.csv", index=False, float_format="%.10g")
        payload = {"features": result.features, **result.info}
        (tmp / "volume.json").write_text(json.dumps(payload, indent=2, allow_nan=True))
    log.info("morphometry written to %s", out_dir)
    return out_dir
