"""Settings of the simulated low-resolution acquisition (:class:`AcquisitionConfig`)."""

from __future__ import annotations

import math
from typing import Literal

import pydantic

from microsr.errors import MicrosrError

#: scikit-image ``iradon`` filters (``filter_name``).
FILTERS = ("ramp", "shepp-logan", "cosine", "hamming", "hann")


class AcquisitionConfig(pydantic.BaseModel):
    """Settings of the simulated low-resolution acquisition.

    Grey values become linear attenuation through
    :func:`~microsr.simulate.attenuation.resolve_attenuation`: ``reference_value="auto"``
    (default) uses a calibrated volume's
    real attenuation and maps the 99.5th percentile of an uncalibrated one to the
    attenuation of 1000 mg HA/cm3 bone; a number is the grey value given ``mu_bone_per_mm``.

    The optional effects (detector blur ``psf_sigma_bins``, misregistration
    ``shift_hr_voxels``, ring artefacts ``ring_strength``) are off by default.
    Invalid values raise :class:`~microsr.errors.MicrosrError`.
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    factor: int = pydantic.Field(
        2, description="LR voxel size / HR voxel size, in-plane and along Z (>= 1)."
    )
    projections_ratio: float = pydantic.Field(
        0.5, description="LR projections / HR projections (> 0)."
    )
    hr_projections: int | None = pydantic.Field(
        None,
        description="Projections of the HR scan; None -> ceil(pi/2 * max(Y, X)), "
        "the angular Nyquist rate of the HR slice.",
    )
    photons: float = pydantic.Field(
        5000.0,
        description="Incident photons per LR detector bin per frame (> 0); "
        "float('inf') switches photon noise off.",
    )
    frames: int = pydantic.Field(
        1, description="Frames averaged per projection (>= 1): I0 = photons * frames."
    )
    mu_bone_per_mm: float = pydantic.Field(
        0.5,
        description="Linear attenuation (1/mm, > 0) of 1000 mg HA/cm3 bone at the effective "
        "energy (0.5/mm = 5/cm: a low-kV benchtop scanner); with an explicit "
        "reference_value, the attenuation of that grey value.",
    )
    reference_value: float | Literal["auto"] = pydantic.Field(
        "auto",
        description="'auto': calibrated volumes use their real attenuation, uncalibrated "
        "ones map their 99.5th percentile to mu_bone_per_mm; a number (> 0): the grey "
        "value with attenuation mu_bone_per_mm (attenuation proportional to grey value).",
    )
    filter_name: str = pydantic.Field(
        "ramp", description=f"FBP filter, one of scikit-image iradon's {FILTERS}."
    )
    psf_sigma_bins: float = pydantic.Field(
        0.0,
        description="Detector / focal-spot blur: Gaussian PSF sigma along the detector, "
        "in LR detector bins (>= 0; 0 = off). Full mode only.",
    )
    shift_hr_voxels: tuple[float, float, float] = pydantic.Field(
        (0.0, 0.0, 0.0),
        description="LR/HR misregistration: the HR content is shifted by (z, y, x) HR "
        "voxels (cubic spline, edges repeated) before the acquisition; the LR origin is not.",
    )
    ring_strength: float = pydantic.Field(
        0.0,
        description="Ring artefacts: relative standard deviation of per-detector-bin gain "
        "errors left after flat-field correction (>= 0, < 0.5; 0 = off). Full mode only.",
    )
    quick: bool = pydantic.Field(
        False,
        description="Gaussian PSF + block average + Gaussian noise instead of "
        "projection / Poisson noise / FBP.",
    )
    quick_psf_sigma: float | None = pydantic.Field(
        None, description="Quick mode PSF sigma in HR voxels (>= 0); None -> 0.5 * factor."
    )
    quick_noise_sigma: float | None = pydantic.Field(
        None,
        description="Quick mode noise standard deviation in grey units (>= 0); None -> the "
        "FBP noise expected for `photons`, `frames` and the LR projections "
        "(see `fbp_noise_sigma`).",
    )
    seed: int = pydantic.Field(0, description="Seed of the noise (per-slice streams).")

    @pydantic.model_validator(mode="after")
    def _check(self) -> AcquisitionConfig:
        problems = _geometry_problems(self) + _effect_problems(self)
        if problems:
            raise MicrosrError("invalid AcquisitionConfig: " + "; ".join(problems))
        return self


def _geometry_problems(c: AcquisitionConfig) -> list[str]:
    problems = []
    if c.factor < 1:
        problems.append(f"factor must be >= 1, got {c.factor}")
    if not c.projections_ratio > 0:
        problems.append(f"projections_ratio must be > 0, got {c.projections_ratio}")
    if c.hr_projections is not None and c.hr_projections < 1:
        problems.append(f"hr_projections must be >= 1, got {c.hr_projections}")
    if not c.photons > 0:
        problems.append(f"photons must be > 0, got {c.photons}")
    if c.frames < 1:
        problems.append(f"frames must be >= 1, got {c.frames}")
    if not (c.mu_bone_per_mm > 0 and math.isfinite(c.mu_bone_per_mm)):
        problems.append(f"mu_bone_per_mm must be finite and > 0, got {c.mu_bone_per_mm}")
    ref = c.reference_value
    if ref != "auto" and not (ref > 0 and math.isfinite(ref)):
        problems.append(f"reference_value must be 'auto' or a number > 0, got {ref}")
    if c.filter_name not in FILTERS:
        problems.append(f"filter_name must be one of {FILTERS}, got {c.filter_name!r}")
    return problems


def _effect_problems(c: AcquisitionConfig) -> list[str]:
    problems = []
    for name in ("quick_psf_sigma", "quick_noise_sigma", "psf_sigma_bins"):
        value = getattr(c, name)
        if value is not None and not (value >= 0 and math.isfinite(value)):
            problems.append(f"{name} must be >= 0, got {value}")
    if not 0 <= c.ring_strength < 0.5:
        problems.append(f"ring_strength must be in [0, 0.5), got {c.ring_strength}")
    if not all(math.isfinite(s) for s in c.shift_hr_voxels):
        problems.append(f"shift_hr_voxels must be finite, got {c.shift_hr_voxels}")
    return problems


DEFAULT_CONFIG = AcquisitionConfig()  # frozen, so safe to share as a default
