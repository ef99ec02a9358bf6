"""Direct 3D trabecular thickness, separation and connectivity density.

Standard 3D microCT morphometry (Bouxsein et al. 2010, doi:10.1002/jbmr.141):

Tb.Th, Tb.Sp (local thickness)
    Hildebrand & Rüegsegger 1997 (doi:10.1046/j.1365-2818.1997.1340694.x): the local
    thickness of a point of a structure is the diameter of the largest sphere that
    contains the point and lies inside the structure; Tb.Th is its mean over the bone
    voxels, Tb.Sp its mean over the marrow (TA minus bone). The sphere radius at a voxel
    is its Euclidean distance to the nearest voxel centre outside the structure (the
    maintained ``edt`` package, anisotropic voxels allowed); the image border is not a
    wall (structures continue beyond it), the TA boundary is. Diameter = 2 x radius,
    so a plate t voxels thick measures t (even t) or t + 1 (odd t): within one voxel.
    Sphere radii are rounded down (no sphere leaves the structure) to steps of
    ``step_vox`` (0.25) of the smallest voxel size, or 2 % of the radius where that is
    larger: thickness errs low by less than half a voxel or 4 %, and the cost is one
    distance transform per step (about 50 steps up to a radius of 12 voxels, 35 more per
    doubling beyond). Undefined (NaN) when the structure fills the whole box.
Conn.D
    Odgaard & Gundersen 1993 (doi:10.1016/8756-3282(93)90245-6): connectivity
    Conn = 1 - dchi from the Euler characteristic of the bone (26-connected bone,
    :func:`skimage.measure.euler_number`), Conn.D = Conn / TV. ``dchi`` is the box's
    share of the Euler characteristic of the structure it was cut from (their boundary
    correction): chi(box) - 1/2 sum chi(faces) + 1/4 sum chi(edges) - 1/8 sum chi(corners),
    faces 8-connected; the ``1 -`` assumes one bone component (as BoneJ).

(``edt`` is used rather than a local-thickness package: ``localthickness`` is GPL-3.0
and approximates the sphere dilation, ``porespy`` pulls in VTK/numba/dask and quantises
radii to whole voxels, ``itk-thickness3d`` measures medial-axis thickness and returned
nothing on thin rods.)
"""

from __future__ import annotations

import numpy as np
from skimage.measure import euler_number

STRUCTURE_NOTES = {
    "tb_th_lt_mm": "trabecular thickness, mm: mean local thickness of bone "
    "(Hildebrand & Rüegsegger 1997, direct 3D)",
    "tb_sp_lt_mm": "trabecular separation, mm: mean local thickness of marrow (TA - bone)",
    "conn": "connectivity 1 - dchi (Euler characteristic, boundary-corrected), 1",
    "conn_d_per_mm3": "connectivity density Conn / TV, 1/mm3 (Odgaard & Gundersen 1993)",
}


