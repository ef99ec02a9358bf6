"""Upsampling LR slices onto the HR grid: bilinear in-plane, linear along z.

These are *the* interpolation functions of microsr: preparation, prediction and evaluation
all call them, so the baseline is the same everywhere. In-plane,
:func:`upsample_bilinear` is ``torch.nn.functional.interpolate(mode="bilinear",
align_corners=False)``, which equals ``skimage.transform.resize(order=1, mode="edge",
anti_aliasing=False)`` for integer factors (tested; ``scipy.ndimage.zoom``'s default grid
does not). Along z, :func:`sample_z` interpolates linearly between the two LR slices around
a fractional slice index (clamped at the ends); with the z convention of
:mod:`microsr.pairing.geometry`, both together equal trilinear interpolation
(``interpolate(mode="trilinear", align_corners=False)``, tested).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def upsample_bilinear(
    slices: np.ndarray | torch.Tensor, *, factor: int
) -> np.ndarray | torch.Tensor:
    """Upsample 2D slices by an integer factor with bilinear interpolation.

    Parameters
    ----------
    slices
        ``(Y, X)``, ``(N, Y, X)`` or ``(N, C, Y, X)`` array or tensor.
    factor
        Integer scale factor (HR voxels per LR voxel along each in-plane axis).

    Returns
    -------
    Same type and rank as the input, with Y and X multiplied by ``factor``; numpy inputs
    give float32 arrays, tensors keep their dtype (floating) and device.
    """
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    is_numpy = isinstance(slices, np.ndarray)
    t = torch.from_numpy(np.asarray(slices, dtype=np.float32)) if is_numpy else slices
    if not t.is_floating_point():
        t = t.float()
    rank = t.ndim
    if rank not in (2, 3, 4):
        raise ValueError(f"expected (Y, X), (N, Y, X) or (N, C, Y, X), got shape {tuple(t.shape)}")
    t4 = t.reshape((1, 1) + tuple(t.shape)) if rank == 2 else (t[:, None] if rank == 3 else t)
    if factor == 1:
        out = t4
    else:
        out = F.interpolate(t4, scale_factor=factor, mode="bilinear", align_corners=False)
    out = out.reshape(out.shape[-2:]) if rank == 2 else (out[:, 0] if rank == 3 else out)
    return out.numpy() if is_numpy else out


def z_weights(t: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear interpolation along z at fractional slice indices ``t`` of ``n`` slices.

    Returns ``(i0, i1, w)`` with ``value(t) = (1 - w) * slice[i0] + w * slice[i1]``; ``t`` is
    clamped to ``[0, n - 1]`` (edge slices are repeated, as ``align_corners=False``).
    """
    t = np.clip(np.asarray(t, dtype=np.float64), 0.0, n - 1)
    i0 = np.floor(t).astype(np.int64)
    i1 = np.minimum(i0 + 1, n - 1)
    return i0, i1, (t - i0).astype(np.float32)


def sample_z(
    block: np.ndarray | torch.Tensor, t: np.ndarray, *, n: int, first: int = 0
) -> np.ndarray | torch.Tensor:
    """Slices of a volume of ``n`` slices at fractional indices ``t``, from a slab of it.

    Parameters
    ----------
    block
        ``(m, Y, X)`` slices ``first .. first + m - 1`` of the volume; it must hold every
        slice the (clamped) positions ``t`` need.
    t
        Fractional slice indices, any shape ``S``.
    n
        Number of slices of the whole volume (for clamping at its ends).

    Returns
    -------
    ``S + (Y, X)`` array or tensor (the type of ``block``), float32.
    """
    i0, i1, w = z_weights(t, n)
    if isinstance(block, torch.Tensor):
        a, b = block[torch.from_numpy(i0 - first)], block[torch.from_numpy(i1 - first)]
        wt = torch.from_numpy(w).to(block.device)[(...,) + (None,) * 2]
        return a.float() * (1 - wt) + b.float() * wt
    block = np.asarray(block, dtype=np.float32)
    return block[i0 - first] * (1 - w[..., None, None]) + block[i1 - first] * w[..., None, None]


def z_span(t: np.ndarray, n: int) -> tuple[int, int]:
    """``(first, stop)``: the slices that :func:`sample_z` at ``t`` reads."""
    i0, i1, _ = z_weights(t, n)
    return int(i0.min()), int(i1.max()) + 1
