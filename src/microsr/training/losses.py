"""Training losses on logits against [0, 1] targets.

``bce`` (the paper's "cross-entropy"): binary cross-entropy on the sigmoid output, computed
from logits for numerical stability. ``l1`` and ``mse`` compare ``sigmoid(logits)`` with the
target. The model's image is always ``sigmoid(logits)``, whatever the loss.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

LossName = Literal["bce", "l1", "mse"]


def compute_loss(logits: torch.Tensor, target: torch.Tensor, name: LossName) -> torch.Tensor:
    """Mean loss over all pixels. ``logits`` and ``target`` have the same shape."""
    if name == "bce":
        return F.binary_cross_entropy_with_logits(logits, target)
    if name == "l1":
        return F.l1_loss(torch.sigmoid(logits), target)
    if name == "mse":
        return F.mse_loss(torch.sigmoid(logits), target)
    raise ValueError(f"unknown loss {name!r}")
