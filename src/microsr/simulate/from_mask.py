"""Grey-level HR scans from a binary bone segmentation: synthetic intensities on real
architecture.

A segmented microCT region (e.g. the DIDSR vertebral ROIs) holds real trabecular
architecture but no intensities. :func:`grey_from_mask` paints it as an HR microCT scan in
mg HA/cm3:

1. **Sub-voxel partial volume.** The mask is read as the 50 %-occupancy voxelisation of a
   smooth bone surface. The signed distance to the voxelised surface (voxels, positive in
   bone, +-0.5 at the voxels next to it) is smoothed with a Gaussian of
   ``surface_sigma_vox``; ``0.5 + distance`` is each voxel's bone fraction, clamped to the
   side of 0.5 that the mask puts the voxel on (so no trabecula of the mask is lost or
   added: thresholded at the midpoint before blur and noise, the grey HR *is* the mask).
2. **Tissue mineral density** (TMD): a Gaussian random field of correlation length
   ``tissue_corr_mm`` (mean ``tissue_mgha``, s.d. ``tissue_sd_mgha``), lower by up to
   ``surface_drop_mgha`` near the bone surface (younger, less mineralised bone; e-folding
   depth ``surface_depth_mm``).
3. **Marrow density**: a smoother random field (``marrow_mgha``, ``marrow_sd_mgha``).
4. **The HR scanner**: a Gaussian PSF of ``psf_sigma_vox`` voxels and additive noise of
   ``noise_mgha`` (s.d.), slightly correlated (``noise_corr_vox``) as reconstructed noise is.

Everything is drawn from one seeded generator, in a fixed order: the same mask, spacing,
config and seed give the same volume, bit for bit. The architecture is real; the
intensities are synthetic (this is a model of a scan, not a scan). It does not model beam
hardening, rings, or the reconstruction's own noise texture; an LR scan of the result is
simulated separately (:func:`microsr.simulate.simulate_acquisition`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage

from microsr.errors import InputFileError, MicrosrError
from microsr.volume import Calibration, Volume

logger = logging.getLogger(__name__)

#: What every volume made here says about itself (metadata and reports).
SYNTHETIC_NOTE = "synthetic intensities (mg HA/cm3) on real segmented architecture"


class MaskGreyConfig(BaseModel):
    """Intensity model of :func:`grey_from_mask` (densities in mg HA/cm3).

    Defaults: trabecular TMD of about 1000 mg HA/cm3 and marrow of about 50, the ranges
    seen in calibrated microCT of human trabecular bone; an HR blur and noise that keep
    the scan's contrast-to-noise ratio high (a good HR scanner), as our phantoms do.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    tissue_mgha: float = Field(1000.0, gt=0)
    tissue_sd_mgha: float = Field(40.0, ge=0)
    tissue_corr_mm: float = Field(0.15, gt=0)
    surface_drop_mgha: float = Field(100.0, ge=0)
    surface_depth_mm: float = Field(0.02, gt=0)
    marrow_mgha: float = 50.0
    marrow_sd_mgha: float = Field(15.0, ge=0)
    marrow_corr_mm: float = Field(0.3, gt=0)
    surface_sigma_vox: float = Field(0.7, ge=0)
    psf_sigma_vox: float = Field(0.6, ge=0)
    noise_mgha: float = Field(20.0, ge=0)
    noise_corr_vox: float = Field(0.5, ge=0)

    @property
    def midpoint_mgha(self) -> float:
        """Halfway between mean tissue and marrow: the threshold that recovers the mask."""
        return 0.5 * (self.tissue_mgha + self.marrow_mgha)


def check_mask(array: np.ndarray, *, name: str | Path = "mask") -> np.ndarray:
    """A binary mask (0/1 or 0/255, any integer or float dtype) as bool ``(Z, Y, X)``.

    Raises
    ------
    InputFileError
        Other values than 0/1 or 0/255; no bone; only bone.
    """
    values = np.unique(np.asarray(array))
    if not (set(values.tolist()) <= {0, 1} or set(values.tolist()) <= {0, 255}):
        shown = ", ".join(f"{v:g}" for v in values[:6]) + (", ..." if len(values) > 6 else "")
        raise InputFileError(
            name, f"is not a binary mask: values {shown} (need 0/1 or 0/255, 0 = marrow)"
        )
    mask = np.asarray(array) != 0
    if not mask.any():
        raise InputFileError(name, "is an empty mask (no bone voxel)")
    if mask.all():
        raise InputFileError(name, "is all bone (no marrow voxel): not a trabecular region")
    return mask


