"""The normalisation config, torch-free (saved in datasets and checkpoints).

The normalisation itself (the two modes, in torch) is :mod:`microsr.data.normalize`'s.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["MinmaxInverse", "NormalizationConfig"]


class MinmaxInverse(BaseModel):
    """Linear model of a slice's HR range from its LR percentiles (minmax mode)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    low_coef: tuple[float, float, float]
    high_coef: tuple[float, float, float]
    n_slices: int = Field(ge=1)


class NormalizationConfig(BaseModel):
    """How slices are mapped to [0, 1] and back (saved in datasets and checkpoints).

    Attributes
    ----------
    mode
        ``"window"`` or ``"minmax"`` (see the module docstring).
    low, high
        HR (and output) window, in the HR scan's units; window mode only.
    lr_low, lr_high
        LR input window; ``None``: the HR window (LR and HR in the same units).
    inverse
        minmax mode: the fitted HR-range model; ``None`` in checkpoints of microsr 0.1.
    source
        How the window was obtained (provenance text).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["minmax", "window"] = "minmax"
    low: float | None = None
    high: float | None = None
    lr_low: float | None = None
    lr_high: float | None = None
    inverse: MinmaxInverse | None = None
    source: str = ""

    @model_validator(mode="after")
    def _check_window(self) -> NormalizationConfig:
        if self.mode == "window":
            if self.low is None or self.high is None or not self.high > self.low:
                raise ValueError("window normalisation needs low < high (e.g. --window -200 1800)")
            if (self.lr_low is None) != (self.lr_high is None) or (
                self.lr_low is not None and not self.lr_high > self.lr_low
            ):
                raise ValueError("an LR window needs lr_low < lr_high")
        return self

    @property
    def lr_window(self) -> tuple[float, float]:
        """The LR input window ``(low, high)`` (window mode)."""
        if self.lr_low is not None:
            return float(self.lr_low), float(self.lr_high)
        return float(self.low), float(self.high)

    @property
    def hr_window(self) -> tuple[float, float]:
        """The HR window ``(low, high)`` (window mode)."""
        return float(self.low), float(self.high)

    @property
    def output_in_hr_units(self) -> bool:
        """Whether outputs map back to HR units: not for minmax without a fitted inverse
        (microsr 0.1 checkpoints: back through each LR slice's own range, offset from HR)."""
        return self.mode == "window" or self.inverse is not None
