"""Grey values -> linear attenuation (1/mm) for the acquisition simulator.

The simulator projects linear attenuation ``mu = slope * value + intercept`` (1/mm,
negative values clipped to 0) and maps the reconstruction back to the input's grey
values with the inverse. :func:`resolve_attenuation` chooses the mapping (``rule``):

``"explicit"``
    ``reference_value`` is a number: ``mu = mu_bone_per_mm * value / reference_value``.
``"scanco_mu"``
    Native Scanco values with ``MuScaling`` (calibration or header): their own linear
    attenuation, ``mu = value / MuScaling`` (1/cm), i.e. ``/ 10`` per mm; ``"mu"`` values
    (1/cm, :func:`microsr.calibration.to_units`) likewise.
``"density"``
    A calibration to mg HA/cm3: ``mu = mu_bone_per_mm * density / 1000`` with
    ``density = slope * value + intercept``; ``mu_bone_per_mm`` is the attenuation of
    1000 mg HA/cm3 bone at the effective energy.
``"percentile"``
    Uncalibrated grey values (8-bit, 16-bit, any export): the 99.5th percentile of the HR
    volume is taken as fully mineralised bone, ~1000 mg HA/cm3, so
    ``mu = mu_bone_per_mm * value / p99.5``. The same scan stored as 8-bit, 16-bit or
    mg HA/cm3 then gets the same attenuation, noise and contrast-to-noise ratio (provided
    its zero is air / no attenuation, as in a scaled export).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from microsr.calibration import DENSITY_UNITS, value_units
from microsr.errors import MicrosrError
from microsr.simulate.config import AcquisitionConfig
from microsr.volume import Volume, strided_sample

#: Percentile of the HR grey values taken as bone for ``rule="percentile"``.
BONE_PERCENTILE = 99.5
#: Density (mg HA/cm3) whose attenuation is ``mu_bone_per_mm``.
BONE_DENSITY_MGHA = 1000.0
_MAX_SAMPLES = 4_000_000


@dataclass(frozen=True)
class Attenuation:
    """Affine map grey value -> linear attenuation, ``mu = slope * value + intercept``.

    Attributes
    ----------
    slope
        1/mm per grey unit (> 0).
    intercept
        1/mm.
    rule
        ``"explicit"``, ``"scanco_mu"``, ``"density"`` or ``"percentile"`` (module docstring).
    reference_value
        The grey value whose attenuation is ``mu_bone_per_mm`` (the resolved reference).
    """

    slope: float
    intercept: float
    rule: str
    reference_value: float

    def to_mu(self, values: np.ndarray) -> np.ndarray:
        """Grey values -> attenuation (1/mm, float64, negatives clipped to 0)."""
        mu = self.slope * np.asarray(values, dtype=np.float64) + self.intercept
        return np.clip(mu, 0.0, None)

    def to_value(self, mu: np.ndarray) -> np.ndarray:
        """Attenuation (1/mm) -> grey values (float64)."""
        return (np.asarray(mu, dtype=np.float64) - self.intercept) / self.slope

    def as_dict(self) -> dict:
        """JSON-ready record."""
        return asdict(self)


def resolve_attenuation(hr: Volume, config: AcquisitionConfig) -> Attenuation:
    """The grey value -> attenuation map of ``hr`` under ``config`` (module docstring).

    Raises
    ------
    MicrosrError
        A calibration that contradicts itself (non-positive or non-finite slope,
        non-positive ``MuScaling``), or ``"auto"`` on an uncalibrated volume whose 99.5th
        percentile is not positive or that is constant.
    """
    mu_bone = config.mu_bone_per_mm
    if config.reference_value != "auto":
        ref = float(config.reference_value)
        return Attenuation(mu_bone / ref, 0.0, "explicit", ref)
    name = hr.metadata.get("source", "volume")
    cal = hr.calibration
    units = value_units(hr)
    if cal is not None:
        _check_calibration(cal, name)
        if units == "native" and cal.mu_scaling:
            slope = 1.0 / (10.0 * cal.mu_scaling)
            return Attenuation(slope, 0.0, "scanco_mu", mu_bone / slope)
    if units == "mu":
        return Attenuation(0.1, 0.0, "scanco_mu", mu_bone / 0.1)
    if cal is not None and cal.units == DENSITY_UNITS:
        per_density = mu_bone / BONE_DENSITY_MGHA
        ref = float(cal.invert(np.array([BONE_DENSITY_MGHA]))[0])
        return Attenuation(per_density * cal.slope, per_density * cal.intercept, "density", ref)
    ref = _bone_percentile(hr, name)
    return Attenuation(mu_bone / ref, 0.0, "percentile", ref)


def _check_calibration(cal, name) -> None:
    if not (math.isfinite(cal.slope) and cal.slope > 0 and math.isfinite(cal.intercept)):
        raise MicrosrError(
            f"{name}: contradictory calibration (density = {cal.slope} * value + "
            f"{cal.intercept}): the slope must be finite and > 0 for denser bone to attenuate "
            "more; fix the calibration or give --reference-value"
        )
    if cal.mu_scaling is not None and not cal.mu_scaling > 0:
        raise MicrosrError(
            f"{name}: contradictory calibration: MuScaling {cal.mu_scaling} must be > 0"
        )


def _bone_percentile(hr: Volume, name) -> float:
    """The 99.5th percentile of (a strided sample of) the HR grey values."""
    sample = strided_sample(hr.array, max_voxels=_MAX_SAMPLES, dtype=np.float64)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0 or float(sample.max()) == float(sample.min()):
        value = float(sample[0]) if sample.size else float("nan")
        raise MicrosrError(
            f"{name}: reference_value 'auto' needs contrast, but the volume is constant "
            f"({value:g}); give the grey value of bone with --reference-value"
        )
    ref = float(np.percentile(sample, BONE_PERCENTILE))
    if not ref > 0:
        raise MicrosrError(
            f"{name}: reference_value 'auto': the {BONE_PERCENTILE}th percentile of the grey "
            f"values is {ref:g}, not positive, so it cannot be bone; give --reference-value"
        )
    return ref
