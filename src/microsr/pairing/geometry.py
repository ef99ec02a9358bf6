"""Geometry checks for LR/HR pairs, done before any slice is cut, and the z convention.

A pair is usable when the two volumes cover the same physical box (within a tolerance, by
default one LR voxel), the LR voxel is an integer multiple of the HR voxel along each
axis (in-plane ``factor``, along z ``z_factor``; an axis may already be at the HR spacing,
e.g. LR slices as thin as HR's) and coarser along at least one.

**The z convention.** Positions are voxel centres (``origin + index * spacing``). An LR
voxel's centre sits at the centre of the HR voxels it covers, as :mod:`microsr.simulate`
makes them: ``origin_lr = origin_hr + (f - 1) / 2 * spacing_hr``. HR slice ``j`` then lies
at the fractional LR slice index ``t_j = (z_hr(j) - origin_lr) / spacing_lr``
(:func:`lr_positions`; ``t_j = (j - (f - 1) / 2) / f`` for an exact pair), and its input is
the LR volume interpolated linearly along z at ``t_j`` (:func:`microsr.pairing.upsample.sample_z`):
with in-plane bilinear upsampling, that is trilinear interpolation of LR onto the HR grid
(``torch.nn.functional.interpolate(mode="trilinear", align_corners=False)``, tested).
Every HR slice whose centre lies inside the LR box (``-0.5 <= t <= Z_lr - 0.5``) is a pair.

The older pairing (microsr 0.1, ``z_grid="lr"``): each LR slice with the HR slice whose
centre is nearest to its own (ties to the lower HR index), :func:`nearest_slices`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microsr.errors import MicrosrError
from microsr.io.spacing import SPACING_RATIO_RTOL, spacing_off
from microsr.volume import Volume


@dataclass(frozen=True)
class PairGeometry:
    """How an LR volume maps onto its HR partner.

    Attributes
    ----------
    factor
        In-plane scale factor (LR voxel size / HR voxel size), an integer.
    hr_index
        ``(Z_lr,)`` index of the HR slice nearest to each LR slice (-1 if none).
    z_factor
        LR slice spacing / HR slice spacing, an integer.
    hr_slices, lr_t
        The HR slices inside the LR box, and the fractional LR index ``t`` of each (the
        HR-grid pairs).
    offset_mm
        ``(z, y, x)`` offset of the LR box start from the HR box start, in mm.
    extent_diff_mm
        ``(z, y, x)`` LR extent minus HR extent, in mm.
    """

    factor: int
    hr_index: np.ndarray
    offset_mm: tuple[float, float, float]
    extent_diff_mm: tuple[float, float, float]
    z_factor: int = 1
    hr_slices: np.ndarray | None = None
    lr_t: np.ndarray | None = None


def _box_start(volume: Volume) -> np.ndarray:
    return np.asarray(volume.origin_mm) - np.asarray(volume.spacing_mm) / 2


def scale_factor(lr_spacing_mm, hr_spacing_mm, *, name: str = "pair") -> int:
    """Integer in-plane factor from (z, y, x) spacings; raises MicrosrError if not integer."""
    ratios = np.asarray(lr_spacing_mm[1:], float) / np.asarray(hr_spacing_mm[1:], float)
    factor = round(float(ratios.mean()))
    if factor < 1 or any(spacing_off(r, factor, SPACING_RATIO_RTOL) for r in ratios):
        raise MicrosrError(
            f"{name}: in-plane LR/HR spacing ratio must be an integer >= 1, got "
            f"y {ratios[0]:.4g}, x {ratios[1]:.4g} (LR spacing {tuple(lr_spacing_mm)} mm, "
            f"HR spacing {tuple(hr_spacing_mm)} mm)"
        )
    return factor


def z_factor(lr: Volume, hr: Volume, *, name: str = "pair") -> int:
    """LR / HR slice spacing as an integer >= 1; raises MicrosrError naming the numbers."""
    ratio = lr.spacing_mm[0] / hr.spacing_mm[0]
    factor = round(ratio)
    if factor < 1 or spacing_off(ratio, factor, SPACING_RATIO_RTOL):
        raise MicrosrError(
            f"{name}: the LR/HR slice spacing ratio must be an integer >= 1 to pair LR with "
            f"every HR slice, got {ratio:.4g} (LR {lr.spacing_mm[0]:.4g} mm, HR "
            f"{hr.spacing_mm[0]:.4g} mm)"
        )
    return factor


def lr_positions(lr: Volume, hr: Volume) -> np.ndarray:
    """``(Z_hr,)`` fractional LR slice index of every HR slice centre (see the module notes)."""
    z_hr = hr.origin_mm[0] + np.arange(hr.shape[0]) * hr.spacing_mm[0]
    return (z_hr - lr.origin_mm[0]) / lr.spacing_mm[0]


def inside_lr(t: np.ndarray, n_lr: int) -> np.ndarray:
    """Whether fractional LR indices ``t`` lie inside an LR box of ``n_lr`` slices."""
    eps = 1e-6
    return (t >= -0.5 - eps) & (t <= n_lr - 0.5 + eps)


def hr_grid(
    shape: tuple[int, int, int],
    spacing_mm: tuple[float, float, float],
    origin_mm: tuple[float, float, float],
    factor: int,
    *,
    z_factor: int | None = None,
) -> tuple[tuple[int, int, int], tuple[float, float, float], tuple[float, float, float]]:
    """Shape, spacing and origin of the HR grid of an LR volume (``z_factor`` 1: LR z kept).

    Each LR voxel covers ``f`` HR voxels per axis whose first centre is at
    ``c - (f - 1) / 2 * spacing_lr / f`` (the convention of the module notes).
    """
    fz = factor if z_factor is None else z_factor
    factors = (fz, factor, factor)
    new_shape = tuple(n * f for n, f in zip(shape, factors))
    spacing = tuple(s / f for s, f in zip(spacing_mm, factors))
    origin = tuple(o - (f - 1) / 2 * s / f for o, s, f in zip(origin_mm, spacing_mm, factors))
    return new_shape, spacing, origin  # type: ignore[return-value]


def output_positions(n_out: int, z_factor: int) -> np.ndarray:
    """Fractional LR index of each of ``n_out`` HR-grid slices: ``(j - (f - 1) / 2) / f``."""
    return (np.arange(n_out) - (z_factor - 1) / 2) / z_factor


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
    fz = z_factor(lr, hr, name=name)
    if factor == 1 and fz == 1:
        raise MicrosrError(
            f"{name}: the LR voxel {tuple(lr.spacing_mm)} mm is not coarser than the HR voxel "
            f"{tuple(hr.spacing_mm)} mm along any axis; nothing to super-resolve (is the LR "
            "file an HR scan?)"
        )
    tol = tolerance_lr_voxels * np.asarray(lr.spacing_mm)
    ext_diff, offset = check_boxes(lr, hr, name=name, tolerance_mm=tol)
    hr_index = nearest_slices(lr, hr)
    if np.all(hr_index < 0):
        raise MicrosrError(f"{name}: no LR slice lies inside the HR volume along z")
    t = lr_positions(lr, hr)
    inside = np.nonzero(inside_lr(t, lr.shape[0]))[0]
    return PairGeometry(
        factor, hr_index, tuple(offset.tolist()), tuple(ext_diff.tolist()),
        z_factor=fz, hr_slices=inside, lr_t=t[inside],
    )  # fmt: skip


def check_boxes(
    a: Volume, b: Volume, *, name: str, tolerance_mm, labels: tuple[str, str] = ("LR", "HR")
) -> tuple[np.ndarray, np.ndarray]:
    """Check that ``a`` and ``b`` cover the same physical box, per axis within ``tolerance_mm``.

    Returns the ``(z, y, x)`` extent difference and box-start offset ``a - b`` in mm; raises
    :class:`MicrosrError` naming the axis, the numbers and ``labels`` otherwise.
    """
    tol = np.broadcast_to(np.asarray(tolerance_mm, float), (3,))
    ext_diff = np.asarray(a.extent_mm) - np.asarray(b.extent_mm)
    offset = _box_start(a) - _box_start(b)
    (la, lb), axes = labels, "zyx"
    for i in range(3):
        if abs(ext_diff[i]) > tol[i] + 1e-9:
            raise MicrosrError(
                f"{name}: {la} and {lb} extents disagree along {axes[i]}: {la} "
                f"{a.extent_mm[i]:.4f} mm ({a.shape[i]} x {a.spacing_mm[i]:.4g}) vs {lb} "
                f"{b.extent_mm[i]:.4f} mm ({b.shape[i]} x {b.spacing_mm[i]:.4g}); tolerance "
                f"{tol[i]:.4f} mm"
            )
        if abs(offset[i]) > tol[i] + 1e-9:
            raise MicrosrError(
                f"{name}: {la} and {lb} boxes are offset by {offset[i]:.4f} mm along {axes[i]} "
                f"(origins {la} {a.origin_mm[i]:.4f}, {lb} {b.origin_mm[i]:.4f} mm); "
                f"tolerance {tol[i]:.4f} mm"
            )
    return ext_diff, offset
