"""Seeded synthetic trabecular-bone phantoms in mg HA/cm3.

The phantom is a cortical shell (an ellipse whose outline wobbles smoothly and
drifts slowly along Z) around a trabecular network. The network is a level set of
a Gaussian random field: the voxels where ``|f| < t`` of Gaussian-filtered white
noise form connected plates that run continuously along Z (the field is correlated
more strongly along Z, the long axis of the bone); for the femur the intersection of
two such plate families gives sparse rods, for the spine one family gives plates. The
threshold ``t`` is a quantile of ``|f|`` inside the marrow cavity, so the
trabecular bone volume fraction (BV/TV) hits its seeded target exactly before blur.
Length scales are physical (mm) and converted with ``spacing_mm``, so at 10 um
voxels the trabeculae are about 2-4 voxels thick and 8-15 voxels apart, as in
mouse femur and vertebra; the bone as a whole is sized to the field of view.

Level-set (thresholded Gaussian random field) models of trabecular bone:
Roberts & Garboczi, "Elastic moduli of model random three-dimensional
closed-cell cellular solids", Acta Mater. 49 (2001), doi:10.1016/S1359-6454(00)00314-1.

Grey levels (before blur and noise): embedding liquid 0, marrow 80-100,
trabecular tissue ~900, cortical tissue ~1100 mg HA/cm3. A Gaussian blur of
0.6 voxel mimics partial volume, then Gaussian noise of 15-25 mg HA/cm3.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

from microsr.errors import MicrosrError
from microsr.volume import Calibration, Volume

logger = logging.getLogger(__name__)

Site = Literal["femur", "spine"]


@dataclass(frozen=True)
class _SiteParams:
    """Architecture of one anatomical site (ranges are sampled with the seed)."""

    radius_frac: tuple[float, float]  # mean outer radius / (min(Y, X) / 2)
    aspect: tuple[float, float]  # major / minor semi-axis
    cortical_frac: tuple[float, float]  # cortical thickness / mean outer radius
    bv_tv: tuple[float, float]  # trabecular BV/TV inside the endosteal envelope
    field_sigma_mm: float  # in-plane correlation length of the trabecular field
    z_stretch: float  # Z correlation length / in-plane one
    rods: bool  # intersect two sheet families (rods) instead of one (plates)


_SITES: dict[str, _SiteParams] = {
    "femur": _SiteParams((0.66, 0.74), (1.0, 1.15), (0.07, 0.09), (0.11, 0.14), 0.035, 1.6, True),
    "spine": _SiteParams((0.62, 0.70), (1.3, 1.5), (0.03, 0.045), (0.27, 0.33), 0.040, 1.3, False),
}

#: Largest outer radius allowed, as a fraction of min(Y, X) / 2 (keeps a margin).
_MAX_RADIUS_FRAC = 0.86
_PV_SIGMA_VOX = 0.6


def make_phantom(
    shape: tuple[int, int, int] = (64, 160, 160),
    *,
    spacing_mm: float = 0.01,
    site: Site = "femur",
    seed: int = 0,
    return_mask: bool = False,
) -> Volume | tuple[Volume, np.ndarray]:
    """Make a synthetic mouse-bone volume.

    Parameters
    ----------
    shape
        Output shape ``(Z, Y, X)`` in voxels; any size of at least ``(1, 16, 16)``.
    spacing_mm
        Isotropic voxel size in mm (trabecular length scales are physical).
    site
        ``"femur"``: round, thick cortex (7-9 % of the radius), sparse trabeculae
        (BV/TV 11-14 %). ``"spine"``: elliptic (aspect 1.3-1.5), thin cortex
        (3-4.5 %), dense trabeculae (BV/TV 27-33 %).
    seed
        Seeds size, ellipticity, orientation, outline wobble, the trabecular
        field, the grey levels and the noise. Same seed, same array.
    return_mask
        Also return the boolean bone mask (cortical or trabecular) before blur.

    Returns
    -------
    Volume or (Volume, numpy.ndarray)
        float32 density in mg HA/cm3 with ``calibration`` slope 1, intercept 0;
        ``metadata["phantom"]`` records the sampled parameters and the achieved
        trabecular BV/TV. The mask has shape ``(Z, Y, X)``, dtype bool.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or shape[0] < 1 or min(shape[1:]) < 16:
        raise MicrosrError(f"phantom shape must be (Z, Y, X) with Y, X >= 16, got {shape}")
    if not spacing_mm > 0:
        raise MicrosrError(f"spacing_mm must be positive, got {spacing_mm}")
    if site not in _SITES:
        raise MicrosrError(f"unknown site {site!r}; choose 'femur' or 'spine'")
    params = _SITES[site]
    rng = np.random.default_rng(seed)

    outer, inner, geometry = _envelopes(shape, params, rng)
    field = np.abs(_trabecular_field(shape, params, spacing_mm, rng))
    if params.rods:
        field = np.maximum(field, np.abs(_trabecular_field(shape, params, spacing_mm, rng)))
    target = rng.uniform(*params.bv_tv)
    marrow_field = field[inner]
    threshold = np.quantile(marrow_field, target) if marrow_field.size else 0.0
    trabecular = inner & (field < threshold)
    cortical = outer & ~inner
    bv_tv = float(trabecular.sum() / max(int(inner.sum()), 1))

    levels = {
        "marrow": rng.uniform(80.0, 100.0),
        "trabecular": rng.normal(900.0, 15.0),
        "cortical": rng.normal(1100.0, 15.0),
    }
    noise_sigma = rng.uniform(15.0, 25.0)
    image = np.zeros(shape, dtype=np.float32)
    image[inner] = levels["marrow"]
    image[trabecular] = levels["trabecular"]
    image[cortical] = levels["cortical"]
    image = ndimage.gaussian_filter(image, _PV_SIGMA_VOX, mode="nearest")
    image += rng.normal(0.0, noise_sigma, size=shape).astype(np.float32)

    metadata = {
        "site": site,
        "seed": int(seed),
        "trabecular_bv_tv": bv_tv,
        "noise_sigma": float(noise_sigma),
        "levels": {k: float(v) for k, v in levels.items()},
        **geometry,
    }
    logger.debug("phantom %s seed=%d shape=%s BV/TV=%.3f", site, seed, shape, bv_tv)
    volume = Volume(
        array=image.astype(np.float32, copy=False),
        spacing_mm=(spacing_mm,) * 3,
        origin_mm=(0.0, 0.0, 0.0),
        calibration=Calibration(slope=1.0, intercept=0.0, units="mg HA/cm3"),
        metadata={"phantom": metadata},
    )
    if return_mask:
        return volume, trabecular | cortical
    return volume