def _distance(mask: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Distance (spacing units) of each ``mask`` voxel to the nearest voxel outside it."""
    import edt  # compiled, multi-threaded exact EDT

    data = np.ascontiguousarray(mask, dtype=np.uint8)
    return np.asarray(edt.edt(data, anisotropy=tuple(float(s) for s in spacing)), np.float32)


def _levels(radius: np.ndarray, step: float, rel: float) -> np.ndarray:
    """Sphere radii: ``radius`` rounded down to ``step``, geometric (ratio 1 + rel) above step/rel."""
    r0 = step / rel
    fine = np.floor(radius / step) * step
    steps = np.floor(np.log(np.maximum(radius, r0) / r0) / np.log1p(rel))
    coarse = r0 * (1 + rel) ** steps
    return np.unique(np.where(radius <= r0, fine, coarse))


def local_thickness(
    mask: np.ndarray, spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0), *,
    step_vox: float = 0.25, rel_step: float = 0.02,
) -> np.ndarray:  # fmt: skip
    """Local thickness map (mm; 0 outside ``mask``) of a 3D structure, see the module notes.

    Parameters
    ----------
    mask
        ``(Z, Y, X)`` bool structure.
    spacing_mm
        Voxel size ``(z, y, x)`` in mm.
    step_vox, rel_step
        Sphere radius step: ``step_vox`` voxels of the smallest spacing, or ``rel_step``
        of the radius where that is larger (one distance transform per step).

    Returns
    -------
    numpy.ndarray
        ``(Z, Y, X)`` float32 diameters in mm; inf where ``mask`` fills the whole box.
    """
    mask = np.asarray(mask, bool)
    out = np.zeros(mask.shape, np.float32)
    if mask.all():
        return np.full(mask.shape, np.inf, np.float32)
    if not mask.any():
        return out
    radius = _distance(mask, spacing_mm)
    step = step_vox * min(spacing_mm)
    eps = 1e-6 * step
    for r in _levels(radius[mask], step, rel_step)[::-1]:
        if r <= 0 or (out[mask] > 0).all():
            break
        todo = mask & (out == 0)
        covered = todo & (_distance(radius < r - eps, spacing_mm) <= r + eps)
        out[covered] = 2.0 * r
    return out


def mean_local_thickness(mask: np.ndarray, spacing_mm, **kwargs) -> float:
    """Volume-weighted mean local thickness of ``mask`` in mm (NaN if empty)."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return float("nan")
    value = float(local_thickness(mask, spacing_mm, **kwargs)[mask].mean())
    return value if np.isfinite(value) else float("nan")


def _runs(line: np.ndarray) -> int:
    """Euler characteristic of a 1D binary line: its number of runs."""
    return int(np.count_nonzero(np.diff(np.concatenate([[0], line.astype(np.int8)])) == 1))


def euler_delta(bone: np.ndarray) -> float:
    """Boundary-corrected Euler characteristic (Odgaard & Gundersen 1993) of ``(Z, Y, X)`` bone."""
    b = np.asarray(bone, bool)
    chi = float(euler_number(b, connectivity=3))
    ends = (0, -1)
    faces = sum(euler_number(np.take(b, i, axis=a), connectivity=2) for a in range(3) for i in ends)
    edges = sum(
        _runs(b[:, i, j]) + _runs(b[i, :, j]) + _runs(b[i, j, :]) for i in ends for j in ends
    )
    corners = sum(int(b[i, j, k]) for i in ends for j in ends for k in ends)
    return float(chi - faces / 2 + edges / 4 - corners / 8)


def structure_features(
    bone: np.ndarray,
    spacing_mm: tuple[float, float, float],
    *,
    mask: np.ndarray | None = None,
    step_vox: float = 0.25,
) -> dict[str, float]:
    """Direct Tb.Th, Tb.Sp (local thickness), Conn and Conn.D of a 3D bone mask.

    Parameters
    ----------
    bone
        ``(Z, Y, X)`` bool segmentation.
    spacing_mm
        Voxel size ``(z, y, x)`` in mm.
    mask
        Optional ``(Z, Y, X)`` bool total volume TV (default: the whole box).
    step_vox
        Local-thickness sphere radius step (voxels).

    Returns
    -------
    dict
        Keys of :data:`STRUCTURE_NOTES` (units there); NaN where undefined.
    """
    bone = np.asarray(bone, bool)
    if bone.ndim != 3:
        raise ValueError(f"bone mask must be (Z, Y, X), got shape {bone.shape}")
    tv = np.ones(bone.shape, bool) if mask is None else np.asarray(mask, bool)
    bone = bone & tv
    tv_mm3 = float(tv.sum()) * float(np.prod(spacing_mm))
    conn = 1.0 - float(euler_delta(bone)) if bone.any() else float("nan")
    return {
        "tb_th_lt_mm": mean_local_thickness(bone, spacing_mm, step_vox=step_vox),
        "tb_sp_lt_mm": mean_local_thickness(tv & ~bone, spacing_mm, step_vox=step_vox),
        "conn": conn,
        "conn_d_per_mm3": float(conn / tv_mm3) if tv_mm3 > 0 else float("nan"),
    }
