"""Intensity normalisation of slices to [0, 1] and back: the one implementation.

Training data (:mod:`microsr.data.dataset`), prediction (:mod:`microsr.inference.engine`) and
scoring (:mod:`microsr.evaluation`) all call the functions here, in torch (numpy arrays are
accepted and returned as numpy).

Two modes (:class:`NormalizationConfig`):

``window`` (the default of ``microsr prepare``)
    One fixed intensity window for every slice: LR input ``[lr_low, lr_high]`` and HR target
    ``[low, high]``, ``clip((x - low) / (high - low), 0, 1)``. ``prepare`` computes it from robust
    percentiles of the *training* specimens' voxels (:func:`fit_window`), or takes a fixed
    window (e.g. -200..1800 mg HA/cm3 on calibrated data). LR and HR share one window when they
    are in the same units (same scanner, or LR simulated from HR). The model's [0, 1] output
    maps back through the HR window, so SR files are in the HR scan's units (grey values or
    mg HA/cm3) and can be thresholded exactly like HR.
``minmax`` (the paper's preset, ``--paper``)
    Every slice is stretched by its own minimum and maximum (a constant slice maps to zeros).
    Grey levels are then not comparable across slices, and the model's output has no units of
    its own. It is mapped back to HR units through an HR range *predicted* from the LR slice:
    ``hr_min ~ c0 + c1 p1 + c2 p99`` and ``hr_max ~ d0 + d1 p1 + d2 p99`` of the LR slice's
    1st/99th percentiles, least-squares fitted on the training pairs (:class:`MinmaxInverse`,
    unbiased on them by construction). Checkpoints of microsr 0.1 have no such fit: their output
    is mapped back through the LR slice's own min and max, which biases every voxel (FBP LR
    slices have another range than HR); :func:`output_range` then logs a warning.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import torch

from microsr.data.config import MinmaxInverse, NormalizationConfig
from microsr.errors import MicrosrError
from microsr.volume import strided_sample

log = logging.getLogger(__name__)

#: Percentiles of the training voxels that bound the default window, and the margin added on
#: each side (a fraction of their difference): the model's sigmoid output never quite reaches
#: 0 or 1, and the brightest HR voxels should not be clipped.
WINDOW_PERCENTILES = (0.1, 99.9)
WINDOW_MARGIN = 0.05
#: LR slice statistics that predict the HR range in minmax mode.
STAT_PERCENTILES = (1.0, 99.0)


def _tensor(x) -> tuple[torch.Tensor, bool]:
    if isinstance(x, torch.Tensor):
        return x, False
    array = np.ascontiguousarray(x, dtype=np.float32)
    if not array.flags.writeable:  # e.g. a read-only memmap: torch wants a writable buffer
        array = array.copy()
    return torch.from_numpy(array), True


def _per_slice(value: float, n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.full((n,), float(value), dtype=torch.float32, device=like.device)


def slice_minmax(x) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum and maximum of each ``(n, ...)`` slice, ``(n,)`` float32 each."""
    x, _ = _tensor(x)
    flat = x.reshape(len(x), -1).float()
    return flat.amin(1), flat.amax(1)


def lr_slice_stats(x: torch.Tensor) -> torch.Tensor:
    """``(n, 2)``: the 1st and 99th percentiles of each LR slice (the minmax inverse's input)."""
    x, _ = _tensor(x)
    flat = x.reshape(len(x), -1).float()
    q = torch.tensor([p / 100 for p in STAT_PERCENTILES], device=x.device)
    return torch.quantile(flat, q, dim=1).T


