"""Density units: native Scanco values, linear attenuation, HU and mg HA/cm3.

Scanco files store integers ``v`` with ``mu = v / MuScaling`` (linear attenuation,
1/cm), ``HU = 1000 * (mu - MuWater) / MuWater`` and the density
``rho = RescaleSlope * v / MuScaling + RescaleIntercept`` (mg HA/cm3, from the
scanner's hydroxyapatite phantom calibration). A :class:`~microsr.volume.Calibration`
maps the *stored* values to density (``slope = RescaleSlope / MuScaling``), so after a
conversion the calibration is rewritten to describe the new stored values; density is
always ``volume.calibration.apply(volume.array)``. Other scanners: give the slope and
intercept yourself (:func:`with_calibration`).

``metadata["value_units"]`` records what the stored values are (``"native"`` when
absent).
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from microsr.errors import InputFileError, MicrosrError
from microsr.volume import Calibration, Volume

logger = logging.getLogger(__name__)

# The one vocabulary of units: every option and record that names units takes its names
# from these (tests/test_units_vocabulary.py keeps it so).
#: What stored values are: a scanner's ``native`` values, linear attenuation ``mu`` (1/cm),
#: ``hu`` (Hounsfield units) or ``mgha`` (mg HA/cm3).
Units = Literal["native", "mu", "hu", "mgha"]
UNITS: tuple[str, ...] = ("native", "mu", "hu", "mgha")
#: The units of a model's intensity window (:class:`WindowUnits`): ``mgha``, ``native`` (with
#: their calibration) or ``grey`` (uncalibrated grey values).
WindowKind = Literal["mgha", "native", "grey"]
#: What ``prepare --units`` pairs the scans in: as stored (``native``) or converted to ``mgha``.
DatasetUnits = Literal["native", "mgha"]
#: What a prediction's input values are: ``auto`` (its calibration says), ``mgha``, or
#: ``model`` (already in the model's units).
InputUnits = Literal["auto", "mgha", "model"]
#: What a prediction is written in: the ``input``'s own units, or ``mgha``.
OutputUnits = Literal["input", "mgha"]
#: An SR output of a checkpoint whose normalisation cannot map back to HR units (format 1).
LEGACY_UNITS = "legacy"
DENSITY_UNITS = "mg HA/cm3"


def value_units(volume: Volume) -> str:
    """What the stored values are: ``"native"``, ``"mu"``, ``"hu"`` or ``"mgha"``."""
    return str(volume.metadata.get("value_units", "native"))


def with_calibration(
    volume: Volume, slope: float, intercept: float, *, units: str = DENSITY_UNITS
) -> Volume:
    """Attach a user calibration ``density = slope * value + intercept`` (any scanner)."""
    if not np.isfinite(slope) or slope == 0 or not np.isfinite(intercept):
        raise MicrosrError(f"calibration slope must be finite and non-zero, got {slope}")
    old = volume.calibration
    cal = Calibration(
        float(slope),
        float(intercept),
        units,
        old.mu_scaling if old else None,
        old.mu_water if old else None,
    )
    return volume.with_array(volume.array, calibration=cal)


def require_density(volume: Volume) -> Calibration:
    """The calibration of ``volume``, or an error naming its file if absent or zero."""
    cal = volume.calibration
    if cal is None or cal.slope == 0 or not np.isfinite(cal.slope):
        raise InputFileError(
            volume.metadata.get("source", "volume"),
            "no density calibration (absent or zero in the header); give the scanner's "
            "slope and intercept (--slope, --intercept) to convert to mg HA/cm3",
        )
    return cal


def to_units(volume: Volume, units: Units) -> Volume:
    """Convert the stored values of ``volume`` to ``units`` (float32 unless ``native``).

    Parameters
    ----------
    volume
        Any volume; ``mu`` and ``hu`` need native Scanco values with ``MuScaling``
        (and ``MuWater`` for HU) in its calibration; ``mgha`` needs a calibration.
    units
        ``native`` (unchanged), ``mu`` (1/cm), ``hu`` (Hounsfield units) or ``mgha``
        (mg HA/cm3).

    Returns
    -------
    Volume
        Same geometry; the calibration maps the new values to density (identity for
        ``mgha``); ``metadata["value_units"]`` set.

    Raises
    ------
    InputFileError
        Naming the file, when the header lacks what the conversion needs.
    """
    if units not in UNITS:
        raise MicrosrError(f"unknown units {units!r}; use one of {', '.join(UNITS)}")
    current = value_units(volume)
    if units == current or units == "native":
        if units != current:
            raise MicrosrError(f"cannot convert {current} values back to native Scanco values")
        return volume
    if units == "mgha":
        cal = require_density(volume)
        new_cal = Calibration(1.0, 0.0, cal.units, None, None)
        return _converted(volume, cal.apply(volume.array), new_cal, units)
    mu_scaling, mu_water = _scanco_constants(volume, need_water=units == "hu")
    if current != "native":
        raise MicrosrError(f"{units} needs native Scanco values; this volume holds {current}")
    raw = np.asarray(volume.array, np.float64)
    cal = volume.calibration
    if units == "mu":
        values, scale = raw / mu_scaling, mu_scaling
        new = Calibration(cal.slope * scale, cal.intercept, cal.units) if cal else None
    else:
        values, scale = 1000.0 * (raw / mu_scaling - mu_water) / mu_water, mu_scaling * mu_water
        # density = s * raw + b with raw = scale * (HU / 1000 + 1)
        new = (
            Calibration(cal.slope * scale / 1000, cal.slope * scale + cal.intercept, cal.units)
            if cal
            else None
        )
    return _converted(volume, values.astype(np.float32), new, units)


def hu_to_native(hu: np.ndarray, *, mu_scaling: float, mu_water: float) -> np.ndarray:
    """Inverse of the HU conversion: native value ``(HU / 1000 + 1) * MuWater * MuScaling``."""
    return (np.asarray(hu, np.float64) / 1000.0 + 1.0) * mu_water * mu_scaling


def check_threshold_units(volume: Volume, threshold_mgha: float, *, name: str = "") -> bool:
    """Warn (and return False) if a mg HA/cm3 threshold is asked of an uncalibrated volume.

    A threshold such as the paper's 500 mg HA/cm3 only means something on data in
    density units (stored as mg HA/cm3, or with a calibration to convert them).
    """
    if volume.calibration is not None or value_units(volume) == "mgha":
        return True
    logger.warning(
        "%s: threshold %g mg HA/cm3 asked of a volume without density calibration; "
        "its grey values are compared as if they were mg HA/cm3",
        name or volume.metadata.get("source", "volume"),
        threshold_mgha,
    )
    return False


def _scanco_constants(volume: Volume, *, need_water: bool) -> tuple[float, float]:
    cal = volume.calibration
    scanco = volume.metadata.get("scanco", {})
    mu_scaling = (cal.mu_scaling if cal else None) or scanco.get("MuScaling")
    mu_water = (cal.mu_water if cal else None) or scanco.get("MuWater")
    source = volume.metadata.get("source", "volume")
    if not mu_scaling or mu_scaling <= 0:
        raise InputFileError(source, "no MuScaling in the header (absent or zero)")
    if need_water and (not mu_water or mu_water <= 0):
        raise InputFileError(source, "no MuWater in the header (absent or zero); HU undefined")
    return float(mu_scaling), float(mu_water or 0.0)


def _converted(volume: Volume, values: np.ndarray, cal: Calibration | None, units: str) -> Volume:
    meta = {**volume.metadata, "value_units": units}
    logger.info("converted %s to %s", volume.metadata.get("source", "volume"), units)
    return volume.with_array(np.asarray(values, np.float32), calibration=cal, metadata=meta)


def describe_volume(volume: Volume) -> dict:
    """JSON-ready summary: shape, dtype, spacing, origin, value range, calibration.

    Keys: ``shape`` (Z, Y, X), ``dtype``, ``spacing_mm`` and ``origin_mm`` (z, y, x),
    ``value_range``, ``value_units``, ``calibration`` (``slope``, ``intercept``,
    ``units``, ``mu_scaling``, ``mu_water``, ``slope_units``; ``None`` if uncalibrated),
    ``density_range_mgha`` when calibrated and ``scanco_header`` when the stored values
    are native Scanco integers with a ``MuScaling``: the calibration as the header states
    it (:func:`scanco_header_calibration`).
    """
    arr = np.asarray(volume.array)
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (None, None)
    cal = volume.calibration
    info = {
        "path": str(volume.metadata.get("source", "")),
        "shape": list(volume.shape),
        "dtype": str(arr.dtype),
        "spacing_mm": list(volume.spacing_mm),
        "origin_mm": list(volume.origin_mm),
        "value_range": [lo, hi],
        "value_units": value_units(volume),
        "calibration": None,
    }
    if cal is not None:
        keys = ("slope", "intercept", "units", "mu_scaling", "mu_water")
        info["calibration"] = {k: getattr(cal, k) for k in keys}
        per = {"native": "native integer", "mu": "1/cm", "hu": "HU", "mgha": cal.units}
        info["calibration"]["slope_units"] = f"{cal.units} per {per[value_units(volume)]}"
        if lo is not None:
            info["density_range_mgha"] = [float(cal.apply(np.array([lo, hi]))[i]) for i in (0, 1)]
    header = scanco_header_calibration(volume)
    if header is not None:
        info["scanco_header"] = header
    return info


def scanco_header_calibration(volume: Volume) -> dict | None:
    """The density calibration as a Scanco header states it, or ``None``.

    Scanco headers give ``density = RescaleSlope * mu + RescaleIntercept`` with ``mu``
    in 1/cm (``RescaleSlope`` in mg HA/cm3 per 1/cm, e.g. 1662.524) and
    ``mu = value / MuScaling``; :class:`~microsr.volume.Calibration` keeps the slope per
    stored integer, ``RescaleSlope / MuScaling``.

    Returns
    -------
    dict or None
        ``RescaleSlope``, ``RescaleIntercept``, ``RescaleUnits``, ``MuScaling``,
        ``MuWater`` (1/cm), ``slope_units`` and ``intercept_units``; ``None`` unless the
        stored values are native with a calibration and a positive ``MuScaling``.
    """
    cal = volume.calibration
    if cal is None or value_units(volume) != "native":
        return None
    scanco = volume.metadata.get("scanco", {}) if isinstance(volume.metadata, dict) else {}
    mu_scaling = cal.mu_scaling or scanco.get("MuScaling")
    if not mu_scaling or mu_scaling <= 0:
        return None
    return {
        "RescaleSlope": float(cal.slope * mu_scaling),
        "RescaleIntercept": float(cal.intercept),
        "RescaleUnits": cal.units,
        "MuScaling": float(mu_scaling),
        "MuWater": cal.mu_water if cal.mu_water is not None else scanco.get("MuWater"),
        "slope_units": f"{cal.units} per 1/cm",
        "intercept_units": cal.units,
    }


def format_info(info: dict) -> str:
    """Human-readable lines of :func:`describe_volume`'s dict."""
    skip = ("calibration", "scanco_header")
    lines = [f"{k:<18} {v}" for k, v in info.items() if k not in skip]
    cal, header = info["calibration"], info.get("scanco_header")
    if cal is None:
        lines.append(f"{'calibration':<18} none (values are not density)")
        return "\n".join(lines)
    if header is not None:
        lines += [
            f"{'calibration':<18} Scanco header: density = RescaleSlope * mu + RescaleIntercept,"
            " mu = value / MuScaling (1/cm)",
            f"{'  RescaleSlope':<18} {header['RescaleSlope']:.7g} {header['slope_units']}",
            f"{'  RescaleIntercept':<18} {header['RescaleIntercept']:.7g} "
            f"{header['intercept_units']}",
            f"{'  MuScaling':<18} {header['MuScaling']:g}",
            f"{'  MuWater':<18} {header['MuWater']} 1/cm",
        ]
    lines.append(
        f"{'  per value' if header else 'calibration':<18} density = "
        f"{cal['slope']:.7g} * value + {cal['intercept']:.7g}  (slope in {cal['slope_units']})"
    )
    if header is None and (cal["mu_scaling"] or cal["mu_water"]):
        lines.append(f"{'':<18} mu_scaling {cal['mu_scaling']}, mu_water {cal['mu_water']}")
    return "\n".join(lines)


