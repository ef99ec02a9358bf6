"""One specimen of a prepared dataset: align, crop and store its LR/HR slices on the HR grid.

Each HR slice whose centre lies inside the LR box is a training pair (the z convention of
:mod:`microsr.pairing.geometry`): its input is the LR volume interpolated along z at the
slice's fractional LR index ``t`` (plus ``k`` LR slices of context each side for a 2.5D
model), upsampled bilinearly in-plane. The stored arrays are *raw* (the scan's units, after
the optional mg HA/cm3 conversion): normalisation happens when they are read
(:mod:`microsr.data.dataset`), with the dataset's window fitted on its training specimens.

Files per specimen::

    specimens/<id>/lr.npy   (Z_lr, H, W) float32: every LR slice, bilinear-upsampled, cropped
    specimens/<id>/hr.npy   (N, H, W) float32: the N HR slices inside the LR box, cropped
    specimens/<id>/lr_<d>.npy  further LR scans of the specimen (simulated draws d = 1, 2...)
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from skimage.filters import threshold_otsu

from microsr.calibration import check_threshold_units, to_units
from microsr.data.manifest import SpecimenRow
from microsr.data.normalize import lr_slice_stats, sample_voxels
from microsr.data.prepare_config import PrepareConfig
from microsr.data.records import SpecimenRecord
from microsr.errors import MicrosrError
from microsr.io.atomic import new_memmap
from microsr.pairing.geometry import check_pair
from microsr.pairing.registration import (
    align_lr,
    check_orientation,
    quick_misalignment,
    register_pair,
)
from microsr.pairing.upsample import sample_z, upsample_bilinear, z_span
from microsr.volume import Volume, is_density

log = logging.getLogger(__name__)
CHUNK = 16  # slices processed at once: bounds memory by the chunk, not the volume


@dataclass
class SpecimenSamples:
    """What a training specimen contributes to the dataset's intensity fit."""

    hr_voxels: np.ndarray
    lr_voxels: np.ndarray
    lr_stats: np.ndarray  # (N, 2) LR 1st/99th percentiles per HR-grid pair
    hr_ranges: np.ndarray  # (N, 2) HR min/max per pair


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


def align(lr: Volume, hr: Volume, row: SpecimenRow, config: PrepareConfig) -> tuple:
    """Units, orientation, optional registration and the residual misalignment check.

    Returns ``(lr, hr, geometry, alignment record)``.
    """
    check_orientation(lr, hr, name=row.specimen)
    if config.units == "mgha":
        lr, hr = to_units(lr, "mgha"), to_units(hr, "mgha")
    elif config.window is not None:
        for v in (lr, hr):
            check_threshold_units(v, config.window[1], name=row.specimen)
    alignment: dict = {"registered": config.register_lr}
    if config.register_lr:
        result = register_pair(lr, hr, config.registration, name=row.specimen)
        lr = align_lr(lr, hr, result)
        alignment = {**alignment, "registration": result.as_dict()}
    geo = check_pair(lr, hr, name=row.specimen, tolerance_lr_voxels=config.tolerance_lr_voxels)
    if lr.shape[0] < 2:
        raise MicrosrError(
            f"{row.specimen}: the LR volume has {lr.shape[0]} slice; pairing every HR slice "
            "needs at least 2 LR slices to interpolate between"
        )
    try:
        quick = quick_misalignment(lr, hr, factor=geo.factor, hr_index=geo.hr_index)
    except MicrosrError as exc:  # slices too small to search shifts: not checked
        log.warning("%s: %s", row.specimen, exc)
        return lr, hr, geo, {**alignment, "residual": None}
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
    return lr, hr, geo, {**alignment, "residual": quick}


