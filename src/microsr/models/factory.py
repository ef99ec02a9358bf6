"""Build a model from its config.

One explicit ``if`` per model in :func:`build_model`, so grep leads from a config's
``name`` to the class it builds (no string registry, no import-time side effects).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from microsr.models.rcan import RCAN
from microsr.models.residual import GlobalResidual
from microsr.models.unet import UNet

__all__ = ["ModelConfig", "build_model", "count_parameters"]


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


def build_model(config: ModelConfig) -> nn.Module:
    """Instantiate the network that ``config`` describes, with freshly initialised weights.

    Parameters
    ----------
    config
        The model's config. The output always has one channel: the HR slice's logits.

    Returns
    -------
    torch.nn.Module
        Maps ``(N, config.in_channels, H, W)`` to ``(N, 1, H, W)`` logits.

    Notes
    -----
    A new architecture is added by extending the ``name`` literal of :class:`ModelConfig`
    (plus any fields it needs) and adding one branch here.
    """
    if config.name in ("unet", "unet_residual"):
        unet = UNet(
            in_channels=config.in_channels,
            out_channels=1,
            width=config.width,
            depth=config.depth,
            norm=config.norm,
            dropout=config.dropout,
        )
        return unet if config.name == "unet" else GlobalResidual(unet)
    if config.name == "rcan":
        return RCAN(
            in_channels=config.in_channels,
            width=config.width,
            groups=config.depth,
            blocks=config.blocks,
        )
    raise ValueError(f"unknown model name {config.name!r}")


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of ``model`` (trainable or not; buffers excluded)."""
    return sum(parameter.numel() for parameter in model.parameters())
