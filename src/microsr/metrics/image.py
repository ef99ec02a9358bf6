"""Full-reference image quality: PSNR and SSIM per 2D slice.

Both metrics are written once, in torch, and serve three uses:

* :func:`psnr` / :func:`ssim` take numpy slices and compute in float64; they match
  :func:`skimage.metrics.peak_signal_noise_ratio` and
  ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False)`` to float64 precision.
* :func:`psnr_batch` / :func:`ssim_batch` take ``(N, H, W)`` or ``(N, 1, H, W)`` tensors on
  any device and return one value per slice, computed in the input's floating dtype.
* :func:`ssim_map` keeps the autograd graph, so ``1 - ssim_batch(pred, target,
  data_range=1.0, reduction="mean")`` is a ready SSIM loss in float32.

``data_range`` (max - min of the possible values, e.g. 1.0 for slices normalised to
[0, 1], 255 for 8-bit data) is always required: it is never inferred from the dtype.

References
----------
Wang, Bovik, Sheikh & Simoncelli (2004), "Image quality assessment: from error
visibility to structural similarity", IEEE TIP 13(4):600-612,
doi:10.1109/TIP.2003.819861.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["SSIM_WIN_SIZE", "psnr", "psnr_batch", "ssim", "ssim_batch", "ssim_map"]

# Constants of Wang et al. 2004, Sec. III-C: Gaussian window sigma = 1.5, K1 = 0.01, K2 = 0.03.
_SIGMA = 1.5
_K1 = 0.01
_K2 = 0.03
# scikit-image truncates its Gaussian at 3.5 sigma: radius int(3.5 * 1.5 + 0.5) = 5 -> 11 taps.
_TRUNCATE = 3.5
_RADIUS = int(_TRUNCATE * _SIGMA + 0.5)
SSIM_WIN_SIZE = 2 * _RADIUS + 1
"""Side of the SSIM window (11 pixels); slices must be at least this large in Y and X."""


def _check_data_range(data_range: float) -> float:
    data_range = float(data_range)
    if not (math.isfinite(data_range) and data_range > 0):
        raise ValueError(f"data_range must be a finite positive number, got {data_range}")
    return data_range


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return values
    if reduction == "mean":
        return values.mean()
    raise ValueError(f"reduction must be 'none' or 'mean', got {reduction!r}")


def _check_ssim_size(shape: tuple[int, ...]) -> None:
    if min(shape[-2:]) < SSIM_WIN_SIZE:
        raise ValueError(
            f"SSIM needs slices of at least {SSIM_WIN_SIZE}x{SSIM_WIN_SIZE} pixels "
            f"(its Gaussian window), got shape {shape}"
        )


def _as_batch(prediction: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Check a pair of slice batches and return them as floating ``(N, 1, H, W)`` tensors."""
    if prediction.shape != target.shape:
        raise ValueError(
            f"prediction and target shapes differ: {tuple(prediction.shape)} "
            f"vs {tuple(target.shape)}"
        )
    shape = tuple(prediction.shape)
    if not (len(shape) == 3 or (len(shape) == 4 and shape[1] == 1)):
        raise ValueError(f"expected a batch of slices (N, H, W) or (N, 1, H, W), got shape {shape}")
    pair = []
    for x in (prediction, target):
        if not x.is_floating_point():
            x = x.to(torch.float64)
        elif x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()  # 8-11 mantissa bits cannot hold E[x^2] - E[x]^2 (SSIM variances)
        # note: a CPU-GPU sync point; a NaN must fail loudly rather than average away
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"input of shape {shape} contains NaN or infinite values")
        pair.append(x.reshape(shape[0], 1, shape[-2], shape[-1]))
    dtype = torch.promote_types(pair[0].dtype, pair[1].dtype)
    return pair[0].to(dtype), pair[1].to(dtype)