def read_mask(
    path: str | Path, *, spacing_mm: float | tuple[float, float, float] | None = None
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Read a binary bone mask and its voxel size.

    A file without a voxel size reports ITK's default of 1 mm (as the DIDSR NRRDs): a
    stored spacing of exactly ``(1, 1, 1)`` mm counts as none, and ``spacing_mm`` is needed.

    Returns
    -------
    (numpy.ndarray, tuple)
        Bool ``(Z, Y, X)`` mask (True = bone) and spacing ``(z, y, x)`` in mm.

    Raises
    ------
    InputFileError
        Unreadable file, not binary, empty or all bone, no voxel size and none given.
    """
    from microsr.io import read_volume

    volume = read_volume(path, spacing_mm=spacing_mm)
    if spacing_mm is None and np.allclose(volume.spacing_mm, 1.0, rtol=0, atol=1e-12):
        raise InputFileError(
            path, "stores no voxel size (spacing 1 mm, the default); give it with --spacing (mm)"
        )
    return check_mask(volume.array, name=path), volume.spacing_mm


def _field(rng: np.random.Generator, shape, sigma_vox: tuple[float, ...]) -> np.ndarray:
    """Zero-mean, unit-s.d. Gaussian random field (Gaussian-filtered white noise), float32."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    if max(sigma_vox) > 0:
        noise = ndimage.gaussian_filter(noise, sigma_vox, mode="wrap", truncate=3.0)
    return noise / max(float(noise.std()), 1e-12)


def bone_fraction(mask: np.ndarray, surface_sigma_vox: float) -> np.ndarray:
    """Sub-voxel bone fraction in [0, 1], float32 ``(Z, Y, X)`` (step 1 of the module notes).

    Bone voxels get fractions in (0.5, 1], marrow voxels in [0, 0.5).
    """
    import edt

    data = np.ascontiguousarray(mask, dtype=np.uint8)
    inside = edt.edt(data).astype(np.float32)
    outside = edt.edt(1 - data).astype(np.float32)
    signed = np.where(mask, inside - 0.5, 0.5 - outside)
    if surface_sigma_vox > 0:
        signed = ndimage.gaussian_filter(signed, surface_sigma_vox, mode="nearest")
    frac = 0.5 + signed
    eps = np.float32(0.02)  # keeps each voxel on its side of 0.5 after rounding
    return np.where(mask, np.clip(frac, 0.5 + eps, 1.0), np.clip(frac, 0.0, 0.5 - eps))


def _densities(mask, spacing, config: MaskGreyConfig, rng) -> tuple[np.ndarray, np.ndarray]:
    """Tissue and marrow density maps (mg HA/cm3), float32 ``(Z, Y, X)``."""
    tissue_sigma = tuple(config.tissue_corr_mm / s for s in spacing)
    marrow_sigma = tuple(config.marrow_corr_mm / s for s in spacing)
    tissue = config.tissue_mgha + config.tissue_sd_mgha * _field(rng, mask.shape, tissue_sigma)
    if config.surface_drop_mgha > 0:
        import edt

        depth = edt.edt(np.ascontiguousarray(mask, np.uint8), anisotropy=spacing)
        depth = np.maximum(depth - 0.5 * min(spacing), 0.0)  # surface half a voxel out
        tissue -= config.surface_drop_mgha * np.exp(-depth / config.surface_depth_mm)
    marrow = config.marrow_mgha + config.marrow_sd_mgha * _field(rng, mask.shape, marrow_sigma)
    return tissue.astype(np.float32), marrow.astype(np.float32)


def grey_from_mask(
    mask: np.ndarray,
    spacing_mm: tuple[float, float, float],
    config: MaskGreyConfig | None = None,
    *,
    seed: int = 0,
    source: str = "",
) -> Volume:
    """A grey-level HR scan (mg HA/cm3) of a binary bone mask; see the module notes.

    Parameters
    ----------
    mask
        ``(Z, Y, X)`` binary bone mask (0/1, 0/255 or bool); checked by :func:`check_mask`.
    spacing_mm
        Voxel size ``(z, y, x)`` in mm (sets the physical correlation lengths).
    config
        Intensity model (default :class:`MaskGreyConfig`).
    seed
        Seeds every random field and the noise.
    source
        Name of the mask, recorded in ``metadata["from_mask"]``.

    Returns
    -------
    Volume
        float32 ``(Z, Y, X)`` density in mg HA/cm3 (calibration slope 1, intercept 0), the
        mask's spacing, ``metadata["from_mask"]``: the config, seed, mask BV/TV and
        :data:`SYNTHETIC_NOTE`.
    """
    config = config or MaskGreyConfig()
    mask = check_mask(mask, name=source or "mask")
    spacing = tuple(float(s) for s in spacing_mm)
    if len(spacing) != 3 or not all(s > 0 for s in spacing):
        raise MicrosrError(f"spacing_mm must be three positive numbers, got {spacing_mm}")
    rng = np.random.default_rng(seed)
    frac = bone_fraction(mask, config.surface_sigma_vox)
    tissue, marrow = _densities(mask, spacing, config, rng)
    image = frac * tissue + (1.0 - frac) * marrow
    del tissue, marrow, frac
    if config.psf_sigma_vox > 0:
        image = ndimage.gaussian_filter(image, config.psf_sigma_vox, mode="nearest")
    if config.noise_mgha > 0:
        noise = _field(rng, mask.shape, (config.noise_corr_vox,) * 3)
        image += np.float32(config.noise_mgha) * noise
    record = {
        "note": SYNTHETIC_NOTE,
        "source": str(source),
        "seed": int(seed),
        "mask_bv_tv": float(mask.mean()),
        "config": config.model_dump(),
    }
    logger.info("grey HR from mask %s: shape %s, BV/TV %.3f", source, mask.shape, mask.mean())
    return Volume(
        array=image.astype(np.float32, copy=False),
        spacing_mm=spacing,
        calibration=Calibration(slope=1.0, intercept=0.0, units="mg HA/cm3"),
        metadata={"from_mask": record},
    )


def centre_crop(mask: np.ndarray, size: int | None) -> np.ndarray:
    """The central ``size``-cube of ``mask`` (whole axes where they are shorter)."""
    if size is None:
        return mask
    starts = [max((n - size) // 2, 0) for n in mask.shape]
    return mask[tuple(slice(s, s + size) for s in starts)]
