"""Bilinear upsampling of LR slices onto the HR grid.

This is *the* upsampling function of microsr: preparation, prediction and evaluation all
call it, so the "bilinear" baseline is the same everywhere. It is
``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``, which equals
``skimage.transform.resize(order=1, mode="edge", anti_aliasing=False)`` for integer
upsampling factors (tested); ``scipy.ndimage.zoom``'s default grid does not.
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
