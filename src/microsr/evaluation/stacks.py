"""LR, SR and HR brought onto one grid: the paired slices every score is computed on.

The grid is the HR scan's: every HR slice whose centre lies inside the LR box (the z
convention of :mod:`microsr.pairing.geometry`), cropped to the in-plane area the volumes
share. On it:

* **HR** is the scan itself;
* **LR** is the trilinear baseline: the LR scan interpolated linearly along z at the HR
  slice's position and bilinearly in-plane (:mod:`microsr.pairing.upsample`, the functions
  training and prediction use);
* **SR** is the SR volume at the HR slice's z: exact when it was predicted on the HR grid;
  an SR volume on the LR slice grid (``--z-grid lr``, microsr 0.1) is interpolated linearly
  between its slices.

All three are in the HR scan's units (SR files are written in them; the LR scan is assumed
to share them, as for scans of one scanner: see the README). ``at_lr_centre`` marks the HR
slices nearest to an LR slice centre (the only slices microsr 0.1 paired and predicted); the
others lie between LR slice centres.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from microsr.calibration import apply_map, linear_map, units_of
from microsr.errors import MicrosrError
from microsr.io.spacing import SPACING_RATIO_RTOL, spacing_off
from microsr.pairing.geometry import check_boxes, check_pair
from microsr.pairing.upsample import sample_z, upsample_bilinear, z_span
from microsr.volume import Calibration, Volume

log = logging.getLogger(__name__)

#: One line for reports: the grid every score is computed on.
GRID_NOTE = (
    "LR, SR and HR compared on every HR slice inside the LR box (the HR grid): LR "
    "interpolated trilinearly (bilinear in-plane, linear along z), SR at the HR slice's z; "
    "TA mask and threshold from HR"
)


@dataclass(frozen=True)
class PairedStacks:
    """Lazily read paired slices of one specimen (see the module notes).

    Attributes
    ----------
    hr_slice, lr_t, at_lr_centre
        ``(K,)``: HR slice index, fractional LR slice index, and whether the slice is the one
        nearest to an LR slice centre.
    spacing_mm
        ``(z, y, x)`` voxel size of the grid (the HR scan's), mm.
    read
        ``read(start, stop, keys)`` -> ``{key: (n, H, W) float32}`` for the asked images
        among ``"lr"``, ``"sr"``, ``"hr"`` (only those are computed), and ``"truth"``
        (bool) when ``has_truth``.
    has_truth
        A binary truth mask on the HR grid is paired too (``"truth"``: bone = True).
    """

    name: str
    hr_slice: np.ndarray
    lr_t: np.ndarray
    at_lr_centre: np.ndarray
    spacing_mm: tuple[float, float, float]
    calibration: Calibration | None
    has_sr: bool
    read: Callable[[int, int, tuple[str, ...]], dict[str, np.ndarray]]
    has_truth: bool = False

    def __len__(self) -> int:
        return len(self.hr_slice)


def centre_flags(lr_t: np.ndarray, n_lr: int) -> np.ndarray:
    """``(K,)`` bool: the HR slice nearest to each LR slice centre (ties to the lower one)."""
    flags = np.zeros(len(lr_t), bool)
    for i in range(n_lr):
        d = np.round(np.abs(lr_t - i), 6)  # ties (exactly between) go to the lower slice
        j = int(np.argmin(d))
        if d[j] <= 0.5 + 1e-9:
            flags[j] = True
    return flags


def _sr_positions(sr: Volume, hr: Volume, hr_slice: np.ndarray, name: str) -> np.ndarray:
    """Fractional SR slice index of each paired HR slice (SR on the HR in-plane grid)."""
    if any(spacing_off(sr.spacing_mm[i], hr.spacing_mm[i], SPACING_RATIO_RTOL) for i in (1, 2)):
        raise MicrosrError(
            f"{name}: SR spacing {sr.spacing_mm} mm is not on the HR grid "
            f"{hr.spacing_mm} mm in-plane"
        )
    z_hr = hr.origin_mm[0] + hr_slice * hr.spacing_mm[0]
    t = (z_hr - sr.origin_mm[0]) / sr.spacing_mm[0]
    if t.min() < -0.5 - 1e-6 or t.max() > sr.shape[0] - 0.5 + 1e-6:
        raise MicrosrError(f"{name}: the SR volume does not cover the HR slices along z")
    return t


def in_units_of(volume: Volume, hr: Volume, *, name: str, label: str) -> Volume:
    """``volume`` with its values in ``hr``'s units (converted through density), lazily.

    Scores compare intensities, so LR and SR must be in HR's units: calibrated volumes are
    converted (``value * a + b``, slice by slice as they are read). An uncalibrated volume
    beside a calibrated one is taken to be in HR's units, with a warning naming both;
    calibrations in other density units are refused.
    """
    source, target = (
        units_of(volume.calibration, volume.metadata),
        units_of(hr.calibration, hr.metadata),
    )
    ab = linear_map(source, target)
    if ab is None and not (source.calibrated and target.calibrated):
        log.warning(
            "%s: %s holds %s and HR %s; its values are taken to be in HR's units",
            name, label, source.describe(), target.describe(),
        )  # fmt: skip
        return volume
    if ab is None:
        raise MicrosrError(
            f"{name}: {label} holds {source.describe()} and HR {target.describe()}; these "
            "cannot be converted into each other (convert one: microsr convert --units mgha)"
        )
    if ab == (1.0, 0.0):
        return volume
    log.info(
        "%s: %s converted from %s into HR's %s", name, label, source.describe(), target.describe()
    )
    return volume.with_array(_Mapped(volume.array, ab), calibration=hr.calibration)


class _Mapped:
    """``a * array + b`` computed on indexing (float32), so memory-mapped volumes stay lazy."""

    def __init__(self, array, ab: tuple[float, float]) -> None:
        self.array, self.ab = array, ab
        self.shape, self.dtype, self.ndim = array.shape, np.dtype(np.float32), array.ndim

    def __getitem__(self, index) -> np.ndarray:
        return apply_map(np.asarray(self.array[index], np.float32), self.ab)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[...]
        return out.astype(dtype) if dtype is not None else out


def volume_stacks(
    hr: Volume,
    lr: Volume,
    sr: Volume | None = None,
    *,
    name: str,
    truth: np.ndarray | None = None,
) -> PairedStacks:
    """Paired stacks of three volumes (``sr`` optional), checked for geometry first.

    ``truth``: an optional ``(Z, Y, X)`` binary bone mask on the HR grid (nonzero = bone),
    cut like HR.

    Raises
    ------
    MicrosrError
        Bad pair geometry (:func:`~microsr.pairing.geometry.check_pair`), SR not on the HR
        in-plane grid, not covering HR's physical box or the paired slices, no slice to pair,
        a truth mask of another shape than HR.
    """
    if truth is not None and tuple(truth.shape) != hr.shape:
        raise MicrosrError(
            f"{name}: truth mask shape {tuple(truth.shape)} is not the HR shape {hr.shape}"
        )
    geo = check_pair(lr, hr, name=name)
    lr = in_units_of(lr, hr, name=name, label="LR")
    sr = in_units_of(sr, hr, name=name, label="SR") if sr is not None else None
    f = geo.factor
    h, w = min(lr.shape[1] * f, hr.shape[1]), min(lr.shape[2] * f, hr.shape[2])
    if sr is not None:  # SR covers the same physical box as HR, within one LR voxel
        check_boxes(sr, hr, name=name, tolerance_mm=lr.spacing_mm, labels=("SR", "HR"))
        h, w = min(h, sr.shape[1]), min(w, sr.shape[2])
        t_sr = _sr_positions(sr, hr, geo.hr_slices, name)
    if len(geo.hr_slices) == 0:
        raise MicrosrError(f"{name}: no HR slice lies inside the LR volume along z")

    def read(start: int, stop: int, keys=("lr", "sr", "hr")) -> dict[str, np.ndarray]:
        out = {}
        if "hr" in keys:
            out["hr"] = np.asarray(hr.array[geo.hr_slices[start:stop], :h, :w], np.float32)
        if truth is not None and "truth" in keys:
            out["truth"] = np.asarray(truth[geo.hr_slices[start:stop], :h, :w]) != 0
        if "lr" in keys:
            t = geo.lr_t[start:stop]
            first, end = z_span(t, lr.shape[0])
            block = np.asarray(lr.array[first:end], np.float32)
            lr_z = sample_z(block, t, n=lr.shape[0], first=first)
            out["lr"] = upsample_bilinear(lr_z, factor=f)[:, :h, :w]
        if sr is not None and "sr" in keys:
            ts = t_sr[start:stop]
            a, b = z_span(ts, sr.shape[0])
            block = np.asarray(sr.array[a:b, :h, :w], np.float32)
            out["sr"] = sample_z(block, ts, n=sr.shape[0], first=a)
        return out

    return PairedStacks(
        name, geo.hr_slices, geo.lr_t, centre_flags(geo.lr_t, lr.shape[0]),
        hr.spacing_mm, hr.calibration, sr is not None, read, truth is not None,
    )  # fmt: skip


def array_stacks(
    name: str,
    images: dict[str, np.ndarray],
    *,
    lr_t: np.ndarray,
    n_lr: int,
    spacing_mm: tuple[float, float, float],
    calibration: Calibration | None = None,
) -> PairedStacks:
    """Paired stacks of in-memory ``(K, H, W)`` arrays ``{"lr", "hr"[, "sr"]}`` (HR units)."""
    arrays = {k: np.asarray(v, np.float32) for k, v in images.items()}
    return PairedStacks(
        name, np.arange(len(arrays["hr"])), np.asarray(lr_t, float), centre_flags(lr_t, n_lr),
        tuple(spacing_mm), calibration, "sr" in arrays,
        lambda a, b, keys=("lr", "sr", "hr"): {k: v[a:b] for k, v in arrays.items() if k in keys},
    )  # fmt: skip


def stacks_source(path: str | Path) -> str:
    """A short specimen name for a file path (its stem without format suffixes)."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".tif", ".tiff", ".aim", ".isq"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name
