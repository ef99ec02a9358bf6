"""A checkpoint's network, rebuilt and ready to predict (:func:`load_checkpoint`).

The file format itself (metadata record, safe reading) is owned by :mod:`microsr.checkpoint`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from microsr.checkpoint import CheckpointMeta, parse_checkpoint
from microsr.errors import InputFileError
from microsr.models.factory import build_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """A model in eval mode on its device, with the checkpoint's metadata record."""

    model: nn.Module
    meta: CheckpointMeta
    path: Path
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def factor(self) -> int:
        """HR voxels per LR voxel along each axis."""
        return self.meta.factor

    @property
    def context_slices(self) -> int:
        """``k``: a 2.5D model sees LR slices ``i - k .. i + k`` as ``2k + 1`` channels."""
        return self.meta.context_slices


def load_checkpoint(path: str | Path, *, device: torch.device | str = "cpu") -> LoadedModel:
    """Rebuild the model described by a microsr checkpoint and load its weights.

    Raises
    ------
    InputFileError
        Unreadable or unsafe file, a checkpoint without microsr metadata, invalid metadata
        (e.g. a factor below 1), non-finite weights, or weights that do not fit the model
        the checkpoint describes (e.g. another number of input channels).
    """
    path = Path(path)
    meta, state = parse_checkpoint(path)
    model = build_model(meta.network)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise InputFileError(
            path,
            f"weights do not match the {type(model).__name__} the checkpoint describes "
            f"({meta.network.in_channels} input channel(s)): {first}",
        ) from None
    if meta.format_version < 2:
        log.info(
            "%s: a microsr %s checkpoint (format %d): it predicts on the LR slice grid it was "
            "trained for", path, meta.microsr_version, meta.format_version,
        )  # fmt: skip
    device = torch.device(device)
    model.eval().to(device)
    return LoadedModel(model, meta, path, device)
