"""``microsr prepare``: manifest of LR/HR volumes -> a streamable dataset of slice pairs.

Layout of a prepared dataset folder::

    dataset.json              factor, normalisation, per-specimen crop and provenance
    splits.json               specimen-level train/val/test split (seeded or user-given)
    specimens/<id>/lr.npy     (N, H, W) float32, LR upsampled (bilinear) to the HR grid, in [0, 1]
    specimens/<id>/hr.npy     (N, H, W) float32, the paired HR slices, in [0, 1]

The ``.npy`` files are memory-mapped when read, so training streams patches from disk.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.lib.format import open_memmap
from pydantic import BaseModel, ConfigDict, Field
from skimage.filters import threshold_otsu
from tqdm.auto import tqdm

from microsr import __version__
from microsr.calibration import check_threshold_units, to_units
from microsr.data.manifest import SpecimenRow, read_manifest
from microsr.data.normalize import NormalizationConfig, normalize
from microsr.data.splits import DEFAULT_FRACTIONS, load_splits, make_splits
from microsr.data.upsample import upsample_bilinear
from microsr.errors import MicrosrError
from microsr.io import read_volume
from microsr.io.atomic import atomic_path
from microsr.pairing.geometry import check_pair
from microsr.pairing.registration import (
    RegistrationConfig,
    align_lr,
    check_orientation,
    quick_misalignment,
    register_pair,
)
from microsr.volume import Volume

log = logging.getLogger(__name__)
CHUNK = 16  # slices processed at once: bounds memory by the chunk, not the volume


class PrepareConfig(BaseModel):
    """Options of :func:`prepare_dataset` (defaults follow the paper)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    roi: int = Field(400, ge=8, description="side of the bone-centred square ROI, in HR voxels")
    normalization: NormalizationConfig = NormalizationConfig()
    split_seed: int = 0
    split_file: Path | None = None
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    tolerance_lr_voxels: float = Field(1.0, gt=0)
    register_lr: bool = Field(False, description="rigidly register each LR scan onto its HR scan")
    registration: RegistrationConfig = RegistrationConfig()
    units: Literal["native", "mgha"] = Field(
        "native", description="convert both scans to mg HA/cm3 (calibration) before normalising"
    )


def bone_centre(hr: np.ndarray) -> tuple[float, float]:
    """Centroid ``(y, x)`` of the Otsu-thresholded mean projection of ``(Z, Y, X)`` HR voxels."""
    proj = np.asarray(hr, dtype=np.float32).mean(axis=0)
    if float(proj.max()) == float(proj.min()):
        return (proj.shape[0] - 1) / 2, (proj.shape[1] - 1) / 2
    ys, xs = np.nonzero(proj > threshold_otsu(proj))
    return float(ys.mean()), float(xs.mean())


def roi_box(
    centre: tuple[float, float], size: tuple[int, int], roi: int
) -> tuple[int, int, int, int]:
    """Square ROI ``(y0, x0, height, width)`` of side ``roi`` around ``centre``, inside ``size``."""
    h, w = min(roi, size[0]), min(roi, size[1])
    y0 = int(np.clip(round(centre[0] - h / 2), 0, size[0] - h))
    x0 = int(np.clip(round(centre[1] - w / 2), 0, size[1] - w))
    return y0, x0, h, w


def _align(lr: Volume, hr: Volume, row: SpecimenRow, config: PrepareConfig) -> tuple:
    """Units, orientation, optional registration and the residual misalignment check."""
    check_orientation(lr, hr, name=row.specimen)
    if config.units == "mgha":
        lr, hr = to_units(lr, "mgha"), to_units(hr, "mgha")
    elif config.normalization.mode == "window":
        for v in (lr, hr):
            check_threshold_units(v, config.normalization.high, name=row.specimen)
    record: dict = {"registered": config.register_lr}
    if config.register_lr:
        result = register_pair(lr, hr, config.registration, name=row.specimen)
        lr = align_lr(lr, hr, result)
        record["registration"] = result.as_dict()
    geo = check_pair(lr, hr, name=row.specimen, tolerance_lr_voxels=config.tolerance_lr_voxels)
    try:
        quick = quick_misalignment(lr, hr, factor=geo.factor, hr_index=geo.hr_index)
    except MicrosrError as exc:  # slices too small to search shifts: not checked
        log.warning("%s: %s", row.specimen, exc)
        return lr, hr, geo, {**record, "residual": None}
    worst = max(abs(s) for s in quick["shift_lr_voxels"])
    if worst > config.tolerance_lr_voxels:
        text = (
            f"{row.specimen}: LR content is shifted by {quick['shift_lr_voxels']} LR voxels "
            f"(y, x) from HR (NCC {quick['ncc_zero']} at zero shift, {quick['ncc_best']} "
            f"at best); tolerance {config.tolerance_lr_voxels} LR voxel"
        )
        if not config.register_lr:
            raise MicrosrError(text + "; enable registration (--register) to align it")
        log.warning("%s, even after registration", text)
    return lr, hr, geo, {**record, "residual": quick}


