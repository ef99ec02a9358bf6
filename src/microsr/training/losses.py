"""Training losses on logits against [0, 1] targets.

The model's image is always ``p = sigmoid(logits)``, whatever the loss:

* ``bce`` (the paper's "cross-entropy"): binary cross-entropy of ``p``, computed from the
  logits for numerical stability;
* ``l1``, ``mse``: mean absolute / squared error of ``p``;
* ``ssim``: ``1 - SSIM(p, target)`` (Wang et al. 2004, doi:10.1109/TIP.2003.819861; 11 x 11
  Gaussian window, ``data_range = 1``);
* ``l1_ssim``: ``(1 - a) L1 + a (1 - SSIM)`` with ``a = 0.84``, the mix of Zhao, Gallo,
  Frosio & Kautz (2017), "Loss Functions for Image Restoration with Neural Networks",
  doi:10.1109/TCI.2016.2644865 (who used MS-SSIM; single-scale SSIM here).

Any of them takes an optional edge term ``grad_weight * L1(grad p, grad target)`` on forward
differences along Y and X, which penalises the smoothed edges that pixel losses tolerate,
and an optional structure term ``structure_weight * structure_loss(p, target)``: soft
bone fraction, soft Dice [and clDice] at the morphometry threshold
(:mod:`microsr.training.structure`).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from microsr.metrics import ssim_batch
from microsr.training.structure import StructureTerm, structure_loss

LossName = Literal["bce", "l1", "mse", "ssim", "l1_ssim"]
LOSS_NAMES: tuple[str, ...] = ("bce", "l1", "mse", "ssim", "l1_ssim")
SSIM_MIX = 0.84  # Zhao et al. 2017's weight of the (MS-)SSIM term


def gradient_l1(image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of forward differences along Y and X, ``(..., H, W)``."""
    dy = (image[..., 1:, :] - image[..., :-1, :]) - (target[..., 1:, :] - target[..., :-1, :])
    dx = (image[..., :, 1:] - image[..., :, :-1]) - (target[..., :, 1:] - target[..., :, :-1])
    return 0.5 * (dy.abs().mean() + dx.abs().mean())


def _full(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 if it is fp16/bf16 (as under autocast), else unchanged."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _pixel_loss(logits: torch.Tensor, target: torch.Tensor, name: str) -> torch.Tensor:
    if name == "bce":
        return F.binary_cross_entropy_with_logits(logits, target)
    image = torch.sigmoid(logits)
    if name == "l1":
        return F.l1_loss(image, target)
    if name == "mse":
        return F.mse_loss(image, target)
    if name == "ssim":
        return 1 - ssim_batch(image, target, data_range=1.0, reduction="mean")
    if name == "l1_ssim":
        dssim = 1 - ssim_batch(image, target, data_range=1.0, reduction="mean")
        return (1 - SSIM_MIX) * F.l1_loss(image, target) + SSIM_MIX * dssim
    raise ValueError(f"unknown loss {name!r}; use one of {', '.join(LOSS_NAMES)}")


def compute_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    name: LossName,
    *,
    grad_weight: float = 0.0,
    structure: StructureTerm | None = None,
    structure_weight: float = 0.0,
) -> torch.Tensor:
    """Scalar loss of ``sigmoid(logits)`` against ``target``.

    Parameters
    ----------
    logits, target
        Same shape, ``(N, 1, H, W)``; ``target`` in [0, 1]. The SSIM losses need
        ``H, W >= 11``.
    name
        One of :data:`LOSS_NAMES` (see the module docstring).
    grad_weight
        Weight of the edge term :func:`gradient_l1` on ``sigmoid(logits)``; 0 disables it.
    structure, structure_weight
        The structure term (:func:`microsr.training.structure.structure_loss`) and its
        weight; ``None`` or 0 disables it.

    The loss is computed in float32 with autocast off, whatever the ambient precision.
    """
    # in float32 even under mixed precision (bf16-mixed / 16-mixed training): only the
    # network runs in low precision, the loss and its gradient do not
    with torch.autocast(logits.device.type, enabled=False):
        logits, target = _full(logits), _full(target)
        loss = _pixel_loss(logits, target, name)
        if grad_weight:
            loss = loss + grad_weight * gradient_l1(torch.sigmoid(logits), target)
        if structure is not None and structure_weight:
            loss = loss + structure_weight * structure_loss(
                torch.sigmoid(logits), target, structure
            )
    return loss
