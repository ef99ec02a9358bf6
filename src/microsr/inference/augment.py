"""Test-time augmentation: average a model over the 8 flips/rotations of the square.

The dihedral group D4 (4 rotations by 90 degrees, each with and without a left-right
flip) maps the pixel grid onto itself, so every transformed prediction can be transformed
back exactly; averaging the 8 reduces the variance of the prediction (Timofte, Rothe &
Van Gool 2016, "Seven ways to improve example-based single image super resolution",
doi:10.1109/CVPR.2016.206). It costs 8 forward passes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["DIHEDRAL", "tta_images"]

# (quarter turns k, flip along X first)
DIHEDRAL: tuple[tuple[int, bool], ...] = tuple((k, f) for f in (False, True) for k in range(4))


def _forward(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    if flip:
        x = x.flip(-1)
    return torch.rot90(x, k, (-2, -1))


def _inverse(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    x = torch.rot90(x, -k, (-2, -1))
    return x.flip(-1) if flip else x


def tta_images(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Mean of ``T^-1 fn(T x)`` over the 8 transforms ``T`` of :data:`DIHEDRAL`.

    Parameters
    ----------
    fn
        Maps ``(N, C, H, W)`` to ``(N, C_out, H, W)`` for any ``H, W`` (rot90 swaps them).
    x
        ``(N, C, H, W)``; all channels are transformed alike (2.5D stacks included).

    Returns
    -------
    torch.Tensor
        ``(N, C_out, H, W)``; equals ``fn(x)`` for a model that commutes with flips and
        rotations (e.g. a pointwise one).
    """
    total = None
    for k, flip in DIHEDRAL:
        y = _inverse(fn(_forward(x, k, flip)), k, flip)
        total = y if total is None else total + y
    return total / len(DIHEDRAL)
