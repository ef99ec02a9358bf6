"""Simulate a low-resolution microCT acquisition of a high-resolution volume.

What is modelled, slice by slice (one transverse slice = one detector row group):

* parallel-beam geometry (each slice is projected and reconstructed on its own);
* detector binning: ``factor`` HR slices are averaged along Z (detector rows) and
  ``factor`` HR detector bins are merged in-plane, so the LR detector pitch is the LR
  voxel size; bins integrate intensity, so they average transmission ``exp(-p)``, not
  the line integral ``p`` (the non-linear partial-volume effect);
* angular undersampling: ``round(projections_ratio * hr_projections)`` views evenly
  over [0, 180) degrees;
* Poisson photon noise with ``photons * frames`` incident photons per LR bin (frame
  averaging adds photons);
* filtered back-projection (FBP) with a ramp (or other scikit-image) filter onto the
  LR grid: Kak & Slaney, *Principles of Computerized Tomographic Imaging*, IEEE Press
  1988, ch. 3, doi:10.1137/1.9780898719277.

Grey values become linear attenuation in physical units
(:mod:`microsr.simulate.attenuation`: a calibration's real attenuation, or the 99.5th
percentile of an uncalibrated volume taken as 1000 mg HA/cm3 bone), so the noise level
does not depend on how the scan was stored. Optional effects (:mod:`microsr.simulate.
effects`, off by default): a Gaussian detector / focal-spot PSF, sub-voxel LR/HR
misregistration and ring artefacts; randomised settings: :mod:`microsr.simulate.randomize`.

What is not: cone-beam geometry and its artefacts, polychromatic beam hardening,
scatter, detector afterglow, sample motion, and the scanner vendor's own
reconstruction filters and corrections. The LR images are therefore cleaner than a real
scan's and a model trained on them alone will not see those artefacts.

``quick=True`` replaces the projection / noise / FBP chain by a Gaussian PSF, a block
average and Gaussian noise, for tests and fast data generation.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.transform import iradon, radon

from microsr.errors import MicrosrError
from microsr.io.sink import template
from microsr.runtime import progress as make_progress
from microsr.simulate.attenuation import Attenuation, resolve_attenuation
from microsr.simulate.config import DEFAULT_CONFIG, AcquisitionConfig
from microsr.simulate.effects import blur_detector, ring_gains, shift_volume
from microsr.volume import Volume

logger = logging.getLogger(__name__)

__all__ = ["AcquisitionConfig", "fbp_noise_sigma", "simulate_acquisition", "simulate_slabs"]


@dataclass(frozen=True)
class _Geometry:
    """Per-slice projection geometry shared by all slices (HR pixel units unless noted)."""

    factor: int
    pixel_mm: float  # HR in-plane pixel size
    theta_deg: np.ndarray  # (M,) view angles
    shift: np.ndarray  # (M,) LR detector centre minus radon's rotation axis, on the detector
    lr_bins: int  # LR detector bins, rotation axis at lr_bins // 2
    out_size: int  # square iradon output, rotation axis at out_size // 2
    crop: tuple[int, int]  # (row, col) of LR pixel (0, 0) in the iradon output
    lr_shape: tuple[int, int]  # (Y_lr, X_lr)


def simulate_acquisition(
    hr: Volume, config: AcquisitionConfig = DEFAULT_CONFIG, *, progress: bool = False
) -> Volume:
    """Simulate the low-resolution scan of a high-resolution volume.

    Parameters
    ----------
    hr
        HR volume, shape ``(Z, Y, X)``, grey values (e.g. mg HA/cm3); spacing in mm.
        In-plane pixels are assumed square (the Y spacing is used for line integrals).
    config
        Acquisition settings; see :class:`AcquisitionConfig`.
    progress
        Show a tqdm progress bar over LR slices.

    Returns
    -------
    Volume
        float32, shape ``(Z // f, Y // f, X // f)`` (remainders dropped) in the grey
        units of ``hr``; spacing ``hr.spacing_mm * f``; origin placing each LR voxel
        centre at the centre of the HR voxels it covers,
        ``origin_hr + (f - 1) / 2 * spacing_hr`` (a ``shift_hr_voxels`` moves the
        content, not the origin). Calibration kept; ``metadata["acquisition"]`` holds
        ``config.model_dump()`` and ``metadata["acquisition_resolved"]`` the derived
        projection counts and ``"attenuation"``, the grey value -> attenuation map used
        (its ``rule`` and resolved ``reference_value``, :class:`Attenuation`).

    Raises
    ------
    MicrosrError
        A volume too small for ``factor``; see also :func:`resolve_attenuation`.
    """
    target, slabs = simulate_slabs(hr, config, progress=progress)
    lr = np.empty(target.shape, np.float32)
    z = 0
    for slab in slabs:
        lr[z : z + len(slab)] = slab
        z += len(slab)
    return target.with_array(lr)


def simulate_slabs(
    hr: Volume, config: AcquisitionConfig = DEFAULT_CONFIG, *, progress: bool = False
) -> tuple[Volume, Iterator[np.ndarray]]:
    """:func:`simulate_acquisition` as a geometry and an iterator of LR slabs, for streaming.

    The projection / FBP path reads ``hr.array`` one z chunk at a time (of a store read
    lazily, :class:`microsr.io.lazy.LazySlices`; its LR slices are yielded before the next
    chunk is read), so peak memory is one HR chunk slab and its LR slices. ``quick`` and a non-zero
    ``shift_hr_voxels`` need the whole volume (3D filters): they read it and yield one slab.
    The slabs are the same numbers :func:`simulate_acquisition` returns.

    Returns
    -------
    tuple
        A :func:`microsr.io.template` of the LR volume (geometry, calibration, metadata as
        :func:`simulate_acquisition`'s; no voxels) and its ``(n, Y_lr, X_lr)`` float32 slabs.
    """
    f = config.factor
    shape = hr.shape
    if shape[0] < f or min(shape[1:]) < f:
        raise MicrosrError(
            f"volume of shape {shape} is too small for factor {f}: every axis needs "
            f"at least {f} voxels"
        )
    if shape[0] % f or shape[1] % f or shape[2] % f:
        logger.info("shape %s not divisible by factor %d: remainders dropped", shape, f)
    lr_shape = tuple(n // f for n in shape)
    attenuation = resolve_attenuation(hr, config)
    resolved: dict = {"lr_shape": lr_shape, "attenuation": attenuation.as_dict()}
    logger.info(
        "attenuation: %s rule, reference grey value %.6g -> %.4g /mm",
        attenuation.rule, attenuation.reference_value, config.mu_bone_per_mm,
    )  # fmt: skip
    content = shift_volume(hr, config.shift_hr_voxels)
    if config.quick:
        lr, resolved["quick_noise_sigma"] = _quick(content, config, attenuation)
        slabs: Iterator[np.ndarray] = iter([lr.astype(np.float32, copy=False)])
    else:
        slabs = _full(content, config, attenuation, progress=progress)
        resolved.update(_projection_counts(shape, config))
    spacing = tuple(s * f for s in hr.spacing_mm)
    origin = tuple(o + (f - 1) / 2 * s for o, s in zip(hr.origin_mm, hr.spacing_mm))
    metadata = dict(hr.metadata)
    metadata["acquisition"] = config.model_dump()
    metadata["acquisition_resolved"] = resolved
    target = template(lr_shape, spacing, origin, hr.calibration, metadata, dtype=np.float32)  # type: ignore[arg-type]
    return target, slabs


def _projection_counts(shape: tuple[int, int, int], config: AcquisitionConfig) -> dict:
    """HR and LR projection counts for a volume of ``shape``."""
    hr_n = config.hr_projections or math.ceil(math.pi / 2 * max(shape[1:]))
    lr_n = max(1, round(config.projections_ratio * hr_n))
    return {"hr_projections": int(hr_n), "lr_projections": int(lr_n)}


def _slice_rng(seed: int, index: int, *, stream: int = 0) -> np.random.Generator:
    """Independent stream for LR slice ``index``, whatever order slices run in.

    ``stream`` 0 is the photon noise, 1 the ring gains (so that switching rings on does
    not change the noise).
    """
    key = (index,) if stream == 0 else (index, stream)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _full(
    hr: Volume, config: AcquisitionConfig, attenuation: Attenuation, *, progress: bool
) -> Iterator[np.ndarray]:
    """Projection / noise / FBP simulation: float32 ``(n, Y_lr, X_lr)`` slabs in grey units.

    HR is read one z chunk at a time (``hr.array.slab`` slices for a lazily read store, else
    32); the fewer than ``factor`` slices left over at a chunk's end wait for the next.
    """
    f = config.factor
    geometry = _make_geometry(hr.shape[1:], hr.spacing_mm[1], config)
    n_slices = hr.shape[0] // f
    chunk = int(getattr(hr.array, "slab", None) or 32)
    bar = make_progress(total=n_slices, disable=not progress, desc="simulate LR", unit="slice")
    carry, z = None, 0  # HR slices of LR slice z not read yet; the next LR slice
    for start in range(0, n_slices * f, chunk):
        block = np.asarray(hr.array[start : min(start + chunk, n_slices * f)])
        block = block if carry is None else np.concatenate([carry, block])
        out = np.empty((len(block) // f,) + geometry.lr_shape, dtype=np.float32)
        for i in range(len(out)):
            # detector rows: the mean of the f HR slices of LR slice z + i
            binned = np.mean(block[i * f : (i + 1) * f], axis=0, dtype=np.float64)
            mu = attenuation.to_mu(binned)
            out[i] = attenuation.to_value(_acquire_slice(mu, geometry, config, config.seed, z + i))
            bar.update(1)
        carry, z = block[len(out) * f :], z + len(out)
        if len(out):
            yield out
    bar.close()


def _make_geometry(
    slice_shape: tuple[int, int], pixel_mm: float, config: AcquisitionConfig
) -> _Geometry:
    """Detector and reconstruction geometry for HR slices of ``slice_shape`` (Y, X).

    ``skimage.transform.radon`` rotates about HR pixel ``(Y // 2, X // 2)`` and
    ``iradon`` reconstructs about output pixel ``(n // 2, n // 2)``, the detector
    centre being bin ``bins // 2`` in both. We reconstruct about the centre of LR
    pixel ``(Y_lr // 2, X_lr // 2)``, which lies at HR coordinate
    ``(f - 1) / 2 + f * index`` and so is off radon's axis by up to ``f / 2`` pixels;
    the LR detector is displaced by the projection of that offset at each angle.
    """
    f = config.factor
    ny, nx = slice_shape
    lr_shape = (ny // f, nx // f)
    centre_lr = (lr_shape[0] // 2, lr_shape[1] // 2)
    dy = (f - 1) / 2 + f * centre_lr[0] - ny // 2
    dx = (f - 1) / 2 + f * centre_lr[1] - nx // 2
    n_views = _projection_counts((1, ny, nx), config)["lr_projections"]
    theta = np.arange(n_views) * (180.0 / n_views)
    rad = np.deg2rad(theta)
    # radon / iradon detector coordinate of a point at (row, col) offset: col cos - row sin
    shift = dx * np.cos(rad) - dy * np.sin(rad)
    out_size = max(lr_shape)
    hr_bins = math.ceil(math.sqrt(2) * max(ny, nx))  # radon(circle=False) sinogram length
    half = max((hr_bins / 2 + 1 + f) / f, out_size / math.sqrt(2) + 2)
    return _Geometry(
        factor=f,
        pixel_mm=float(pixel_mm),
        theta_deg=theta,
        shift=shift,
        lr_bins=2 * math.ceil(half) + 1,
        out_size=out_size,
        crop=(out_size // 2 - centre_lr[0], out_size // 2 - centre_lr[1]),
        lr_shape=lr_shape,
    )


def _acquire_slice(
    mu: np.ndarray, geometry: _Geometry, config: AcquisitionConfig, seed: int, index: int
) -> np.ndarray:
    """Project, blur, bin, add noise and ring gains, and reconstruct one slice.

    Parameters
    ----------
    mu
        Attenuation coefficients in 1/mm, shape ``(Y, X)`` on the HR grid.
    seed, index
        Seed and LR slice index of the slice's noise and ring-gain streams.

    Returns
    -------
    numpy.ndarray
        Reconstructed attenuation in 1/mm, shape ``(Y_lr, X_lr)``.
    """
    # radon sums pixel values along rays: x pixel size -> dimensionless line integral
    line_integrals = radon(mu, theta=geometry.theta_deg, circle=False, preserve_range=True)
    transmission = np.exp(-line_integrals * geometry.pixel_mm)
    transmission = blur_detector(transmission, config.psf_sigma_bins * geometry.factor)
    transmission = _bin_detector(transmission, geometry)
    if math.isfinite(config.photons):
        incident = config.photons * config.frames
        counts = _slice_rng(seed, index).poisson(incident * transmission)
        # zero counts would give an infinite line integral: clamp to one photon, as
        # scanners do by flooring the normalised intensity
        transmission = np.maximum(counts, 1) / incident
    if config.ring_strength > 0:
        rng = _slice_rng(seed, index, stream=1)
        transmission = transmission * ring_gains(len(transmission), config.ring_strength, rng)
    sinogram = -np.log(transmission)
    lr_pixel_mm = geometry.pixel_mm * geometry.factor
    # iradon expects sums in units of its own (LR) pixels
    image = iradon(
        sinogram / lr_pixel_mm,
        theta=geometry.theta_deg,
        output_size=geometry.out_size,
        filter_name=config.filter_name,
        circle=False,
        preserve_range=True,
    )
    r0, c0 = geometry.crop
    return image[r0 : r0 + geometry.lr_shape[0], c0 : c0 + geometry.lr_shape[1]]


def _bin_detector(transmission: np.ndarray, geometry: _Geometry) -> np.ndarray:
    """Merge HR detector bins into LR bins of width ``factor``, at a sub-bin offset.

    Parameters
    ----------
    transmission
        HR sinogram of transmissions, shape ``(bins, M)``; bin ``k`` covers detector
        coordinate ``[k - bins // 2 - 0.5, k - bins // 2 + 0.5]`` (HR pixels).

    Returns
    -------
    numpy.ndarray
        LR transmissions, shape ``(lr_bins, M)``: the mean over each LR bin, the
        HR profile being taken as piecewise constant (exact box integration, outside
        the HR sinogram the transmission is 1).
    """
    f = geometry.factor
    n_hr = transmission.shape[0]
    lr_index = np.arange(geometry.lr_bins) - geometry.lr_bins // 2
    edges_hr = np.arange(n_hr + 1) - n_hr // 2 - 0.5
    out = np.empty((geometry.lr_bins, transmission.shape[1]))
    # integrate (transmission - 1) so that bins outside the HR range contribute 0
    cumulative = np.concatenate(
        [np.zeros((1, transmission.shape[1])), np.cumsum(transmission - 1.0, axis=0)]
    )
    for m in range(transmission.shape[1]):
        centre = lr_index * f + geometry.shift[m]
        upper = np.interp(centre + f / 2, edges_hr, cumulative[:, m])
        lower = np.interp(centre - f / 2, edges_hr, cumulative[:, m])
        out[:, m] = 1.0 + (upper - lower) / f
    return out


def fbp_noise_sigma(hr: Volume, config: AcquisitionConfig) -> float:
    """Expected noise standard deviation of the FBP reconstruction, in grey units.

    Ramp-filtered parallel-beam FBP of projections with independent noise of variance
    ``var_p`` per bin gives ``var_mu = pi**2 * var_p / (12 * M * d**2)`` for ``M``
    views over 180 degrees and detector pitch ``d`` (Kak & Slaney 1988, ch. 5.2,
    doi:10.1137/1.9780898719277). Linear interpolation in the back-projection
    averages neighbouring filtered bins, whose ramp-filtered noise has correlation
    ``-6 / pi**2``; over uniformly distributed interpolation weights this scales the
    variance by ``2/3 - 2/pi**2``. For the apodised filters the estimate is an upper
    bound. ``var_p = mean(exp(p)) / (photons * frames)`` with ``p``
    the line integrals through the object along Y and X (a rough, object-dependent
    estimate; only ``photons`` and ``frames`` matter for an empty volume).

    Parameters
    ----------
    hr
        HR volume ``(Z, Y, X)`` in grey units.
    config
        Acquisition settings.

    Returns
    -------
    float
        Standard deviation in grey units; 0 if ``photons`` is infinite. Detector blur
        (``psf_sigma_bins``) lowers the real noise; it is not accounted for.
    """
    return _noise_sigma(hr, config, resolve_attenuation(hr, config))


def _noise_sigma(hr: Volume, config: AcquisitionConfig, attenuation: Attenuation) -> float:
    """:func:`fbp_noise_sigma` with the attenuation map already resolved."""
    if not math.isfinite(config.photons):
        return 0.0
    array = np.asarray(hr.array, dtype=np.float32)
    mu = np.clip(np.float32(attenuation.slope) * array + np.float32(attenuation.intercept), 0, None)
    p = np.concatenate([mu.sum(axis=1).ravel(), mu.sum(axis=2).ravel()]) * hr.spacing_mm[1]
    inside = p[p > 0]
    mean_inverse_transmission = float(np.exp(inside).mean()) if inside.size else 1.0
    var_p = mean_inverse_transmission / (config.photons * config.frames)
    n_views = _projection_counts(hr.shape, config)["lr_projections"]
    pitch_mm = hr.spacing_mm[1] * config.factor
    interpolation = 2 / 3 - 2 / math.pi**2
    var_mu = math.pi**2 * var_p / (12 * n_views * pitch_mm**2) * interpolation
    return math.sqrt(var_mu) / attenuation.slope


def _quick(
    hr: Volume, config: AcquisitionConfig, attenuation: Attenuation
) -> tuple[np.ndarray, float]:
    """Gaussian PSF, ``factor``-cube block average and Gaussian noise.

    The PSF sigma defaults to ``0.5 * factor`` HR voxels, roughly the blur of
    detector binning plus FBP interpolation at the LR pitch; it is applied along all
    three axes. Returns the float32 LR array and the noise sigma used.
    """
    f = config.factor
    sigma = 0.5 * f if config.quick_psf_sigma is None else config.quick_psf_sigma
    array = np.asarray(hr.array, dtype=np.float32)
    if sigma > 0:
        array = ndimage.gaussian_filter(array, sigma, mode="nearest")
    nz, ny, nx = (n // f for n in hr.shape)
    blocks = array[: nz * f, : ny * f, : nx * f].reshape(nz, f, ny, f, nx, f)
    lr = blocks.mean(axis=(1, 3, 5), dtype=np.float64).astype(np.float32)
    noise_sigma = config.quick_noise_sigma
    if noise_sigma is None:
        noise_sigma = _noise_sigma(hr, config, attenuation)
    if noise_sigma > 0:
        rng = np.random.default_rng(np.random.SeedSequence(config.seed))
        lr += rng.normal(0.0, noise_sigma, size=lr.shape).astype(np.float32)
    return lr, float(noise_sigma)
