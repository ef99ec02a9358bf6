"""Intensity normalisation of slices to [0, 1].

Two modes:

``minmax`` (the paper's)
    Each slice is mapped by its own minimum and maximum: ``(x - min) / (max - min)``.
    Every slice then spans exactly [0, 1], whatever its density content; grey levels are
    *not* comparable across slices or specimens (a slice with a bright cortex and one
    without are stretched differently). A constant slice (max == min) maps to all zeros,
    and its scale is recorded as 0 so that the inverse gives back the constant.
``window``
    A fixed window ``[low, high]`` (e.g. -200..1800 mg HA/cm3 on calibrated data) for all
    slices: ``clip((x - low) / (high - low), 0, 1)``. Densities stay comparable across
    slices and specimens, and predictions can be mapped back to density units.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator


class NormalizationConfig(BaseModel):
    """How slices are mapped to [0, 1] (saved in datasets and checkpoints)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["minmax", "window"] = "minmax"
    low: float | None = None
    high: float | None = None

    @model_validator(mode="after")
    def _check_window(self) -> NormalizationConfig:
        if self.mode == "window" and (
            self.low is None or self.high is None or not self.high > self.low
        ):
            raise ValueError("window normalisation needs low < high (e.g. --window -200 1800)")
        return self


def slice_ranges(slices: np.ndarray, config: NormalizationConfig) -> tuple[np.ndarray, np.ndarray]:
    """Offset and scale per slice such that ``normalised = (x - offset) / scale``.

    Parameters
    ----------
    slices
        ``(N, Y, X)`` array.

    Returns
    -------
    offset, scale
        ``(N,)`` float64 arrays. ``scale`` is 0 for a constant slice in ``minmax`` mode.
    """
    n = slices.shape[0]
    if config.mode == "window":
        return np.full(n, config.low, np.float64), np.full(n, config.high - config.low, np.float64)
    flat = np.asarray(slices).reshape(n, -1)
    lo = flat.min(axis=1).astype(np.float64)
    hi = flat.max(axis=1).astype(np.float64)
    return lo, hi - lo


def normalize(slices: np.ndarray, config: NormalizationConfig) -> np.ndarray:
    """Map ``(N, Y, X)`` or ``(Y, X)`` slices to [0, 1] (float32); see the module docstring."""
    arr = np.asarray(slices)
    batch = arr[None] if arr.ndim == 2 else arr
    offset, scale = slice_ranges(batch, config)
    safe = np.where(scale > 0, scale, 1.0)
    out = (batch - offset[:, None, None]) / safe[:, None, None]
    out[scale <= 0] = 0.0
    out = np.clip(out, 0.0, 1.0).astype(np.float32)
    return out[0] if arr.ndim == 2 else out


def denormalize(normalised: np.ndarray, offset: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Inverse of :func:`normalize` given the per-slice ``offset`` and ``scale`` (float32)."""
    return (normalised * scale[:, None, None] + offset[:, None, None]).astype(np.float32)
