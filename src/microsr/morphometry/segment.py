"""Segmentation of bone for morphometry: Gaussian smoothing, then a lower threshold.

As Scanco IPL (``/gauss_seg``) and the paper: each slice is smoothed with a Gaussian of
standard deviation ``sigma_vox`` (default 1.2) **in voxels of the image's own in-plane
grid** (on the 10 um HR grid 1.2 voxels = 12 um), then voxels ``>= threshold`` are bone.
Smoothing is 2D, in-plane: LR (bilinear-upsampled), SR and HR slices are then segmented
alike, and a 3D volume's segmentation is the stack of its slice segmentations (the SR
volume keeps the LR z spacing, so a 3D kernel would span different distances along z).
The kernel is truncated at 4 sigma (scipy's default; IPL's ``support`` is often 2 sigma).

Thresholds (:class:`MorphometryConfig`):

``mgha``
    Density in mg HA/cm3 on calibrated data (``Volume.calibration``), default 500.
``value``
    A grey value of the stored image (uncalibrated data).
``fraction``
    A fraction of the [0, 1] range after the model's per-slice min-max normalisation.
``otsu``
    Otsu's threshold of the smoothed reference (HR) grey values, applied to all images.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.morphology import disk

from microsr.errors import MicrosrError
from microsr.morphometry.config import MorphometryConfig
from microsr.volume import Calibration, Volume, is_density


@dataclass(frozen=True)
class ResolvedThreshold:
    """A threshold and the value space it applies in (``density``, ``grey``, ``normalised``)."""

    space: Literal["density", "grey", "normalised"]
    value: float

    def describe(self) -> str:
        unit = {"density": " mg HA/cm3", "grey": " (grey value)", "normalised": " (of [0, 1])"}
        return f">= {self.value:.6g}{unit[self.space]}"


def require_density(calibration: Calibration | None, name: str) -> Calibration:
    """``calibration`` if it is a density calibration (:attr:`Calibration.is_density`)."""
    if not is_density(calibration):
        raise MicrosrError(
            f"{name}: a threshold in mg HA/cm3 needs density-calibrated data, but this volume "
            f"has {'no calibration' if calibration is None else repr(calibration.units)}; "
            "give a grey value (--threshold), a fraction (--threshold-fraction) or --otsu"
        )
    return calibration


def to_space(
    slices: np.ndarray, calibration: Calibration | None, space: str, *, name: str = "volume"
) -> np.ndarray:
    """``(N, Y, X)`` stored values -> float32 values in the threshold's ``space``."""
    slices = np.asarray(slices, dtype=np.float32)
    if space == "density":
        return require_density(calibration, name).apply(slices)
    if space == "normalised":
        from microsr.data.normalize import NormalizationConfig, normalize  # torch, only here

        return normalize(slices, NormalizationConfig())
    return slices


def smooth(slices: np.ndarray, sigma_vox: float) -> np.ndarray:
    """In-plane Gaussian of ``(N, Y, X)`` slices; sigma in voxels, edges replicated."""
    if sigma_vox == 0:
        return np.asarray(slices, dtype=np.float32)
    return ndimage.gaussian_filter(
        np.asarray(slices, np.float32), (0, sigma_vox, sigma_vox), mode="nearest"
    )


def fixed_threshold(config: MorphometryConfig) -> ResolvedThreshold | None:
    """The threshold of an ``mgha``, ``value`` or ``fraction`` config; ``None`` for Otsu."""
    space = {"mgha": "density", "value": "grey", "fraction": "normalised"}.get(config.threshold)
    return None if space is None else ResolvedThreshold(space, float(config.threshold_value))


def resolve_threshold(
    reference: Volume | np.ndarray, config: MorphometryConfig, *, name: str = "volume"
) -> ResolvedThreshold:
    """The threshold for ``config``; Otsu is computed on the smoothed ``reference`` slices."""
    if config.threshold == "mgha" and isinstance(reference, Volume):
        require_density(reference.calibration, name)
    fixed = fixed_threshold(config)
    if fixed is not None:
        return fixed
    arr = reference.array if isinstance(reference, Volume) else reference
    return ResolvedThreshold("grey", smoothed_otsu([arr], config.sigma_vox, name=name))


def smoothed_otsu(
    chunks: Iterable[np.ndarray],
    sigma_vox: float,
    *,
    max_voxels: int | None = None,
    name: str = "volume",
) -> float:
    """Otsu's threshold of in-plane smoothed voxels: the one Otsu of the package.

    Otsu 1979, doi:10.1109/TSMC.1979.4310076. Each ``(N, Y, X)`` chunk is smoothed by
    :func:`smooth` (as :func:`segment` smooths before thresholding), optionally reduced to an
    evenly strided sample of ``max_voxels`` voxels, and the values of all chunks are pooled.

    Raises
    ------
    MicrosrError
        No voxels, or all smoothed values equal (the threshold is undefined).
    """
    from microsr.data.normalize import sample_voxels  # torch; this module stays torch-free

    values = []
    for chunk in chunks:
        smoothed = smooth(np.asarray(chunk, np.float32), sigma_vox)
        values.append(
            smoothed.ravel()
            if max_voxels is None
            else sample_voxels(smoothed, max_voxels=max_voxels)
        )
    pooled = np.concatenate(values) if values else np.zeros(0, np.float32)
    if pooled.size == 0 or float(pooled.max()) == float(pooled.min()):
        raise MicrosrError(f"{name}: empty or constant image, Otsu's threshold is undefined")
    return float(threshold_otsu(pooled))


def segment(
    slices: np.ndarray,
    threshold: ResolvedThreshold,
    *,
    sigma_vox: float = 1.2,
    calibration: Calibration | None = None,
    name: str = "volume",
) -> np.ndarray:
    """Bone mask ``(N, Y, X)`` bool: smoothed values ``>= threshold`` (see the module doc)."""
    values = to_space(slices, calibration, threshold.space, name=name)
    return smooth(values, sigma_vox) >= threshold.value


def periosteal_envelope(bone: np.ndarray, *, closing_vox: int = 5) -> np.ndarray:
    """Filled periosteal envelope of each ``(N, Y, X)`` bone-mask slice, bool.

    Closing (disk of radius ``closing_vox``, the slice padded so borders do not erode it)
    bridges pores of the cortex; holes are filled and the largest component is kept.
    """
    bone = np.asarray(bone, dtype=bool)
    out = np.zeros_like(bone)
    r = int(closing_vox)
    for i, sl in enumerate(bone):
        if r:
            sl = ndimage.binary_closing(np.pad(sl, r), structure=disk(r))[r:-r, r:-r]
        filled = ndimage.binary_fill_holes(sl)
        labels, n = ndimage.label(filled)
        if n:
            sizes = np.bincount(labels.ravel())[1:]
            out[i] = labels == (1 + int(np.argmax(sizes)))
    return out
