"""Build a model from its config.

One explicit ``if`` per model in :func:`build_model`, so grep leads from a config's
``name`` to the class it builds (no string registry, no import-time side effects).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from microsr.models.unet import UNet

__all__ = ["ModelConfig", "build_model", "count_parameters"]


class ModelConfig(BaseModel):
    """Which network to build and its size (saved in checkpoints).

    Attributes
    ----------
    name
        The architecture. Only ``"unet"`` for now; an unknown name is rejected on validation.
    width
        Channels at the first level (the paper's U-Net used 64; 16 trains on a 2-core CPU).
    depth
        Number of down-sampling steps.
    norm
        Normalisation after each convolution.
    in_channels
        Input channels: 1 for a single slice, ``k`` for a 2.5D stack of ``k`` neighbours.
    dropout
        Channel dropout probability at the bottleneck.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Literal["unet"] = "unet"
    width: int = Field(16, ge=1)
    depth: int = Field(3, ge=1)
    norm: Literal["batch", "instance", "none"] = "batch"
    in_channels: int = Field(1, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


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
    A new architecture (e.g. ``"unet_residual"``, ``"rcan"``) is added by extending the
    ``name`` literal of :class:`ModelConfig` (plus any fields it needs) and adding one
    branch here.
    """
    if config.name == "unet":
        return UNet(
            in_channels=config.in_channels,
            out_channels=1,
            width=config.width,
            depth=config.depth,
            norm=config.norm,
            dropout=config.dropout,
        )
    raise ValueError(f"unknown model name {config.name!r}")


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of ``model`` (trainable or not; buffers excluded)."""
    return sum(parameter.numel() for parameter in model.parameters())
