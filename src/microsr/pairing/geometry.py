"""Geometry checks for LR/HR pairs, done before any slice is cut.

A pair is usable when the two volumes cover the same physical box (within a tolerance,
by default one LR voxel) and the in-plane LR voxel is an integer multiple of the HR voxel.
Each LR slice is paired with the HR slice whose centre is nearest to its own centre
(ties go to the lower HR index); the LR slice is upsampled in-plane only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microsr.errors import MicrosrError
from microsr.volume import Volume


@dataclass(frozen=True)
class PairGeometry:
    """How an LR volume maps onto its HR partner.

    Attributes
    ----------
    factor
        In-plane scale factor (LR voxel size / HR voxel size), an integer.
    hr_index
        ``(Z_lr,)`` index of the HR slice paired with each LR slice (-1 if none).
    offset_mm
        ``(z, y, x)`` offset of the LR box start from the HR box start, in mm.
    extent_diff_mm
        ``(z, y, x)`` LR extent minus HR extent, in mm.
    """

    factor: int
    hr_index: np.ndarray
    offset_mm: tuple[float, float, float]
    extent_diff_mm: tuple[float, float, float]


def _box_start(volume: Volume) -> np.ndarray:
    return np.asarray(volume.origin_mm) - np.asarray(volume.spacing_mm) / 2


def scale_factor(lr_spacing_mm, hr_spacing_mm, *, name: str = "pair") -> int:
    """Integer in-plane factor from (z, y, x) spacings; raises MicrosrError if not integer."""
    ratios = np.asarray(lr_spacing_mm[1:], float) / np.asarray(hr_spacing_mm[1:], float)
    factor = round(float(ratios.mean()))
    if factor < 1 or np.any(np.abs(ratios - factor) > 0.01 * factor):
        raise MicrosrError(
            f"{name}: in-plane LR/HR spacing ratio must be an integer >= 1, got "
            f"y {ratios[0]:.4g}, x {ratios[1]:.4g} (LR spacing {tuple(lr_spacing_mm)} mm, "
            f"HR spacing {tuple(hr_spacing_mm)} mm)"
        )
    return factor


def nearest_slices(source: Volume, target: Volume) -> np.ndarray:
    """For each slice of ``source``, the index of the ``target`` slice nearest in z (-1 if outside)."""
    z_src = source.origin_mm[0] + np.arange(source.shape[0]) * source.spacing_mm[0]
    pos = (z_src - target.origin_mm[0]) / target.spacing_mm[0]
    idx = np.ceil(pos - 0.5 - 1e-9).astype(int)  # round half down
    idx[(idx < 0) | (idx >= target.shape[0])] = -1
    return idx


def check_pair(
    lr: Volume, hr: Volume, *, name: str, tolerance_lr_voxels: float = 1.0
) -> PairGeometry:
    """Verify that ``lr`` and ``hr`` cover the same physical box and return the pairing.

    Parameters
    ----------
    lr, hr
        The low- and high-resolution volumes (spacing in mm).
    name
        Specimen id, used in error messages.
    tolerance_lr_voxels
        Allowed difference in extent and box start, in LR voxels, per axis.

    Raises
    ------
    MicrosrError
        Naming the specimen and the numbers, when the spacing ratio is not an integer or
        the boxes disagree by more than the tolerance.
    """
    factor = scale_factor(lr.spacing_mm, hr.spacing_mm, name=name)
    tol = tolerance_lr_voxels * np.asarray(lr.spacing_mm)
    ext_diff = np.asarray(lr.extent_mm) - np.asarray(hr.extent_mm)
    offset = _box_start(lr) - _box_start(hr)
    axes = "zyx"
    for i in range(3):
        if abs(ext_diff[i]) > tol[i] + 1e-9:
            raise MicrosrError(
                f"{name}: LR and HR extents disagree along {axes[i]}: LR {lr.extent_mm[i]:.4f} mm "
                f"({lr.shape[i]} x {lr.spacing_mm[i]:.4g}) vs HR {hr.extent_mm[i]:.4f} mm "
                f"({hr.shape[i]} x {hr.spacing_mm[i]:.4g}); tolerance {tol[i]:.4f} mm"
            )
        if abs(offset[i]) > tol[i] + 1e-9:
            raise MicrosrError(
                f"{name}: LR and HR boxes are offset by {offset[i]:.4f} mm along {axes[i]} "
                f"(origins LR {lr.origin_mm[i]:.4f}, HR {hr.origin_mm[i]:.4f} mm); "
                f"tolerance {tol[i]:.4f} mm"
            )
    hr_index = nearest_slices(lr, hr)
    if np.all(hr_index < 0):
        raise MicrosrError(f"{name}: no LR slice lies inside the HR volume along z")
    return PairGeometry(factor, hr_index, tuple(offset.tolist()), tuple(ext_diff.tolist()))


def hr_grid_origin(lr: Volume, factor: int) -> tuple[float, float, float]:
    """Origin of the in-plane HR grid that an LR volume is upsampled onto (z unchanged).

    LR voxel centre ``c`` covers ``factor`` HR voxels whose first centre is at
    ``c - (factor - 1) / 2 * spacing_hr``.
    """
    z, y, x = lr.origin_mm
    _, sy, sx = lr.spacing_mm
    return (z, y - (factor - 1) / 2 * sy / factor, x - (factor - 1) / 2 * sx / factor)