class WindowUnits(BaseModel):
    """The units of a model's intensity window, as a checkpoint records them.

    ``kind``: ``"mgha"`` (mg HA/cm3), ``"native"`` (a scanner's stored values with their
    linear calibration ``density = slope * value + intercept``, e.g. Scanco's
    ``RescaleSlope / MuScaling``) or ``"grey"`` (uncalibrated grey values).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: WindowKind
    slope: float | None = None
    intercept: float | None = None
    units: str = DENSITY_UNITS
    mu_scaling: float | None = None
    mu_water: float | None = None

    @property
    def calibrated(self) -> bool:
        """Whether values convert to density (``mgha`` or ``native``)."""
        return self.kind != "grey"

    def calibration(self) -> Calibration | None:
        """Stored values -> density; identity for ``mgha``, ``None`` for ``grey``."""
        if self.kind == "grey":
            return None
        if self.kind == "mgha":
            return Calibration(1.0, 0.0, self.units)
        return Calibration(self.slope, self.intercept, self.units, self.mu_scaling, self.mu_water)  # type: ignore[arg-type]

    def describe(self) -> str:
        """``"mg HA/cm3"``, ``"native values (density = a * value + b mg HA/cm3)"``, ..."""
        if self.kind == "mgha":
            return self.units
        if self.kind == "grey":
            return "uncalibrated grey values"
        return (
            f"native values (density = {self.slope:.6g} * value {self.intercept:+.6g} {self.units})"
        )


def units_of(calibration: Calibration | None, metadata: dict | None = None) -> WindowUnits:
    """The :class:`WindowUnits` of stored values with ``calibration`` (and ``value_units``)."""
    if (metadata or {}).get("value_units") == "mgha":
        return WindowUnits(kind="mgha", units=calibration.units if calibration else DENSITY_UNITS)
    if calibration is None or calibration.slope == 0 or not np.isfinite(calibration.slope):
        return WindowUnits(kind="grey")
    if calibration.slope == 1.0 and calibration.intercept == 0.0:
        return WindowUnits(kind="mgha", units=calibration.units)
    return WindowUnits(
        kind="native", slope=calibration.slope, intercept=calibration.intercept,
        units=calibration.units, mu_scaling=calibration.mu_scaling,
        mu_water=calibration.mu_water,
    )  # fmt: skip


def linear_map(source: WindowUnits, target: WindowUnits) -> tuple[float, float] | None:
    """``(a, b)`` with ``target value = a * source value + b``; ``None`` if not convertible.

    Both calibrated in the same density units: through density. Both grey: identity (nothing
    says they differ). One grey and one calibrated, or other density units: ``None``.
    """
    if not source.calibrated or not target.calibrated:
        return (1.0, 0.0) if source.kind == target.kind == "grey" else None
    if source.units != target.units:
        return None
    s, t = source.calibration(), target.calibration()
    return s.slope / t.slope, (s.intercept - t.intercept) / t.slope  # type: ignore[union-attr]


def apply_map(values: np.ndarray, ab: tuple[float, float]) -> np.ndarray:
    """``a * values + b`` in float32 (the input unchanged when the map is the identity)."""
    a, b = ab
    if (a, b) == (1.0, 0.0):
        return values
    return (np.asarray(values, np.float64) * a + b).astype(np.float32)
