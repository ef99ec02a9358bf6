"""The one place that turns ``--device auto|cpu|cuda`` into a device."""

from __future__ import annotations

import torch

from microsr.errors import MicrosrError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise MicrosrError("--device cuda was asked for, but PyTorch sees no CUDA GPU")
        return torch.device(name)
    raise MicrosrError(f"unknown device {name!r} (use auto, cpu or cuda)")