def psnr_batch(
    prediction: torch.Tensor,
    target: torch.Tensor,
    *,
    data_range: float,
    reduction: Literal["none", "mean"] = "none",
) -> torch.Tensor:
    """Peak signal-to-noise ratio of each slice, ``10 log10(data_range**2 / MSE)``, in dB.

    Parameters
    ----------
    prediction, target
        ``(N, H, W)`` or ``(N, 1, H, W)`` tensors of the same shape. Integer tensors are
        converted to float64, fp16/bf16 to float32; other floating tensors are used in
        their own dtype.
    data_range
        Max - min of the possible values (1.0 for [0, 1] slices), keyword-only.
    reduction
        ``"none"``: one value per slice, shape ``(N,)``; ``"mean"``: their mean, shape ``()``.

    Returns
    -------
    torch.Tensor
        PSNR in dB. A slice identical to its target has MSE 0 and PSNR ``+inf`` (as in
        scikit-image); a ``"mean"`` over such slices is ``+inf`` too.
    """
    data_range = _check_data_range(data_range)
    x, y = _as_batch(prediction, target)
    mse = (x - y).square().mean(dim=(-3, -2, -1))
    values = 10.0 * torch.log10(data_range**2 / mse)
    return _reduce(values, reduction)


def _gaussian_taps(*, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The 11 taps of a 1D Gaussian, sigma 1.5, normalised to sum 1 (as scipy's filter)."""
    offsets = torch.arange(-_RADIUS, _RADIUS + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (offsets / _SIGMA) ** 2)
    return (taps / taps.sum()).to(dtype=dtype, device=device)


def _gaussian_valid(stack: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter of each channel, 'valid' region only (no border handling).

    ``(N, C, H, W)`` -> ``(N, C, H - 10, W - 10)``. scikit-image filters with reflection
    and then crops the 5-pixel border, so the values it averages are exactly these.
    """
    channels = stack.shape[1]
    taps = _gaussian_taps(dtype=stack.dtype, device=stack.device)
    along_y = taps.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    along_x = taps.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    return F.conv2d(F.conv2d(stack, along_y, groups=channels), along_x, groups=channels)


def ssim_map(prediction: torch.Tensor, target: torch.Tensor, *, data_range: float) -> torch.Tensor:
    """Local SSIM index (Wang et al. 2004, Eq. 13) over the valid region, differentiable.

    Local means, population variances and covariance come from an 11x11 Gaussian window
    (sigma 1.5, separable, normalised over its 11 taps); ``C1 = (0.01 L)**2`` and
    ``C2 = (0.03 L)**2`` with ``L = data_range``. doi:10.1109/TIP.2003.819861.

    Parameters
    ----------
    prediction, target
        ``(N, H, W)`` or ``(N, 1, H, W)`` tensors, ``H, W >= 11``. Computed in the input's
        floating dtype (integers -> float64, fp16/bf16 -> float32), also under autocast;
        the autograd graph is kept.
    data_range
        Max - min of the possible values, keyword-only.

    Returns
    -------
    torch.Tensor
        ``(N, 1, H - 10, W - 10)``: the SSIM map without the 5-pixel border where the
        window would leave the slice.
    """
    data_range = _check_data_range(data_range)
    x, y = _as_batch(prediction, target)
    _check_ssim_size(tuple(prediction.shape))
    # outside autocast: under mixed precision the Gaussian filter (a conv) would run in
    # bf16/fp16, and the variances below lose all their digits to cancellation
    with torch.autocast(x.device.type, enabled=False):
        stats = _gaussian_valid(torch.cat([x, y, x * x, y * y, x * y], dim=1))
    ux, uy, uxx, uyy, uxy = stats.split(1, dim=1)
    # population covariance (no N/(N-1) factor) to match Wang et al. 2004
    vx = uxx - ux * ux
    vy = uyy - uy * uy
    vxy = uxy - ux * uy
    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    numerator = (2 * ux * uy + c1) * (2 * vxy + c2)
    denominator = (ux * ux + uy * uy + c1) * (vx + vy + c2)
    return numerator / denominator


def ssim_batch(
    prediction: torch.Tensor,
    target: torch.Tensor,
    *,
    data_range: float,
    reduction: Literal["none", "mean"] = "none",
) -> torch.Tensor:
    """Mean SSIM of each slice (Wang et al. 2004, Eq. 17), differentiable.

    The mean of :func:`ssim_map` over each slice's valid region, as scikit-image does.

    Parameters
    ----------
    prediction, target
        ``(N, H, W)`` or ``(N, 1, H, W)`` tensors of the same shape, ``H, W >= 11``.
    data_range
        Max - min of the possible values (1.0 for [0, 1] slices), keyword-only.
    reduction
        ``"none"``: one value per slice, shape ``(N,)``; ``"mean"``: their mean, shape
        ``()``. ``1 - ssim_batch(..., reduction="mean")`` is an SSIM loss.

    Returns
    -------
    torch.Tensor
        SSIM in [-1, 1], 1 for identical slices; the input's floating dtype.
    """
    values = ssim_map(prediction, target, data_range=data_range).mean(dim=(-3, -2, -1))
    return _reduce(values, reduction)


def _numpy_pair(prediction: np.ndarray, target: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """numpy ``(H, W)`` or ``(N, H, W)`` arrays -> float64 ``(N, H, W)`` tensors."""
    x = np.asarray(prediction, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    if x.ndim not in (2, 3):
        raise ValueError(f"expected a slice (H, W) or slices (N, H, W), got shape {x.shape}")
    if x.shape != y.shape:
        raise ValueError(f"prediction and target shapes differ: {x.shape} vs {y.shape}")
    return torch.from_numpy(x.reshape((-1, *x.shape[-2:]))), torch.from_numpy(
        y.reshape((-1, *y.shape[-2:]))
    )


def _numpy_result(values: torch.Tensor, ndim: int) -> float | np.ndarray:
    return float(values[0]) if ndim == 2 else values.numpy().astype(np.float64)


def psnr(prediction: np.ndarray, target: np.ndarray, *, data_range: float) -> float | np.ndarray:
    """Peak signal-to-noise ratio ``10 log10(data_range**2 / MSE)`` in dB, float64.

    Parameters
    ----------
    prediction, target
        A slice ``(H, W)`` or a stack of slices ``(N, H, W)``, same shape, any real dtype.
    data_range
        Max - min of the possible values (1.0 for [0, 1] slices, 255 for 8-bit data).

    Returns
    -------
    float or numpy.ndarray
        A Python ``float`` for a 2D input; a float64 ``(N,)`` array of per-slice values
        for a 3D input. Identical images give ``+inf``.

    Raises
    ------
    ValueError
        Shapes differ or are not 2D/3D, input is not finite, or ``data_range <= 0``.
    """
    x, y = _numpy_pair(prediction, target)
    return _numpy_result(psnr_batch(x, y, data_range=data_range), np.ndim(prediction))


def ssim(prediction: np.ndarray, target: np.ndarray, *, data_range: float) -> float | np.ndarray:
    """Mean structural similarity (Wang et al. 2004, doi:10.1109/TIP.2003.819861), float64.

    Gaussian window 11x11, sigma 1.5; ``K1 = 0.01``, ``K2 = 0.03``; population covariance;
    mean over the valid region. Equals ``skimage.metrics.structural_similarity(
    prediction, target, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=data_range)``.

    Parameters
    ----------
    prediction, target
        A slice ``(H, W)`` or a stack ``(N, H, W)``, same shape, ``H, W >= 11``.
    data_range
        Max - min of the possible values (1.0 for [0, 1] slices, 255 for 8-bit data).

    Returns
    -------
    float or numpy.ndarray
        A Python ``float`` for a 2D input; a float64 ``(N,)`` array for a 3D input.

    Raises
    ------
    ValueError
        Slices smaller than 11x11 (the shape is named), shapes differ or are not 2D/3D,
        input is not finite, or ``data_range <= 0``.
    """
    x, y = _numpy_pair(prediction, target)
    _check_ssim_size(np.shape(prediction))
    return _numpy_result(ssim_batch(x, y, data_range=data_range), np.ndim(prediction))