def input_range(x, config: NormalizationConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-slice ``(low, high)`` that map LR slices ``x`` ``(n, H, W)`` to the model's input."""
    return _window_or_minmax(x, config, "lr_window")


def target_range(x, config: NormalizationConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-slice ``(low, high)`` that map HR slices ``x`` ``(n, H, W)`` to training targets."""
    return _window_or_minmax(x, config, "hr_window")


def _window_or_minmax(x, config: NormalizationConfig, window: str):
    """The config's ``window`` (``lr_window`` | ``hr_window``) per slice, or each slice's
    min and max in minmax mode."""
    x, _ = _tensor(x)
    if config.mode == "window":
        lo, hi = getattr(config, window)
        return _per_slice(lo, len(x), x), _per_slice(hi, len(x), x)
    return slice_minmax(x)


def output_range(lr_centre, config: NormalizationConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-slice ``(low, high)`` in HR units of the model's output for LR slices ``lr_centre``.

    Window mode: the HR window. minmax mode: the fitted :class:`MinmaxInverse`, or (old
    checkpoints) the LR slice's own range.
    """
    x, _ = _tensor(lr_centre)
    if config.mode == "window":
        return target_range(x, config)
    if not config.output_in_hr_units:
        return slice_minmax(x)
    stats = lr_slice_stats(x)
    design = torch.cat([torch.ones_like(stats[:, :1]), stats], dim=1)
    lo = design @ torch.tensor(config.inverse.low_coef, device=x.device)
    hi = design @ torch.tensor(config.inverse.high_coef, device=x.device)
    return lo, torch.maximum(hi, lo)


def to_unit(x, low: torch.Tensor, high: torch.Tensor):
    """``clip((x - low) / (high - low), 0, 1)`` per slice of ``(n, ...)``; zeros where high <= low."""
    t, was_numpy = _tensor(x)
    shape = (-1,) + (1,) * (t.ndim - 1)
    scale = (high - low).reshape(shape)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    out = ((t.float() - low.reshape(shape)) / safe).clamp(0, 1) * (scale > 0)
    return out.numpy() if was_numpy else out


def from_unit(y, low: torch.Tensor, high: torch.Tensor):
    """Inverse of :func:`to_unit`: ``y * (high - low) + low`` per slice (float32)."""
    t, was_numpy = _tensor(y)
    shape = (-1,) + (1,) * (t.ndim - 1)
    out = t.float() * (high - low).clamp(min=0).reshape(shape) + low.reshape(shape)
    return out.numpy() if was_numpy else out


def normalize(slices, config: NormalizationConfig, *, role: Literal["lr", "hr"] = "hr"):
    """Map ``(N, Y, X)`` (or ``(Y, X)``) slices to [0, 1] as LR inputs or HR targets."""
    t, was_numpy = _tensor(slices)
    batch = t[None] if t.ndim == 2 else t
    lo, hi = (input_range if role == "lr" else target_range)(batch, config)
    out = to_unit(batch, lo, hi)
    out = out[0] if t.ndim == 2 else out
    return out.numpy() if was_numpy else out


def lr_in_hr_units(x, config: NormalizationConfig):
    """LR values in HR units: the affine map of the LR window onto the HR window (no clip).

    The identity where LR and HR share units (one window, or minmax mode).
    """
    if config.mode != "window" or config.lr_low is None:
        return x
    (a, b), (c, d) = config.lr_window, config.hr_window
    return (x - a) * ((d - c) / (b - a)) + c


def fit_window(
    values: np.ndarray,
    *,
    percentiles: tuple[float, float] = WINDOW_PERCENTILES,
    margin: float = WINDOW_MARGIN,
    name: str = "training voxels",
) -> tuple[float, float]:
    """A robust intensity window: the ``percentiles`` of ``values`` widened by ``margin``.

    Raises
    ------
    MicrosrError
        No finite values, or they are (nearly) constant: no window can be computed.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise MicrosrError(f"{name}: no voxels to compute an intensity window from")
    lo, hi = np.percentile(values, percentiles)
    if not hi > lo:
        raise MicrosrError(
            f"{name}: intensities are constant between the {percentiles[0]} and "
            f"{percentiles[1]} percentiles ({lo:g}); no intensity window can be computed "
            "(give one with --window LOW HIGH)"
        )
    pad = margin * (hi - lo)
    return float(lo - pad), float(hi + pad)


def fit_minmax_inverse(lr_stats: np.ndarray, hr_ranges: np.ndarray) -> MinmaxInverse:
    """Least-squares fit of HR slice min/max ``(N, 2)`` on LR percentiles ``(N, 2)``."""
    lr_stats = np.asarray(lr_stats, np.float64)
    hr_ranges = np.asarray(hr_ranges, np.float64)
    if len(lr_stats) < 3:
        raise MicrosrError(
            f"need at least 3 training slices to fit the minmax inverse, got {len(lr_stats)}"
        )
    design = np.column_stack([np.ones(len(lr_stats)), lr_stats])
    coef, *_ = np.linalg.lstsq(design, hr_ranges, rcond=None)
    return MinmaxInverse(
        low_coef=tuple(float(c) for c in coef[:, 0]),
        high_coef=tuple(float(c) for c in coef[:, 1]),
        n_slices=len(lr_stats),
    )


def sample_voxels(array: np.ndarray, *, max_voxels: int = 1_000_000) -> np.ndarray:
    """:func:`microsr.volume.strided_sample` (float32) with the dataset records' default size."""
    return strided_sample(array, max_voxels=max_voxels)


def check_input_range(x, config: NormalizationConfig, *, name: str) -> bool:
    """Warn (once per call site, return False) if LR slices lie far outside the LR window.

    "Far": more than 5 % of the voxels beyond the window widened by half its width on each
    side, or a spread (1st-99th percentile) below 5 % of the window (e.g. data rescaled to
    [0, 1] given to a model trained on grey values 0-255).
    """
    if config.mode != "window":
        return True
    t, _ = _tensor(x)
    lo, hi = config.lr_window
    width = hi - lo
    outside = ((t < lo - width / 2) | (t > hi + width / 2)).float().mean().item()
    stats = lr_slice_stats(t[None].reshape(1, -1) if t.ndim < 2 else t.reshape(1, -1))[0]
    spread = float(stats[1] - stats[0])
    if outside > 0.05 or spread < 0.05 * width:
        log.warning(
            "%s: intensities (1st-99th percentile %.4g..%.4g) lie far outside the LR window "
            "%.4g..%.4g the model was trained on; are the units the same (grey values vs "
            "mg HA/cm3, 8-bit vs 16-bit)? The SR output may be meaningless.",
            name, float(stats[0]), float(stats[1]), lo, hi,
        )  # fmt: skip
        return False
    return True
