"""Loading checkpoints safely: a checkpoint is data, not code.

Checkpoints are loaded with ``torch.load(weights_only=True)``, whose unpickler accepts only
tensors and plain containers/numbers/strings; a checkpoint that needs anything else (for
example an object whose unpickling would run code) is refused with a clear message.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from pydantic import ValidationError
from torch import nn

from microsr.errors import InputFileError
from microsr.models.factory import ModelConfig, build_model
from microsr.training.module import CHECKPOINT_KEY


@dataclass(frozen=True)
class LoadedModel:
    """A model in eval mode on its device, with the checkpoint's ``microsr`` metadata."""

    model: nn.Module
    meta: dict
    path: Path
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def factor(self) -> int:
        return int(self.meta["factor"])

    @property
    def context_slices(self) -> int:
        """``k``: a 2.5D model sees LR slices ``i - k .. i + k`` as ``2k + 1`` channels."""
        return (int(self.meta.get("model_config", {}).get("in_channels", 1)) - 1) // 2


def read_checkpoint(path: str | Path) -> dict:
    """``torch.load(path, weights_only=True)`` with clear errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "checkpoint not found")
    if not zipfile.is_zipfile(path):
        raise InputFileError(
            path, "not a readable PyTorch checkpoint (not a torch.save zip archive)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if "Unsupported global" in ln]
        first = lines[0] if lines else type(exc).__name__
        raise InputFileError(
            path,
            "refused to load: the checkpoint contains Python objects other than weights and "
            f"plain data, which could run code when unpickled ({first[:200]})",
        ) from None
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError/EOFError/zipfile errors on corrupt files
        raise InputFileError(
            path, f"not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})"
        ) from None


def load_checkpoint(path: str | Path, *, device: torch.device | str = "cpu") -> LoadedModel:
    """Rebuild the model described by a microsr checkpoint and load its weights.

    Raises
    ------
    InputFileError
        Unreadable or unsafe file, a checkpoint without microsr metadata, or weights that do
        not fit the model the checkpoint describes.
    """
    path = Path(path)
    ckpt = read_checkpoint(path)
    meta = ckpt.get(CHECKPOINT_KEY) if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or "state_dict" not in ckpt:
        raise InputFileError(path, "not a microsr checkpoint (no 'microsr' metadata or weights)")
    try:
        model = build_model(ModelConfig.model_validate(meta["model_config"]))
    except (KeyError, ValidationError) as exc:
        raise InputFileError(
            path, f"checkpoint describes a model microsr cannot build ({exc})"
        ) from None
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise InputFileError(
            path, f"weights do not match the {type(model).__name__} ({first})"
        ) from None
    device = torch.device(device)
    model.eval().to(device)
    return LoadedModel(model, meta, path, device)
