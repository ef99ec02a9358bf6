"""Forward models of LR microCT acquisitions written outside :mod:`microsr.simulate` (issue 32).

Nothing here imports :mod:`microsr.simulate`: these scans are what a scanner we did not write
might give, used to test whether ``fit-acquisition`` (which fits *our* simulator) holds on them.
Each step is a small numpy function with an analytic test (``tests/test_independent_forward.py``):

1. **Materials.** An HR grey volume is read as a mixture of water and cortical bone: bone
   volume fraction ``b = max(grey, 0) / grey_ref`` (``grey_ref``: the HR scan's 99.5th
   percentile, taken as fully mineralised bone), the rest water. Attenuation per energy from
   :data:`MU_WATER` / :data:`MU_BONE` (NIST tables), so bone/water contrast differs by energy.
2. **Projection** (parallel beam, the detector geometry of ``skimage.transform.radon`` with
   ``circle=False``: bin ``i`` at ``i - n_det // 2`` pixels from the axis through pixel
   ``(Y // 2, X // 2)``), one of two projectors:
   ``"radon"`` (scikit-image, linear interpolation of a rotated image) or ``"rays"``
   (this file: bilinear samples at half-pixel steps along each ray).
3. **Polychromatic beam** (:func:`polychromatic_transmission`): the detected intensity is
   the spectrum-weighted sum of ``exp(-line integral at E)``; the log of that sum is not a
   line integral (beam hardening: cupping, streaks between dense trabeculae, bone density
   under-read where the path is long).
4. **Detector** (:func:`bin_detector`, :func:`detect`): elements ``factor`` HR pixels wide,
   transmission averaged over each element (before the log; the log values are put back
   on the HR bin grid by linear interpolation for the reconstruction); a slice profile wider than
   the LR voxel (:func:`slice_profile_weights`: a Gaussian of FWHM ``slice_fwhm_lr`` LR
   voxels, integrated over each HR slice, applied to transmission); ring artefacts from
   per-element gains that the flat-field does not correct; Poisson noise on the counts plus
   Gaussian electronic noise (counts), then ``-log(counts / photons)``.
5. **Reconstruction** (:func:`reconstruct`) on the HR pixel grid: FBP
   (``skimage.transform.iradon`` with a filter) or SART (``iradon_sart``, an iterative
   method with its own ray-driven projector); then the mean of each ``factor x factor``
   block gives the LR slice, so LR voxel ``k`` is centred on HR ``factor k + (factor-1)/2``
   in every axis (microsr's LR origin convention).
6. **Vendor calibration and post-filter** (:func:`phantom_readings`, :func:`calibrate`,
   :func:`post_filter`): a linear map of attenuation to HR grey values made from the
   reconstructions of two uniform calibration phantoms (water; 30 % bone) through the same
   chain, then a Gaussian or median filter (2D or 3D).

What is not modelled: cone beam, scatter, focal-spot blur, detector afterglow, motion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.special import erf
from skimage.transform import iradon, iradon_sart, radon

#: Mass attenuation coefficients (cm^2/g) of liquid water and ICRU-44 cortical bone at 20..60
#: keV, from NIST's X-ray mass attenuation tables (Hubbell & Seltzer, NISTIR 5632,
#: doi:10.18434/T4D01F), times the densities 1.00 and 1.92 g/cm3, in 1/mm.
ENERGIES_KEV = (20, 30, 40, 50, 60)
MU_WATER = dict(
    zip(ENERGIES_KEV, (0.8096 * 0.1, 0.3756 * 0.1, 0.2683 * 0.1, 0.2269 * 0.1, 0.2059 * 0.1))
)
MU_BONE = dict(
    zip(
        ENERGIES_KEV, (4.001 * 0.192, 1.331 * 0.192, 0.6655 * 0.192, 0.4242 * 0.192, 0.3148 * 0.192)
    )
)


@dataclass(frozen=True)
class Spectrum:
    """A discrete X-ray spectrum: energies (keV, keys of :data:`MU_WATER`) and their weights
    (fractions of the unattenuated photons, normalised to sum 1)."""

    energies_kev: tuple[int, ...]
    weights: tuple[float, ...]

    def normalised(self) -> np.ndarray:
        w = np.asarray(self.weights, float)
        return w / w.sum()

    def mu(self) -> tuple[np.ndarray, np.ndarray]:
        """(water, bone) attenuation at each energy, 1/mm."""
        return (
            np.array([MU_WATER[e] for e in self.energies_kev]),
            np.array([MU_BONE[e] for e in self.energies_kev]),
        )

    def effective_mu(self) -> tuple[float, float]:
        """(water, bone) thin-object attenuation, 1/mm: ``-d log(sum w exp(-mu L)) / dL`` at
        ``L = 0``, i.e. the weighted mean ``sum w mu`` (what a calibration on thin phantoms gives)."""
        w = self.normalised()
        water, bone = self.mu()
        return float(w @ water), float(w @ bone)


@dataclass(frozen=True)
class ForwardConfig:
    """One independent acquisition. Photons are per LR detector element and view, unattenuated.

    ``slice_fwhm_lr``: FWHM of the Gaussian slice profile in LR voxels (> 1: wider than the
    voxel). ``ring_sd``: s.d. of the uncorrected per-element gain (0: no rings).
    ``electronic_sigma``: Gaussian read noise, counts. ``post``: "none", "gaussian"
    (``post_size`` = sigma, LR voxels) or "median" (``post_size`` = window side, voxels);
    ``post_3d``: filter along z too. ``sart_iterations`` only with ``recon="sart"``.
    ``pad``: HR pixels of mirrored object added around each slice before projection (a
    multiple of ``factor``), so the field of view lies inside the object as in a scan of a
    core in a larger bone, and the field's border is not an object/air edge.
    """

    projector: str = "radon"  # "radon" | "rays"
    recon: str = "fbp"  # "fbp" | "sart"
    filter_name: str = "ramp"  # iradon filters: ramp, shepp-logan, cosine, hamming, hann
    views: int = 180
    spectrum: Spectrum = field(default_factory=lambda: Spectrum((20, 40), (0.5, 0.5)))
    photons: float = 5000.0
    electronic_sigma: float = 0.0
    ring_sd: float = 0.0
    slice_fwhm_lr: float = 1.0
    post: str = "none"
    post_size: float = 0.0
    post_3d: bool = False
    sart_iterations: int = 2
    factor: int = 2
    pad: int = 8
    seed: int = 0

    def describe(self) -> str:
        s = self.spectrum
        spec = "+".join(f"{e}" for e in s.energies_kev) + " keV"
        post = (
            "none"
            if self.post == "none"
            else f"{self.post} {self.post_size:g}{' 3D' if self.post_3d else ''}"
        )
        recon = (
            f"FBP {self.filter_name}" if self.recon == "fbp" else f"SART x{self.sart_iterations}"
        )
        return (
            f"{self.projector} projector, {recon}, {self.views} views, {spec}, "
            f"{self.photons:g} ph, e-noise {self.electronic_sigma:g}, rings {self.ring_sd:g}, "
            f"slice FWHM {self.slice_fwhm_lr:g} LR vox, post {post}"
        )


def slice_profile_weights(n_hr: int, factor: int, fwhm_lr: float) -> np.ndarray:
    """Weights ``(n_hr // factor, n_hr)`` of HR slices in each LR slice.

    LR slice ``k`` is centred on HR coordinate ``c = factor k + (factor - 1) / 2``; its
    sensitivity is a Gaussian of FWHM ``fwhm_lr * factor`` HR slices, integrated over each HR
    slice ``[j - 1/2, j + 1/2]``, and each row is normalised to sum 1 (at the volume's ends
    the profile is cut there, as a scan of a slab would be). A narrow profile
    (``fwhm_lr -> 0``) puts equal weight on the two HR slices nearest ``c`` when ``factor``
    is 2. A symmetric profile keeps a linear ramp along z exactly (away from the ends).
    """
    n_lr = n_hr // factor
    sigma = max(fwhm_lr * factor / (2 * math.sqrt(2 * math.log(2))), 1e-6)
    centres = factor * np.arange(n_lr) + (factor - 1) / 2
    edges = np.arange(n_hr + 1) - 0.5
    cdf = 0.5 * (1 + erf((edges[None, :] - centres[:, None]) / (sigma * math.sqrt(2))))
    w = np.diff(cdf, axis=1)
    return w / w.sum(axis=1, keepdims=True)


def project(image: np.ndarray, theta_deg: np.ndarray, *, projector: str) -> np.ndarray:
    """Parallel-beam line integrals of a square ``(N, N)`` image, in pixel units.

    Returns ``(n_det, len(theta_deg))`` with ``n_det = ceil(sqrt(2) N)`` (skimage's
    ``radon(circle=False)`` geometry for both projectors).
    """
    if projector == "radon":
        return radon(image, theta=theta_deg, circle=False, preserve_range=True)
    if projector == "rays":
        return _project_rays(image, theta_deg)
    raise ValueError(f"unknown projector {projector!r}")


def _project_rays(image: np.ndarray, theta_deg: np.ndarray) -> np.ndarray:
    """Ray-driven projector: bilinear samples every half pixel along each ray (skimage's
    radon rotates the whole image and sums one sample per pixel).

    skimage's radon warps the image by ``(col - c, row - c) -> (u cos + s sin, -u sin + s cos)``
    and sums over ``s``; the same rays are sampled here (``u``: detector, ``s``: along the ray).
    """
    n = image.shape[0]
    n_det = math.ceil(math.sqrt(2) * n)
    u = np.arange(n_det) - n_det // 2
    s = np.arange(-(n_det // 2), n_det // 2 + 0.75, 0.5)
    image = np.asarray(image, np.float64)
    out = np.empty((n_det, len(theta_deg)))
    c = n // 2
    for i, t in enumerate(np.deg2rad(theta_deg)):
        cos, sin = math.cos(t), math.sin(t)
        rows = c - u[:, None] * sin + s[None, :] * cos
        cols = c + u[:, None] * cos + s[None, :] * sin
        vals = ndimage.map_coordinates(image, [rows, cols], order=1, mode="constant")
        out[:, i] = vals.sum(axis=1) * 0.5
    return out


def polychromatic_transmission(
    path_mm: np.ndarray, bone_mm: np.ndarray, spectrum: Spectrum
) -> np.ndarray:
    """Expected transmitted fraction ``sum_E w_E exp(-(mu_w(E) path + (mu_b(E) - mu_w(E)) bone))``.

    ``path_mm``: length of each ray inside the object (all water), mm; ``bone_mm``: line
    integral of the bone volume fraction, mm. One energy gives the monochromatic
    ``exp(-line integral)``; no object gives 1.
    """
    w = spectrum.normalised()
    water, bone = spectrum.mu()
    out = np.zeros(np.broadcast(path_mm, bone_mm).shape)
    for wi, mw, mb in zip(w, water, bone):
        out += wi * np.exp(-(mw * path_mm + (mb - mw) * bone_mm))
    return out


def bin_detector(sinogram: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor`` neighbouring detector bins along axis 0 (an incomplete last group
    is padded with its last bin, which lies outside the object, so nothing is invented)."""
    n = sinogram.shape[0]
    pad = (-n) % factor
    if pad:
        sinogram = np.concatenate([sinogram, np.repeat(sinogram[-1:], pad, axis=0)])
    return sinogram.reshape(-1, factor, *sinogram.shape[1:]).mean(axis=1)


def unbin_detector(binned: np.ndarray, factor: int, n_det: int) -> np.ndarray:
    """Back onto the HR detector grid (axis 0) by linear interpolation between element
    centres (element ``m`` is centred on HR bin ``factor m + (factor - 1) / 2``; constant
    beyond the end ones), so the reconstruction sees no staircase and no shift."""
    centres = factor * np.arange(binned.shape[0]) + (factor - 1) / 2
    bins = np.arange(n_det, dtype=float)
    return np.stack([np.interp(bins, centres, col) for col in binned.T], axis=1)


def detect(
    transmission: np.ndarray,
    *,
    photons: float,
    electronic_sigma: float,
    gains: np.ndarray | None,
    rng: np.random.Generator | None,
) -> np.ndarray:
    """Measured line integrals ``-log(counts / photons)`` (dimensionless).

    counts = Poisson(photons * gain * transmission) + Normal(0, electronic_sigma), clipped at
    0.5 counts before the log; ``gains`` (one per detector element, axis 0) are *not* divided
    out by the flat field, which makes rings. ``rng=None``: the expected counts, no noise.
    """
    expected = photons * transmission
    if gains is not None:
        expected = expected * gains[:, None]
    if rng is None:
        counts = expected
    else:
        counts = rng.poisson(expected).astype(np.float64)
        if electronic_sigma > 0:
            counts += rng.normal(0.0, electronic_sigma, counts.shape)
    return -np.log(np.maximum(counts, 0.5) / photons)


def reconstruct(
    sinogram: np.ndarray, theta_deg: np.ndarray, *, n: int, config: ForwardConfig
) -> np.ndarray:
    """``(n, n)`` image (attenuation per pixel) from a ``radon(circle=False)``-geometry sinogram."""
    if config.recon == "fbp":
        return iradon(
            sinogram, theta=theta_deg, filter_name=config.filter_name, circle=False, output_size=n
        )
    if config.recon == "sart":
        image = None
        for _ in range(config.sart_iterations):
            image = iradon_sart(sinogram, theta=theta_deg, image=image)
        n_det = sinogram.shape[0]
        start = n_det // 2 - n // 2
        return image[start : start + n, start : start + n]
    raise ValueError(f"unknown reconstruction {config.recon!r}")


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean of each ``factor x factor`` block of a 2D image (sides multiples of ``factor``)."""
    y, x = image.shape
    return image.reshape(y // factor, factor, x // factor, factor).mean(axis=(1, 3))


#: Bone fraction of the vendor's second calibration phantom (the first is water).
CALIBRATION_FRACTION = 0.3


def calibrate(mu_mm: np.ndarray, readings: tuple[float, float], grey_ref: float) -> np.ndarray:
    """Vendor-like linear calibration of attenuation (1/mm) to HR grey values: the reading of
    a water phantom maps to 0 and that of a uniform phantom of bone fraction
    :data:`CALIBRATION_FRACTION` to ``CALIBRATION_FRACTION * grey_ref``."""
    water, ref = readings
    return (mu_mm - water) / (ref - water) * CALIBRATION_FRACTION * grey_ref


def post_filter(volume: np.ndarray, *, kind: str, size: float, three_d: bool) -> np.ndarray:
    """Post-reconstruction filter of an LR ``(Z, Y, X)`` volume, slice by slice unless ``three_d``."""
    if kind == "none" or size <= 0:
        return volume
    if kind == "gaussian":
        sigma = (size if three_d else 0.0, size, size)
        return ndimage.gaussian_filter(volume, sigma, mode="nearest")
    if kind == "median":
        k = round(size)
        return ndimage.median_filter(volume, size=(k if three_d else 1, k, k), mode="nearest")
    raise ValueError(f"unknown post filter {kind!r}")


@dataclass(frozen=True)
class _Geometry:
    theta_deg: np.ndarray  # projection angles
    side: int  # HR field of view (pixels)
    n: int  # padded side
    path_mm: np.ndarray  # (n_det, views) chord lengths through the padded field
    spacing_mm: float  # HR pixel


def _geometry(side: int, spacing_hr_mm: float, config: ForwardConfig) -> _Geometry:
    if config.pad % config.factor:
        raise ValueError(f"pad {config.pad} is not a multiple of the factor {config.factor}")
    theta = np.linspace(0.0, 180.0, config.views, endpoint=False)
    n = side + 2 * config.pad
    path = project(np.ones((n, n)), theta, projector=config.projector) * spacing_hr_mm
    return _Geometry(theta, side, n, path, spacing_hr_mm)


def _transmission(fraction: np.ndarray, geo: _Geometry, config: ForwardConfig) -> np.ndarray:
    """Binned polychromatic transmission ``(elements, views)`` of one padded HR slice of bone
    volume fractions."""
    bone = project(fraction, geo.theta_deg, projector=config.projector) * geo.spacing_mm
    return bin_detector(
        polychromatic_transmission(geo.path_mm, bone, config.spectrum), config.factor
    )


def _reconstruct_lr(
    line_integrals: np.ndarray, geo: _Geometry, config: ForwardConfig
) -> np.ndarray:
    """LR slice of attenuation (1/mm) from binned line integrals: reconstructed on the padded
    HR grid, cropped to the field, ``factor x factor`` block means."""
    f, pad, side = config.factor, config.pad, geo.side
    sino = unbin_detector(line_integrals, f, geo.path_mm.shape[0])
    mu = reconstruct(sino, geo.theta_deg, n=geo.n, config=config) / geo.spacing_mm
    return block_mean(mu[pad : pad + side, pad : pad + side], f)


def phantom_readings(geo: _Geometry, config: ForwardConfig) -> tuple[float, float]:
    """Mean reconstructed attenuation (1/mm) of two uniform phantoms filling the field, water
    and bone fraction :data:`CALIBRATION_FRACTION`, through the same beam, detector and
    reconstruction (noise-free, no rings): what a vendor's calibration scan gives. Beam
    hardening is then right on average for objects like the phantom, not for the structure
    inside them (cupping, streaks, density-dependent under-reading remain)."""
    out = []
    for b in (0.0, CALIBRATION_FRACTION):
        t = _transmission(np.full((geo.n, geo.n), b), geo, config)
        p = detect(t, photons=config.photons, electronic_sigma=0.0, gains=None, rng=None)
        lr = _reconstruct_lr(p, geo, config)
        q = lr.shape[0] // 4
        out.append(float(lr[q:-q, q:-q].mean()) if q else float(lr.mean()))
    return out[0], out[1]


def acquire(
    hr_grey: np.ndarray, *, grey_ref: float, spacing_hr_mm: float, config: ForwardConfig
) -> np.ndarray:
    """LR scan ``(Z // f, Y // f, X // f)`` float32 of an HR grey volume ``(Z, Y, X)`` (Y == X,
    multiples of ``f``), in HR grey values (see the module docstring for the steps).

    Seeded by ``config.seed``: the same inputs give the same scan.
    """
    f = config.factor
    z, y, x = hr_grey.shape
    if y != x or y % f or z % f:
        raise ValueError(
            f"need square slices and sides that are multiples of {f}, got {hr_grey.shape}"
        )
    rng = np.random.default_rng(config.seed)
    geo = _geometry(y, spacing_hr_mm, config)
    readings = phantom_readings(geo, config)
    n_el = -(-geo.path_mm.shape[0] // f)
    gains = 1.0 + rng.normal(0.0, config.ring_sd, n_el) if config.ring_sd > 0 else None
    trans = np.empty((z, n_el, config.views))
    for j in range(z):  # per HR slice: transmission through it, averaged over each element
        fraction = np.pad(np.clip(hr_grey[j] / grey_ref, 0, None), config.pad, mode="symmetric")
        trans[j] = _transmission(fraction, geo, config)
    weights = slice_profile_weights(z, f, config.slice_fwhm_lr)
    lr = np.empty((z // f, y // f, x // f), np.float32)
    for k in range(z // f):  # detector rows integrate photons over the slice profile
        near = np.flatnonzero(weights[k] > 1e-6)
        t = np.tensordot(weights[k, near], trans[near], axes=(0, 0))
        p = detect(
            t,
            photons=config.photons,
            electronic_sigma=config.electronic_sigma,
            gains=gains,
            rng=rng,
        )
        lr[k] = calibrate(_reconstruct_lr(p, geo, config), readings, grey_ref)
    lr = post_filter(lr, kind=config.post, size=config.post_size, three_d=config.post_3d)
    return lr.astype(np.float32)