def _smooth_series(rng: np.random.Generator, n: int, *, n_terms: int = 3) -> np.ndarray:
    """A smooth random curve over ``n`` slices, zero mean, unit-ish amplitude, shape (n,)."""
    z = np.linspace(0.0, 1.0, n)
    out = np.zeros(n)
    for k in range(1, n_terms + 1):
        out += rng.normal(0.0, 1.0 / k) * np.cos(np.pi * k * z + rng.uniform(0, 2 * np.pi))
    return out


def _envelopes(
    shape: tuple[int, int, int], params: _SiteParams, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Periosteal (outer) and endosteal (inner) envelopes, bool (Z, Y, X), and their geometry.

    The outline in slice ``z`` is ``r(phi) = ellipse(phi) * (1 + sum_k c_k(z) cos(k phi +
    psi_k))`` with ``k = 2..5``; centre, wobble and cortical thickness drift smoothly in Z.
    """
    nz, ny, nx = shape
    half = min(ny, nx) / 2.0
    aspect = rng.uniform(*params.aspect)
    mean_radius = rng.uniform(*params.radius_frac) * half
    # semi-axes with the same mean radius (sqrt(a b)); orientation random
    a, b = mean_radius * np.sqrt(aspect), mean_radius / np.sqrt(aspect)
    alpha = rng.uniform(0.0, np.pi)
    cortical = max(rng.uniform(*params.cortical_frac) * mean_radius, 1.6)

    ks = np.arange(2, 6)
    amps = np.stack([0.025 / k * (1.0 + 0.5 * _smooth_series(rng, nz)) for k in ks])  # (4, Z)
    phases = rng.uniform(0, 2 * np.pi, size=len(ks))
    # the largest possible outline must stay inside the margin: shrink if needed
    max_wobble = 1.0 + np.abs(amps).sum(axis=0).max()
    drift = 0.02 * half
    scale = min(1.0, (_MAX_RADIUS_FRAC * half - drift) / (a * max_wobble))
    a, b, cortical = a * scale, b * scale, max(cortical * scale, 1.6)
    cy = (ny - 1) / 2.0 + drift * np.tanh(_smooth_series(rng, nz))[:, None, None]
    cx = (nx - 1) / 2.0 + drift * np.tanh(_smooth_series(rng, nz))[:, None, None]
    thick = cortical * (1.0 + 0.15 * np.tanh(_smooth_series(rng, nz)))[:, None, None]

    dy = np.arange(ny, dtype=np.float32)[None, :, None] - cy.astype(np.float32)
    dx = np.arange(nx, dtype=np.float32)[None, None, :] - cx.astype(np.float32)
    r = np.hypot(dy, dx)
    phi = np.arctan2(dy, dx)
    ca, sa = np.cos(phi - alpha), np.sin(phi - alpha)
    r_ellipse = a * b / np.sqrt((b * ca) ** 2 + (a * sa) ** 2)
    wobble = np.ones_like(r_ellipse)
    for i, k in enumerate(ks):
        wobble += amps[i][:, None, None].astype(np.float32) * np.cos(k * phi + phases[i])
    r_out = r_ellipse * wobble
    outer = r <= r_out
    inner = r <= r_out - thick
    geometry = {
        "semi_axes_vox": (float(a), float(b)),
        "orientation_rad": float(alpha),
        "cortical_thickness_vox": float(cortical),
    }
    return outer, inner, geometry


def _trabecular_field(
    shape: tuple[int, int, int], params: _SiteParams, spacing_mm: float, rng: np.random.Generator
) -> np.ndarray:
    """Band-passed Gaussian random field, float32 (Z, Y, X), zero mean.

    Low-pass: Gaussian of ``field_sigma_mm`` (longer along Z); high-pass: subtract a
    Gaussian 3x wider so that the structure has no slow density trends.
    """
    sigma_xy = params.field_sigma_mm / spacing_mm
    sigma = (sigma_xy * params.z_stretch, sigma_xy, sigma_xy)
    noise = rng.standard_normal(shape, dtype=np.float32)
    low = ndimage.gaussian_filter(noise, sigma, mode="wrap", truncate=3.0)
    background = ndimage.gaussian_filter(low, tuple(3.0 * s for s in sigma), truncate=2.0)
    field = low - background
    return field / max(float(field.std()), 1e-12)
