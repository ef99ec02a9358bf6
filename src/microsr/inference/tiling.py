"""Tiled application of a fully convolutional model to slices too large for memory.

Tiles overlap and are blended with positive tent weights, accumulated in float64 on the
output device (kept apart from the compute device, like MONAI's ``sw_device`` vs
``device``), so an identity model reproduces its input exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def _starts(size: int, tile: int, stride: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, stride))
    return starts + [size - tile]


def _tent(n: int, device) -> torch.Tensor:
    i = torch.arange(n, device=device, dtype=torch.float64)
    return torch.minimum(i + 1, n - i)


def predict_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    *,
    tile: int,
    overlap: int,
    compute_device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Apply ``fn`` to ``(N, C, H, W)`` images in ``tile`` x ``tile`` windows.

    Parameters
    ----------
    fn
        Maps ``(N, C, h, w)`` to ``(N, C_out, h, w)`` on ``compute_device``.
    images
        Input batch; its device is where the stitched output is accumulated.
    tile, overlap
        Window side and overlap in pixels (``0 <= overlap < tile``).

    Returns
    -------
    ``(N, C_out, H, W)`` float32 tensor on the input's device.
    """
    if not 0 <= overlap < tile:
        raise ValueError(f"need 0 <= overlap < tile, got overlap {overlap}, tile {tile}")
    n, _, h, w = images.shape
    if h <= tile and w <= tile:
        return fn(images.to(compute_device)).float().to(images.device)
    stride = tile - overlap
    out = weight = None
    for y in _starts(h, tile, stride):
        for x in _starts(w, tile, stride):
            win = images[:, :, y : y + tile, x : x + tile]
            res = fn(win.to(compute_device)).to(images.device, torch.float64)
            if out is None:
                out = torch.zeros(
                    (n, res.shape[1], h, w), dtype=torch.float64, device=images.device
                )
                weight = torch.zeros((1, 1, h, w), dtype=torch.float64, device=images.device)
            wy, wx = _tent(win.shape[2], images.device), _tent(win.shape[3], images.device)
            wgt = (wy[:, None] * wx[None, :])[None, None]
            out[:, :, y : y + tile, x : x + tile] += res * wgt
            weight[:, :, y : y + tile, x : x + tile] += wgt
    return (out / weight).float()
