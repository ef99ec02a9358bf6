"""A small RCAN: residual-in-residual blocks with channel attention, at the HR grid.

Zhang et al. (2018), "Image Super-Resolution Using Very Deep Residual Channel Attention
Networks", ECCV, doi:10.1007/978-3-030-01234-2_18. Differences from the paper: the input
is already bilinear-upsampled to the HR grid (as for the U-Net), so there is no upsampler;
the network is small (``groups`` x ``blocks`` RCABs of ``width`` channels); and the output
is a residual in logit space over the centre input slice (see
:mod:`microsr.models.residual`), so ``sigmoid(logits)`` stays the image.

Diagram (``G`` groups of ``B`` blocks)::

    x ─ head ─┬─ group[0] ─ ... ─ group[G-1] ─ conv ─(+)─ tail ─(+ logit(x_centre))─ logits
              └──────────────────────────────────────┘
    group:  h ─┬─ RCAB ─ ... ─ RCAB ─ conv ─(+)─      RCAB: h ─┬─ conv ─ ReLU ─ conv ─ CA ─(+)─
               └─────────────────────────────┘                  └──────────────────────────┘
"""

from __future__ import annotations

from torch import Tensor, nn

from microsr.models.residual import centre_logit

__all__ = ["RCAN", "ChannelAttention"]


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation: ``h * sigmoid(W2 relu(W1 avgpool(h)))``, ``(N, C, H, W)``."""

    def __init__(self, channels: int, *, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, h: Tensor) -> Tensor:
        return h * self.gate(h)


class RCAB(nn.Module):
    """Residual channel-attention block: ``h + CA(conv(relu(conv(h))))``."""

    def __init__(self, channels: int, *, reduction: int = 4) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
            ChannelAttention(channels, reduction=reduction),
        )

    def forward(self, h: Tensor) -> Tensor:
        return h + self.body(h)


class ResidualGroup(nn.Module):
    """``blocks`` RCABs and a conv, with a short skip: ``h + conv(RCABs(h))``."""

    def __init__(self, channels: int, *, blocks: int, reduction: int = 4) -> None:
        super().__init__()
        layers = [RCAB(channels, reduction=reduction) for _ in range(blocks)]
        self.body = nn.Sequential(*layers, nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, h: Tensor) -> Tensor:
        return h + self.body(h)


class RCAN(nn.Module):
    """Small RCAN (Zhang et al. 2018) returning logits of the HR slice.

    Parameters
    ----------
    in_channels
        1 for a single slice, ``2k + 1`` for a 2.5D stack (the centre slice is the target).
    width
        Feature channels (the paper uses 64).
    groups
        Residual groups (the paper: 10).
    blocks
        RCABs per group (the paper: 20).
    reduction
        Channel-attention squeeze ratio (the paper: 16; 4 suits small widths).
    """

    def __init__(
        self, *, in_channels: int = 1, width: int = 16, groups: int = 2, blocks: int = 2,
        reduction: int = 4,
    ) -> None:  # fmt: skip
        super().__init__()
        if min(in_channels, width, groups, blocks, reduction) < 1:
            raise ValueError("in_channels, width, groups, blocks and reduction must be >= 1")
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1)
        self.groups = nn.Sequential(
            *[ResidualGroup(width, blocks=blocks, reduction=reduction) for _ in range(groups)]
        )
        self.trunk_end = nn.Conv2d(width, width, 3, padding=1)
        self.head = nn.Conv2d(width, 1, 3, padding=1)
        nn.init.zeros_(self.head.weight)  # start at the bilinear input
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` in [0, 1] -> ``(N, 1, H, W)`` logits, any ``H, W``."""
        features = self.stem(x)
        deep = self.trunk_end(self.groups(features)) + features  # long skip
        return centre_logit(x) + self.head(deep)
