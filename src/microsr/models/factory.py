"""Build a model from its config.

One explicit ``if`` per model in :func:`build_model`, so grep leads from a config's
``name`` to the class it builds (no string registry, no import-time side effects).
"""

from __future__ import annotations

from torch import nn

from microsr.models.config import ModelConfig
from microsr.models.rcan import RCAN
from microsr.models.residual import GlobalResidual
from microsr.models.unet import UNet

__all__ = ["ModelConfig", "build_model", "count_parameters"]


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