def write_specimen(
    lr: Volume, hr: Volume, row: SpecimenRow, out: Path, config: PrepareConfig, *, sample: bool
) -> tuple[SpecimenRecord, SpecimenSamples | None]:
    """Write ``out/lr.npy`` and ``out/hr.npy``; return the record and (``sample``) samples."""
    lr, hr, geo, alignment = align(lr, hr, row, config)
    f = geo.factor
    common = (min(lr.shape[1] * f, hr.shape[1]), min(lr.shape[2] * f, hr.shape[2]))
    y0, x0, h, w = roi_box(bone_centre(hr.array[:, : common[0], : common[1]]), common, config.roi)
    out.mkdir(parents=True)
    n_lr, n = lr.shape[0], len(geo.hr_slices)
    lr_mm = _write_lr(lr, f, (y0, x0, h, w), out / "lr.npy")
    hr_mm = new_memmap(out / "hr.npy", dtype=np.float32, shape=(n, h, w))
    for s in range(0, n, CHUNK):
        index = geo.hr_slices[s : s + CHUNK]
        hr_mm[s : s + len(index)] = np.asarray(hr.array[index, y0 : y0 + h, x0 : x0 + w])
    hr_mm.flush()
    record = SpecimenRecord.model_validate({
        "site": row.site,
        "n_slices": n,
        "n_lr_slices": n_lr,
        "factor": f,
        "z_factor": geo.z_factor,
        "crop_yxhw": [y0, x0, h, w],
        "hr_slices": geo.hr_slices.tolist(),
        "lr_t": [round(float(t), 6) for t in geo.lr_t],
        "lr_path": str(row.lr_path),
        "hr_path": str(row.hr_path),
        "lr_spacing_mm": list(lr.spacing_mm),
        "hr_spacing_mm": list(hr.spacing_mm),
        "calibrated": is_density(hr.calibration),
        "calibration": asdict(hr.calibration) if hr.calibration else None,
        "offset_mm": list(geo.offset_mm),
        "alignment": alignment,
        "units": config.units,
        **{k: v for k, v in row.extra.items() if v},
    })  # fmt: skip
    return record, (_samples(lr_mm, hr_mm, geo.lr_t) if sample else None)


def lr_draw_name(draw: int) -> str:
    """File of a specimen's ``draw``-th LR scan: ``lr.npy``, then ``lr_1.npy``, ``lr_2.npy``..."""
    return "lr.npy" if draw == 0 else f"lr_{draw}.npy"


def write_lr_draw(
    lr: Volume,
    hr: Volume,
    row: SpecimenRow,
    out: Path,
    config: PrepareConfig,
    first: SpecimenRecord,
    *,
    draw: int,
) -> None:
    """Write the ``draw``-th LR scan of a specimen (a simulated draw) beside ``out/lr.npy``.

    It is paired like the first (same checks; the crop and HR slices of ``first``, the
    first scan's record from :func:`write_specimen`) and written as ``lr_<draw>.npy``.
    """
    lr, _, geo, _ = align(lr, hr, row, config)
    if lr.shape[0] != first.n_lr_slices or geo.hr_slices.tolist() != first.hr_slices:
        raise MicrosrError(
            f"{row.specimen}: LR draw {draw} has {lr.shape[0]} slices and pairs "
            f"{len(geo.hr_slices)} HR slices; the first draw has {first.n_lr_slices} "
            f"and {first.n_slices}"
        )
    _write_lr(lr, geo.factor, first.crop_yxhw, out / lr_draw_name(draw))


def _write_lr(lr: Volume, factor: int, crop: tuple[int, int, int, int], path: Path) -> np.ndarray:
    """Every LR slice, bilinear-upsampled by ``factor`` and cropped, into ``path``."""
    y0, x0, h, w = crop
    lr_mm = new_memmap(path, dtype=np.float32, shape=(lr.shape[0], h, w))
    for s in range(0, lr.shape[0], CHUNK):
        up = upsample_bilinear(np.asarray(lr.array[s : s + CHUNK], np.float32), factor=factor)
        lr_mm[s : s + len(up)] = up[:, y0 : y0 + h, x0 : x0 + w]
    lr_mm.flush()
    return lr_mm


def _samples(lr_up: np.ndarray, hr: np.ndarray, lr_t: np.ndarray) -> SpecimenSamples:
    """Voxel samples and per-pair range statistics of one training specimen."""
    stats, ranges = [], []
    for s in range(0, len(hr), CHUNK):
        t = lr_t[s : s + CHUNK]
        first, stop = z_span(t, len(lr_up))
        centre = sample_z(np.asarray(lr_up[first:stop]), t, n=len(lr_up), first=first)
        stats.append(lr_slice_stats(np.asarray(centre)).numpy())
        block = np.asarray(hr[s : s + CHUNK]).reshape(len(t), -1)
        ranges.append(np.stack([block.min(1), block.max(1)], axis=1))
    return SpecimenSamples(
        hr_voxels=sample_voxels(hr),
        lr_voxels=sample_voxels(lr_up),
        lr_stats=np.concatenate(stats),
        hr_ranges=np.concatenate(ranges),
    )
