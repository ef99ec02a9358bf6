"""The structure term's bone threshold in the model's unit range, derived from a dataset.

``microsr train --structure-weight W`` without ``--structure-threshold`` uses the threshold
that ``microsr evaluate`` and ``microsr compare`` segment the dataset with by default
(:func:`~microsr.morphometry.config.default_morphometry`, the one default rule), expressed in the model's
unit range:

* window normalisation and density-calibrated training specimens: 500 mg HA/cm3 (the
  paper's threshold, :class:`~microsr.morphometry.segment.MorphometryConfig`), converted to
  stored values through each specimen's calibration and mapped through the HR window,
  ``(v - low) / (high - low)``;
* otherwise (uncalibrated data, or per-slice min-max normalisation, where grey values have
  no fixed unit-range position): Otsu's threshold (Otsu 1979, doi:10.1109/TSMC.1979.4310076)
  of the training targets in unit range, smoothed as the morphometry smooths them, computed
  once on evenly spaced slices of the training specimens.

Only training specimens are read, so nothing about the validation or test specimens leaks.
"""

from __future__ import annotations

import logging

import numpy as np

from microsr.data.dataset import SlicePairs
from microsr.data.normalize import normalize
from microsr.data.records import DatasetInfo
from microsr.errors import MicrosrError
from microsr.morphometry.config import MorphometryConfig, default_morphometry
from microsr.morphometry.segment import smoothed_otsu

log = logging.getLogger(__name__)

__all__ = [
    "OTSU_SLICES",
    "calibrated_threshold",
    "default_morphometry",
    "otsu_threshold",
    "structure_threshold",
]

#: Slices per training specimen that the Otsu threshold is computed on.
OTSU_SLICES = 16


def calibrated_threshold(
    info: dict | DatasetInfo, specimens: list[str], density: float | None = None
) -> float | None:
    """``density`` (mg HA/cm3; default the morphometry's 500) in unit range, or ``None``.

    ``None`` when the dataset is not window-normalised or a specimen has no density
    calibration. Specimens with different calibrations get the mean of their unit-range
    thresholds (a warning names the spread).
    """
    typed = DatasetInfo.of(info)
    norm = typed.normalization
    density = MorphometryConfig().threshold_value if density is None else density
    if norm.mode != "window" or not specimens:
        return None
    low, high = norm.hr_window
    values = []
    for s in specimens:
        record = typed.specimens[s]
        if not record.is_density:
            return None
        stored = float(record.density_calibration.invert(density))
        values.append((stored - low) / (high - low))
    if max(values) - min(values) > 0.01:
        log.warning(
            "training specimens have different calibrations: %g mg HA/cm3 lies at %.4g..%.4g of "
            "the unit range; the structure term uses their mean", density, min(values),
            max(values),
        )  # fmt: skip
    return float(np.mean(values))


def otsu_threshold(pairs: SlicePairs, *, sigma_vox: float, n_slices: int = OTSU_SLICES) -> float:
    """Otsu's threshold of smoothed unit-range HR targets of ``pairs`` (evenly spaced slices)."""

    def targets():  # memory-mapped: only the chosen slices are read
        for spec in range(len(pairs.specimens)):
            hr = pairs.hr_slices(spec)
            n = min(n_slices, len(hr))
            index = np.unique(np.linspace(0, len(hr) - 1, n).round().astype(int))
            yield normalize(np.asarray(hr[index], np.float32), pairs.normalization, role="hr")

    try:
        return smoothed_otsu(targets(), sigma_vox, name="training targets")
    except MicrosrError:
        raise MicrosrError(
            "training targets are empty or constant: no Otsu threshold for the structure term "
            "(give --structure-threshold)"
        ) from None


def structure_threshold(info: dict | DatasetInfo, pairs: SlicePairs, *, sigma_vox: float) -> float:
    """The default structure threshold of a dataset (see the module docstring).

    Parameters
    ----------
    info
        The dataset's ``dataset.json``.
    pairs
        The training pairs (only their specimens are read).
    sigma_vox
        Smoothing before Otsu's threshold (the structure term's).

    Raises
    ------
    MicrosrError
        The threshold falls outside (0, 1) (the HR window does not contain it), or no Otsu
        threshold can be computed.
    """
    typed = DatasetInfo.of(info)
    rule = default_morphometry(all(typed.specimens[s].is_density for s in pairs.specimens))
    value = None
    if rule.threshold == "mgha":  # None in min-max mode: no fixed unit-range position
        value = calibrated_threshold(typed, pairs.specimens, rule.threshold_value)
    how = f"{rule.threshold_value:g} mg HA/cm3 through the HR window"
    if value is None:
        value, how = otsu_threshold(pairs, sigma_vox=sigma_vox), "Otsu of the training targets"
    if not 0 < value < 1:
        raise MicrosrError(
            f"the structure threshold ({how}) lies at {value:.4g}, outside the unit range of "
            "the HR window; give --structure-threshold"
        )
    log.info("structure term: bone threshold %.4g of the unit range (%s)", value, how)
    return value
