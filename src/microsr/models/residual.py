"""Global-residual wrapper: the network predicts HR minus the upsampled LR, in logit space.

The image contract of every microsr model holds: the output is logits and the image is
``sigmoid(logits)``. The residual is therefore added in logit space::

    logits = logit(clamp(lr_centre, eps, 1 - eps)) + body(x)

so ``body(x) = 0`` reproduces the bilinear input exactly (up to the clamp), BCE-with-logits
still applies, and the output stays in [0, 1]. The body's last layer starts at zero, so
training starts from bilinear interpolation and learns only the missing detail (global
residual learning as in VDSR, Kim, Lee & Lee 2016, doi:10.1109/CVPR.2016.182).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["GlobalResidual", "centre_logit"]

EPS = 1e-3  # logit(1e-3) = -6.9: keeps the residual's starting point finite


def centre_logit(x: Tensor, *, eps: float = EPS) -> Tensor:
    """Logit of the centre channel of a ``(N, C, H, W)`` stack (C odd): ``(N, 1, H, W)``.

    For a 2.5D input of ``C = 2k + 1`` neighbouring slices, channel ``k`` is the slice
    being super-resolved.
    """
    centre = x.shape[1] // 2
    return torch.logit(x[:, centre : centre + 1].clamp(eps, 1 - eps))


class GlobalResidual(nn.Module):
    """``logits = logit(lr_centre) + body(x)``; ``body`` maps ``(N, C, H, W) -> (N, 1, H, W)``.

    Parameters
    ----------
    body
        Any network returning one channel; its ``head`` (if it has a conv ``head``) is
        zero-initialised so the untrained model equals the bilinear input.
    """

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body
        head = getattr(body, "head", None)
        if isinstance(head, nn.Conv2d):
            nn.init.zeros_(head.weight)
            if head.bias is not None:
                nn.init.zeros_(head.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` in [0, 1] -> ``(N, 1, H, W)`` logits."""
        residual = self.body(x)
        return centre_logit(x) + residual
