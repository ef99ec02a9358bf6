"""The model's config, torch-free (``microsr --help`` and config files need no torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ModelConfig"]


class ModelConfig(BaseModel):
    """Which network to build and its size (saved in checkpoints).

    Attributes
    ----------
    name
        The architecture: ``"unet"`` (the paper's U-Net, logits directly),
        ``"unet_residual"`` (the same U-Net predicting a residual over the upsampled LR centre
        slice, in logit space; see :mod:`microsr.models.residual`) or ``"rcan"`` (a small
        channel-attention network, :mod:`microsr.models.rcan`). An unknown name is rejected
        on validation.
    width
        Channels at the first level (the paper's U-Net used 64; 16 trains on a 2-core CPU);
        for ``"rcan"``, the feature channels.
    depth
        U-Nets: number of down-sampling steps. ``"rcan"``: number of residual groups.
    norm
        Normalisation after each convolution.
    in_channels
        Input channels: 1 for a single slice, ``2k + 1`` for a 2.5D stack of the slice and
        its ``k`` neighbours on each side (the centre channel is the slice to super-resolve;
        prediction derives ``k = (in_channels - 1) // 2`` from the checkpoint).
    dropout
        Channel dropout probability at the bottleneck (U-Nets only).
    blocks
        Residual channel-attention blocks per group (``"rcan"`` only).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Literal["unet", "unet_residual", "rcan"] = "unet"
    width: int = Field(16, ge=1)
    depth: int = Field(3, ge=1)
    norm: Literal["batch", "instance", "none"] = "batch"
    in_channels: int = Field(1, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    blocks: int = Field(2, ge=1)

    @property
    def context_slices(self) -> int:
        """Neighbours on each side in a 2.5D input: ``(in_channels - 1) // 2``."""
        return (self.in_channels - 1) // 2