def _write_specimen(
    lr: Volume, hr: Volume, row: SpecimenRow, out: Path, config: PrepareConfig
) -> dict:
    lr, hr, geo, alignment = _align(lr, hr, row, config)
    f = geo.factor
    k_lr = np.nonzero(geo.hr_index >= 0)[0]
    k_hr = geo.hr_index[k_lr]
    common = (min(lr.shape[1] * f, hr.shape[1]), min(lr.shape[2] * f, hr.shape[2]))
    y0, x0, h, w = roi_box(bone_centre(hr.array[:, : common[0], : common[1]]), common, config.roi)
    out.mkdir(parents=True)
    lr_mm = open_memmap(out / "lr.npy", mode="w+", dtype=np.float32, shape=(len(k_lr), h, w))
    hr_mm = open_memmap(out / "hr.npy", mode="w+", dtype=np.float32, shape=(len(k_lr), h, w))
    constant = 0
    for s in range(0, len(k_lr), CHUNK):
        lr_up = upsample_bilinear(np.asarray(lr.array[k_lr[s : s + CHUNK]]), factor=f)
        lr_crop = lr_up[:, y0 : y0 + h, x0 : x0 + w]
        hr_crop = np.asarray(hr.array[k_hr[s : s + CHUNK], y0 : y0 + h, x0 : x0 + w], np.float32)
        constant += int(np.sum(np.ptp(hr_crop.reshape(len(hr_crop), -1), axis=1) == 0))
        lr_mm[s : s + len(lr_crop)] = normalize(lr_crop, config.normalization)
        hr_mm[s : s + len(hr_crop)] = normalize(hr_crop, config.normalization)
    lr_mm.flush()
    hr_mm.flush()
    if constant:
        log.warning("%s: %d constant HR slice(s) normalised to zeros", row.specimen, constant)
    return {
        "site": row.site,
        "n_slices": len(k_lr),
        "factor": f,
        "crop_yxhw": [y0, x0, h, w],
        "lr_slices": k_lr.tolist(),
        "hr_slices": k_hr.tolist(),
        "lr_path": str(row.lr_path),
        "hr_path": str(row.hr_path),
        "lr_spacing_mm": list(lr.spacing_mm),
        "hr_spacing_mm": list(hr.spacing_mm),
        "calibrated": hr.calibration is not None,
        "constant_hr_slices": constant,
        "offset_mm": list(geo.offset_mm),
        "alignment": alignment,
        "units": config.units,
        **{k: v for k, v in row.extra.items() if v},
    }


def prepare_dataset(
    manifest: str | Path,
    out_dir: str | Path,
    config: PrepareConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Build a prepared dataset folder from a manifest (see the module docstring).

    All pairs are geometry-checked before anything is written; the folder appears only
    when every specimen succeeded (written to a temporary folder, then renamed).

    Raises
    ------
    MicrosrError
        Bad manifest, unreadable volume, inconsistent pair geometry or scale factor.
    """
    out_dir = Path(out_dir)
    config = config or PrepareConfig()
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise MicrosrError(f"{out_dir}: output folder exists and is not empty (use --overwrite)")
    rows = read_manifest(manifest)
    specimens = {r.specimen: r.site for r in rows}
    if config.split_file is not None:
        splits = load_splits(config.split_file, set(specimens))
    else:
        splits = make_splits(specimens, seed=config.split_seed, fractions=config.fractions)
    meta: dict = {}
    with atomic_path(out_dir, directory=True) as tmp:
        for row in tqdm(rows, desc="prepare", unit="specimen", disable=not progress):
            lr = read_volume(row.lr_path, spacing_mm=row.lr_spacing_mm)
            hr = read_volume(row.hr_path, spacing_mm=row.hr_spacing_mm)
            meta[row.specimen] = _write_specimen(
                lr, hr, row, tmp / "specimens" / row.specimen, config
            )
        factors = {m["factor"] for m in meta.values()}
        if len(factors) != 1:
            raise MicrosrError(
                f"{manifest}: specimens have different scale factors {sorted(factors)}"
            )
        info = {
            "format": "microsr-dataset",
            "format_version": 1,
            "microsr_version": __version__,
            "factor": factors.pop(),
            "config": json.loads(config.model_dump_json()),
            "normalization": config.normalization.model_dump(),
            "specimens": meta,
        }
        (tmp / "dataset.json").write_text(json.dumps(info, indent=2))
        (tmp / "splits.json").write_text(json.dumps(splits, indent=2))
    log.info(
        "prepared %d specimens (%d slices) in %s",
        len(meta),
        sum(m["n_slices"] for m in meta.values()),
        out_dir,
    )
    return out_dir


def load_dataset_info(dataset_dir: str | Path) -> tuple[dict, dict]:
    """Read ``dataset.json`` and ``splits.json`` of a prepared dataset."""
    dataset_dir = Path(dataset_dir)
    try:
        info = json.loads((dataset_dir / "dataset.json").read_text())
        splits = json.loads((dataset_dir / "splits.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MicrosrError(f"{dataset_dir}: not a prepared microsr dataset ({exc})") from None
    if info.get("format") != "microsr-dataset":
        raise MicrosrError(f"{dataset_dir}/dataset.json: not a microsr dataset")
    return info, splits
