"""A 2D U-Net for slice-to-slice super-resolution.

The network maps a bilinear-upsampled, normalised LR slice to logits of the HR slice
(``sigmoid(logits)`` lies in [0, 1]), following David et al.'s use of the U-Net of
Ronneberger, Fischer & Brox (2015), doi:10.1007/978-3-319-24574-4_28.

Diagram for ``depth = 3`` (``w = width``; each block is two conv3x3 -> norm -> ReLU)::

    x ─ enc[0] (w) ──────────────────────────────────────── cat ─ dec[0] (w) ─ head ─ logits
          └ pool ─ enc[1] (2w) ──────────────── cat ─ dec[1] (2w) ─ up ┘
                     └ pool ─ enc[2] (4w) ─ cat ─ dec[2] (4w) ─ up ┘
                                └ pool ─ enc[3] (8w) ─ up ┘
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Norm", "UNet"]

Norm = Literal["batch", "instance", "none"]


def _norm_layer(norm: Norm, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'batch', 'instance' or 'none', got {norm!r}")


class ConvBlock(nn.Sequential):
    """Two (conv3x3 -> norm -> ReLU): ``(N, C_in, H, W) -> (N, C_out, H, W)``.

    Convolutions carry a bias only without normalisation (a norm's shift makes it redundant).
    """

    def __init__(self, in_channels: int, out_channels: int, *, norm: Norm) -> None:
        bias = norm == "none"
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias),
            _norm_layer(norm, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias),
            _norm_layer(norm, out_channels),
            nn.ReLU(inplace=True),
        )


class Down(nn.Sequential):
    """2x2 max-pool then :class:`ConvBlock`: ``(N, C_in, H, W) -> (N, C_out, H/2, W/2)``."""

    def __init__(
        self, in_channels: int, out_channels: int, *, norm: Norm, dropout: float = 0.0
    ) -> None:
        layers: list[nn.Module] = [nn.MaxPool2d(2), ConvBlock(in_channels, out_channels, norm=norm)]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class UpCat(nn.Module):
    """Transposed conv (stride 2) up, concatenate the skip, then :class:`ConvBlock`.

    ``(N, C_in, H, W), skip (N, C_out, 2H, 2W) -> (N, C_out, 2H, 2W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, norm: Norm) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        self.conv = ConvBlock(2 * out_channels, out_channels, norm=norm)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    """U-Net (Ronneberger et al. 2015) for 2D slice-to-slice mapping; returns logits.

    Ronneberger, Fischer & Brox (2015), doi:10.1007/978-3-319-24574-4_28. Level ``l`` has ``width * 2**l`` channels, ``l = 0 .. depth``; ``enc[depth]`` is the
    bottleneck. Fully convolutional: any ``H, W`` is reflect-padded at the bottom/right up
    to a multiple of ``2**depth`` and the output is cropped back.

    Parameters
    ----------
    in_channels
        Input channels (1 for a single slice; ``k`` for a 2.5D stack of ``k`` slices).
    out_channels
        Output channels (1: the HR slice).
    width
        Channels at the first level (the original U-Net used 64).
    depth
        Number of down-sampling steps (>= 1).
    norm
        Normalisation after each conv: ``"batch"``, ``"instance"`` (affine) or ``"none"``.
        Instance norm needs more than one bottleneck pixel, i.e. an input larger than
        ``2**depth`` in Y or X.
    dropout
        Channel dropout probability at the bottleneck (the end of the contracting path,
        as in the original U-Net); 0 disables it.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        out_channels: int = 1,
        width: int = 16,
        depth: int = 3,
        norm: Norm = "batch",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if min(in_channels, out_channels, width, depth) < 1:
            raise ValueError("in_channels, out_channels, width and depth must all be >= 1")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        _norm_layer(norm, 1)  # fail early on an unknown norm
        self.depth = depth
        channels = [width * 2**level for level in range(depth + 1)]
        self.enc = nn.ModuleList([ConvBlock(in_channels, channels[0], norm=norm)])
        for level in range(1, depth + 1):
            level_dropout = dropout if level == depth else 0.0
            self.enc.append(
                Down(channels[level - 1], channels[level], norm=norm, dropout=level_dropout)
            )
        # dec[l] goes from level l + 1 up to level l
        self.dec = nn.ModuleList(
            [UpCat(channels[level + 1], channels[level], norm=norm) for level in range(depth)]
        )
        self.head = nn.Conv2d(channels[0], out_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C_in, H, W) -> (N, C_out, H, W)`` logits, for any ``H, W``."""
        height, width = x.shape[-2:]
        x = self._pad(x)
        skips = [self.enc[0](x)]  # enc0 at full resolution
        for level in range(1, self.depth + 1):  # enc1 .. bottleneck
            skips.append(self.enc[level](skips[level - 1]))
        h = skips[self.depth]
        for level in reversed(range(self.depth)):  # dec[depth-1] .. dec0
            h = self.dec[level](h, skips[level])
        return self.head(h)[..., :height, :width]

    def _pad(self, x: Tensor) -> Tensor:
        """Pad bottom/right to a multiple of ``2**depth`` so every pooling halves exactly."""
        multiple = 2**self.depth
        pad_h = -x.shape[-2] % multiple
        pad_w = -x.shape[-1] % multiple
        if pad_h == 0 and pad_w == 0:
            return x
        # reflect cannot pad by as much as the side; tiny inputs fall back to replicate
        mode = "reflect" if pad_h < x.shape[-2] and pad_w < x.shape[-1] else "replicate"
        return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
