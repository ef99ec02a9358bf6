"""Fit the acquisition simulator to a user's low-resolution scan (``microsr fit-acquisition``).

Simulation-based matching of summary statistics (:mod:`microsr.simulate.fit_stats`):
candidate protocols are simulated on a reference HR volume (the user's own HR data, at the
scan's voxel size / ``factor``; required: a phantom reference was seen to make models worse
than no fit on scans of real bone) and their
statistics are matched to the scan's, one setting at a time, in the order in which they
are identifiable:

1. **filter** from the *shape* of the noise power spectrum (NPS). The simulator applies
   the detector PSF before the Poisson noise, so the noise texture depends on the FBP
   filter only; it is compared with the NPS of white sinogram noise reconstructed by the
   same FBP for each filter; re-checked by simulation among the filters that can be as
   sharp as the scan (edge width with no detector blur: a PSF only blurs further). The
   filters chosen as often on block resamples of the flat patches (``filter_set``: a small
   scan's NPS rests on a few independent patches) are refitted (photons, PSF) after the
   fit, and ``uncertainty["filters"]`` gives each with its own photons and PSF.
2. **photons** from the slice-to-slice independent noise (neighbouring-slice
   differences) relative to the scan's grey-value scale (99.5th percentile of the smoothed
   scan minus the marrow level). Its NPS is split, frequency by frequency, into photon
   noise (a noisy candidate's excess over a noise-free one, scaling as ``1 / photons``)
   and a floor (the noise-free candidate: the reference's own HR noise and structure
   changing between slices), with a free floor scale, since the floor differs between
   volumes; the floor is low-frequency heavy and photon noise follows the filtered ramp.
3. **projections_ratio** first of all, from the scan alone: the number of views is the
   angular period of the spokes of its power spectrum where views are too few to fill it
   (:mod:`microsr.simulate.fit_views`); at or above about 0.8 of the Nyquist count there are
   no spokes to count and none of the image depends on it, so the Nyquist count is used.
4. **psf_sigma_bins** from the in-plane edge-spread width, interpolated on a grid of
   candidate PSFs (``width**2`` is about linear in ``psf**2``); then photons once more.
   Its range (``psf_range``) is the PSFs whose width lies within two standard deviations
   of the scan's, where the standard deviation is how much widths differ between regions
   of the reference (halves of its final candidate): structure changes an edge width by a
   few per cent, as much as a PSF of about 0.4 bins does, so small PSFs are not told from 0.

Not identifiable from one scan (kept at the simulator's defaults and reported in the
notes): photons x frames x views (only their product sets the photon noise: ``frames``
is 1), and views above about 0.8 of the Nyquist count. ``projections_ratio`` is relative to
the Nyquist count of each simulated volume (``hr_projections`` is not fixed), so a fitted
ratio means the same angular undersampling on training volumes of any size. Nor is
``mu_bone_per_mm`` against photons (the fitted photons are those that give the scan's
noise at the default attenuation and the reference's path lengths).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from microsr.errors import MicrosrError
from microsr.io.spacing import SPACING_SCALE_RTOL, spacing_off
from microsr.simulate.attenuation import resolve_attenuation
from microsr.simulate.config import AcquisitionConfig
from microsr.simulate.fit_quality import FitQuality, assess_fit
from microsr.simulate.fit_search import CandidateSearch, choose_filter, other_filters
from microsr.simulate.fit_stats import (
    MIN_PATCHES,
    MIN_SEPARATION,
    ScanStats,
    classify,
    largest_patch,
    otsu_separation,
    scan_statistics,
    width_spread,
)
from microsr.simulate.fit_views import (
    MIN_CONTRAST,
    ViewEstimate,
    estimate_views,
    nyquist_views,
)
from microsr.volume import Volume

logger = logging.getLogger(__name__)

__all__ = ["AcquisitionFit", "fit_acquisition"]

#: Smallest scan accepted: (Z, Y, X) voxels.
MIN_SHAPE = (2, 24, 24)
_START_PHOTONS = 5000.0
_REF_SLICES = 12  # LR slices of the reference simulated per candidate (its noise floor's precision)
_MAX_REF_INPLANE = 320  # HR voxels; larger references are cropped at the centre
#: Largest relative difference between the reference's voxel size and the scan's / factor.
REFERENCE_SPACING_TOLERANCE = SPACING_SCALE_RTOL
#: Smallest share of the reference's voxels in each class (bone, marrow).
MIN_CLASS_FRACTION = 0.01


@dataclass
class AcquisitionFit:
    """Result of :func:`fit_acquisition` (see :mod:`microsr.simulate.fit`)."""

    acquisition: AcquisitionConfig
    uncertainty: dict
    scan: ScanStats
    fitted: ScanStats
    templates: dict  # filter -> normalised template NPS at scan.nps_freq
    intensity: dict
    notes: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    trace: list = field(default_factory=list)  # every candidate simulated
    reference: str = ""
    views: ViewEstimate | None = None  # the scan's view count (fit_views)
    views_fitted: ViewEstimate | None = None  # the same on the fitted simulation
    #: the scan's slice-to-slice noise floor (non-photon part) against the reference's:
    #: ``scale_over_reference`` and ``share_of_slice_difference_noise`` (None: not split)
    floor: dict | None = None
    #: PSFs as consistent with the scan's edge width as the fitted one, given how edge widths
    #: vary between regions of the reference (``low``, ``high``, ...; None: not measured)
    psf_range: dict | None = None
    #: filters as consistent with the scan's noise texture as the fitted one (``consistent``,
    #: the fitted first), and the share of resamples choosing each (None: not measured)
    filter_set: dict | None = None
    #: every matched statistic of the fitted simulation against the scan's, with tolerances
    #: (:mod:`microsr.simulate.fit_quality`; None: not assessed)
    quality: FitQuality | None = None

    def statistics(self) -> dict:
        """``{name: {"scan", "fit", "residual"}}``, unit-free (JSON-ready); ``residual`` is
        fit - scan (elementwise for profiles and spectra); a statistic missing on either side
        is left out (:meth:`unavailable`).

        Relative noises are over :attr:`ScanStats.scale`; ``photon`` = neighbouring-slice
        differences, ``slice_shared`` = the rest (structure, streaks; signed sqrt);
        widths in voxels; ``nps_shape*`` at ``fit.nps_frequency_cycles_per_voxel``;
        ``edge_profile_inplane`` at -4..4 voxels in steps of 0.25."""
        s, f = self.scan, self.fitted
        rows = {
            "relative_noise": (s.relative_noise, f.relative_noise),
            "relative_photon_noise": (s.relative_photon_noise, f.relative_photon_noise),
            "relative_slice_shared_noise": (s.relative_excess, f.relative_excess),
            "slice_difference_over_patch_noise": (
                _ratio(s.noise_diff, s.noise), _ratio(f.noise_diff, f.noise)),
            "edge_width_inplane_voxels": (s.width_inplane, f.width_inplane),
            "edge_width_z_voxels": (s.width_z, f.width_z),
            "nps_shape": (_shape(s), _shape(f)),
            "nps_shape_slice_difference": (_list(s.noise_shape), _list(f.noise_shape)),
            "edge_profile_inplane": (_list(s.edge_inplane), _list(f.edge_inplane)),
            "view_aliasing_peak_contrast": (_contrast(self.views), _contrast(self.views_fitted)),
        }  # fmt: skip
        return {
            k: {"scan": a, "fit": b, "residual": _residual(a, b)}
            for k, (a, b) in rows.items()
            if a is not None and b is not None
        }

    def unavailable(self) -> list:
        """Names of the statistics left out of :meth:`statistics` (missing on scan or fit,
        e.g. Z edges on a simulation of a few slices)."""
        names = ("edge_width_inplane_voxels", "edge_width_z_voxels", "relative_slice_shared_noise",
                 "edge_profile_inplane", "slice_difference_over_patch_noise")  # fmt: skip
        return [n for n in names if n not in self.statistics()]


def _contrast(views: ViewEstimate | None):
    return None if views is None else float(views.contrast)


def _ratio(a, b):
    return None if a is None or not b else float(a / b)


def _list(a):
    return None if a is None else [float(v) for v in a]


def _shape(stats: ScanStats) -> list:
    return _list(stats.nps / stats.nps.mean())


def _residual(a, b):
    if a is None or b is None:
        return None
    if isinstance(a, list):
        return [float(y - x) for x, y in zip(a, b)]
    return float(b - a)


def fit_acquisition(
    scan: Volume,
    *,
    reference: Volume,
    factor: int = 2,
    mask: np.ndarray | None = None,
    seed: int = 0,
) -> AcquisitionFit:
    """Estimate the :class:`AcquisitionConfig` whose simulated LR scans look like ``scan``.

    Parameters
    ----------
    scan
        The user's LR scan ``(Z, Y, X)``, any grey units; spacing in mm.
    factor
        LR voxel size / HR voxel size of the protocol to fit.
    reference
        HR volume to simulate candidates on: the user's HR data (bone and marrow), at
        ``scan.spacing_mm / factor`` within :data:`REFERENCE_SPACING_TOLERANCE`.
    mask
        Boolean ``(Z, Y, X)``: the region of ``scan`` to use.
    seed
        Seed of the candidate simulations.

    Raises
    ------
    MicrosrError
        A scan too small, a mask of the wrong shape, no flat region to measure noise in,
        or no bone/marrow contrast; a reference at another voxel size than the scan's /
        ``factor``, or without bone and marrow.
    """
    ref, ref_label = _reference(scan, factor, reference)
    stats = _scan_stats(scan, mask)
    stats = _common_patch(scan, mask, stats, ref, ref_label, factor)
    views = estimate_views(scan.array)
    base = AcquisitionConfig(
        factor=factor, seed=seed, photons=_START_PHOTONS,
        projections_ratio=_views_ratio(views, scan, factor),
    )  # fmt: skip
    fit = CandidateSearch(stats, ref, base, (scan.array, mask))
    filter_name, templates = choose_filter(stats, ref, base)
    config = _search(fit, base.model_copy(update={"filter_name": filter_name}))
    final = fit.simulate(config)
    views_fitted = estimate_views(fit.last_lr)
    stats = fit.stats  # possibly re-measured with a smaller patch
    psf_range = fit.psf_range(
        width_spread(fit.last_lr, final), (stats.n_edges["inplane"], final.n_edges["inplane"])
    )
    if fit.filter_scores is not None:
        templates["distance_simulated"] = fit.filter_scores
    templates["edge_widths"] = fit.filter_edge_widths
    uncertainty = _uncertainty(stats, final, fit, views, psf_range)
    uncertainty["filters"] = _filter_matches(fit, config)
    quality = assess_fit(
        stats, final, edge_width_relative_sd=(psf_range or {}).get("edge_width_relative_sd")
    )
    if not quality.passed:
        fit.warnings.append(quality.message())
        logger.warning(fit.warnings[-1])
    return AcquisitionFit(
        acquisition=config,
        uncertainty=uncertainty,
        scan=stats,
        fitted=final,
        templates=templates,
        intensity=_intensity(stats, final, ref, config),
        notes=_notes(stats)
        + _views_notes(views, factor)
        + fit.notes
        + _psf_notes(psf_range)
        + _filter_notes(fit.filter_set),
        warnings=fit.warnings,
        trace=fit.trace,
        reference=ref_label,
        views=views,
        views_fitted=views_fitted,
        floor=fit.floor_record(),
        psf_range=psf_range,
        filter_set=fit.filter_set,
        quality=quality,
    )


def _views_ratio(views: ViewEstimate, scan: Volume, factor: int) -> float:
    """``projections_ratio`` (views over the HR grid's Nyquist count) of a view estimate:
    the counted views, else 0.5 (the LR grid's Nyquist count: no streaks)."""
    if views.views is None:
        return 0.5
    return round(views.views / nyquist_views(factor * min(scan.shape[1:])), 4)


def _views_notes(views: ViewEstimate, factor: int) -> list:
    if views.views is None:
        return [
            f"no view-aliasing spokes in the scan's spectrum (largest peak contrast "
            f"{views.contrast:.1f} < {MIN_CONTRAST:g} at harmonics {views.searched[0]}-"
            f"{views.searched[1]}): the views are at or above about 0.8 of the scan's Nyquist "
            f"count {views.nyquist}; projections_ratio set to 0.5 (that count)"
        ]
    return [
        f"{views.views} views over 180 degrees counted from the spokes of the scan's spectrum "
        f"(peak contrast {views.contrast:.1f}), {views.ratio_of_nyquist:.2f} of its "
        f"Nyquist count {views.nyquist}, assuming the slices are the whole reconstructed "
        "field of view"
    ]


def _search(fit: CandidateSearch, config: AcquisitionConfig) -> AcquisitionConfig:
    """Photons, PSF (the views are counted before); the filter re-checked by simulation
    (and photons and PSF again if it changed); photons once more at the final PSF."""
    config = fit.photons(config)
    config, warning = fit.psf(config)
    checked = fit.filter(config)
    if checked.filter_name != config.filter_name:
        config, warning = fit.match(checked)
    else:
        config = fit.photons(config)
    if warning:
        fit.warnings.append(warning)
    return config


def _scan_stats(scan: Volume, mask) -> ScanStats:
    """The scan's statistics, or the error saying what is missing."""
    name = scan.metadata.get("source", "scan")
    _check_scan(scan, mask, name)
    stats, info = scan_statistics(scan.array, mask)
    if stats is None:
        raise MicrosrError(_no_flat_message(name, info))
    if not info["structured"]:
        raise MicrosrError(
            f"{name}: bone and marrow are not told apart: after Gaussian smoothing (sigma 1 "
            f"voxel) Otsu's split separates the grey values by {info['separation']:.2f} of "
            f"their variance (need >= {MIN_SEPARATION}; noise {stats.noise:.3g} grey values). "
            "Either the scan has no bone, or its noise is too strong for the fit: give a "
            "region with bone (--mask), or a scan with less noise"
        )
    if not stats.contrast > 1.5 * stats.noise:
        raise MicrosrError(
            f"{name}: no bone/marrow contrast (bone {stats.bone:.4g} vs marrow "
            f"{stats.marrow:.4g}, noise {stats.noise:.3g}): the noise cannot be scaled to "
            "the simulator's units without bone in the scan; give a region with bone"
        )
    return stats


def _common_patch(scan, mask, stats: ScanStats, ref: Volume, label: str, factor: int):
    """The scan's statistics at a patch size the reference's flat regions also hold."""
    ref_lr = _block_mean(ref.array, factor)
    ref_patch = largest_patch(ref_lr, min_count=3 * MIN_PATCHES) or largest_patch(ref_lr)
    if ref_patch is None:
        raise MicrosrError(
            f"the reference ({label}) has no flat region to measure simulated noise in; "
            "give a --reference with marrow or air areas"
        )
    if ref_patch < stats.patch:
        stats, _ = scan_statistics(scan.array, mask, patch=ref_patch)
    return stats


def _check_scan(scan: Volume, mask, name) -> None:
    if any(n < m for n, m in zip(scan.shape, MIN_SHAPE)):
        raise MicrosrError(
            f"{name}: scan of shape {scan.shape} is too small to fit an acquisition: need at "
            f"least {MIN_SHAPE[0]} slices of {MIN_SHAPE[1]} x {MIN_SHAPE[2]} voxels"
        )
    if mask is not None and mask.shape != scan.shape:
        raise MicrosrError(f"mask of shape {mask.shape} does not match the scan's {scan.shape}")
    if mask is not None and not mask.any():
        raise MicrosrError("the mask is empty")


def _no_flat_message(name, info) -> str:
    found = ", ".join(
        f"{v} of {k.split('_')[1]}x{k.split('_')[1]}" for k, v in info.items() if "patches" in k
    )
    return (
        f"{name}: no flat region to estimate the noise from: need marrow or air areas "
        f"holding at least 6 square patches of 8 x 8 voxels, 2 voxels clear of bone "
        f"(found {found or 'none'}; {100 * info['flat_fraction']:.0f} % of the voxels are "
        "flat low-intensity); give a larger scan or a --mask around marrow"
    )


def _reference(scan: Volume, factor: int, reference: Volume):
    """The HR volume (a few LR slices' worth, centred) simulated per candidate, and its label.

    Raises
    ------
    MicrosrError
        A reference too small, at another voxel size than the scan's / ``factor``
        (beyond :data:`REFERENCE_SPACING_TOLERANCE`), or without bone and marrow.
    """
    name = reference.metadata.get("source", "the reference")
    shape = reference.shape
    if shape[0] < factor or min(shape[1:]) < 16 * factor:
        raise MicrosrError(
            f"{name}: reference volume of shape {shape} is too small for factor {factor}"
        )
    expected = scan.spacing_mm[1] / factor
    if spacing_off(reference.spacing_mm[1], expected, REFERENCE_SPACING_TOLERANCE):
        raise MicrosrError(
            f"{name}: the reference's voxel size {reference.spacing_mm[1]:.4g} mm is not the "
            f"scan's {scan.spacing_mm[1]:.4g} mm / factor {factor} = {expected:.4g} mm (beyond "
            f"{100 * REFERENCE_SPACING_TOLERANCE:.0f} %): give HR data at that voxel size, the "
            "right --factor, or --reference-spacing if the file's voxel size is wrong"
        )
    nz = factor * min(_REF_SLICES, scan.shape[0])
    z0 = max(0, (shape[0] - nz) // 2)
    sl = [slice(z0, z0 + nz)]
    for n in shape[1:]:
        m = min(n, _MAX_REF_INPLANE)
        sl.append(slice((n - m) // 2, (n - m) // 2 + m))
    array = np.asarray(reference.array[tuple(sl)], dtype=np.float32)
    _check_bone_like(array, name)
    label = f"{reference.metadata.get('source', 'reference')} cropped to {array.shape}"
    return reference.with_array(array), label


def _check_bone_like(array: np.ndarray, name: str) -> None:
    """Refuse a reference without two grey-level classes (bone and marrow): Otsu's
    effectiveness of the smoothed volume at least :data:`MIN_SEPARATION` and each class at
    least :data:`MIN_CLASS_FRACTION` of the voxels."""
    smooth, threshold = classify(array)
    separation = otsu_separation(smooth, threshold, None)
    bone = float((smooth >= threshold).mean())
    if separation < MIN_SEPARATION or not MIN_CLASS_FRACTION <= bone <= 1 - MIN_CLASS_FRACTION:
        raise MicrosrError(
            f"{name}: the reference is not bone-like: no separate bone and marrow grey levels "
            f"(Otsu effectiveness {separation:.2f}, need >= {MIN_SEPARATION}; {100 * bone:.1f} % "
            "of the voxels above the threshold): give an HR scan of bone with marrow"
        )


def _block_mean(array: np.ndarray, f: int) -> np.ndarray:
    """``f``-cube block average (the LR grid of an HR array), float32."""
    nz, ny, nx = (n // f for n in array.shape)
    blocks = np.asarray(array[: nz * f, : ny * f, : nx * f], np.float32)
    return blocks.reshape(nz, f, ny, f, nx, f).mean(axis=(1, 3, 5))


def _intensity(scan: ScanStats, fit: ScanStats, ref: Volume, config) -> dict:
    """Affine maps scan grey value -> reference grey value and -> attenuation (1/mm)."""
    a = fit.contrast / scan.contrast
    b = fit.marrow - a * scan.marrow
    att = resolve_attenuation(ref, config)
    return {
        "scan_marrow": scan.marrow, "scan_bone": scan.bone,
        "fit_marrow": fit.marrow, "fit_bone": fit.bone,
        "scan_to_reference": [float(a), float(b)],
        "scan_to_mu_per_mm": [float(att.slope * a), float(att.slope * b + att.intercept)],
    }  # fmt: skip


def _uncertainty(
    scan: ScanStats, fit: ScanStats, fitter: CandidateSearch, views, psf_range
) -> dict:
    """Rough standard deviations: sampling error of the noise statistics, a 10 % model floor
    for photons plus a term growing with the share of the scan's slice-to-slice noise that
    is floor, not photons (structure and HR noise: where it dominates, photons are barely
    identified, even split from it); PSF: a quarter of :attr:`AcquisitionFit.psf_range`
    (two standard deviations each side; at least 0.05 bins), else 0.2 bins; views: 0.01
    when counted, else 0.1 (at or above 0.8 of the Nyquist count the ratio changes nothing
    but the noise, which photons absorb)."""
    se = [x.noise_diff_rel_se or x.noise_rel_se for x in (scan, fit)]
    share = min(fitter.floor_share, 0.9)
    floor = 0.3 * share / (1 - share)  # photons ~ 1 / (target - b)
    photons = math.sqrt((2 * se[0]) ** 2 + (2 * se[1]) ** 2 + 0.1**2 + floor**2)
    ratio = 0.01 if views.views is not None else 0.1
    psf = 0.2 if psf_range is None else max((psf_range["high"] - psf_range["low"]) / 4, 0.05)
    return {
        "photons": round(photons, 3),
        "psf_sigma_bins": round(psf, 3),
        "projections_ratio": round(ratio, 3),
    }


def _filter_matches(fit: CandidateSearch, config: AcquisitionConfig) -> dict:
    """``{filter: {"photons", "psf_sigma_bins"}}``: the fitted filter's, then every other
    filter of :attr:`CandidateSearch.filter_set` refitted with it (what ``--randomize``
    draws among); ``{}`` when only the fitted filter is consistent with the scan."""
    others = other_filters(fit.filter_set)
    if not others:
        return {}
    matches = {config.filter_name: config}
    for name in others:
        matches[name] = fit.refit_for(config, name)
    return {
        name: {"photons": c.photons, "psf_sigma_bins": c.psf_sigma_bins}
        for name, c in matches.items()
    }


def _psf_notes(psf_range: dict | None) -> list:
    if psf_range is None:
        return []
    notes = []
    if psf_range["low"] == 0:
        notes.append(
            f"psf_sigma_bins is not distinguishable from 0 below {psf_range['high']:.2f} LR "
            "bins: so little detector blur widens the scan's edges by less than edge widths "
            f"differ between regions of the reference "
            f"({100 * psf_range['edge_width_relative_sd']:.1f} %, one standard deviation "
            "between scan and reference)"
        )
    return notes


def _filter_notes(filter_set: dict | None) -> list:
    if not other_filters(filter_set):
        return []
    shares = ", ".join(
        f"{k} {100 * filter_set['chosen_share'][k]:.0f} %" for k in filter_set["consistent"]
    )
    return [
        f"the scan's noise texture does not tell {' from '.join(filter_set['consistent'])}: "
        f"on {filter_set['resamples']} resamples of its flat patches the nearest simulated "
        f"NPS shape is {shares}; uncertainty.filters gives each with its own photons and "
        "PSF, and --randomize draws among them"
    ]


def _notes(stats: ScanStats) -> list:
    notes = [
        "photons x frames x views: only their product sets the photon noise; frames is 1 "
        "and the views are counted from the spectrum where too few to fill it (else the "
        "Nyquist count), so photons is a noise-equivalent count",
        "mu_bone_per_mm is kept at its default; photons are those that give the scan's "
        "noise relative to its grey-value scale at that attenuation and the reference's "
        "path lengths",
        "Z resolution: the simulator bins detector rows (no PSF along Z); compare "
        "edge_width_z_voxels with edge_width_inplane_voxels",
    ]
    if stats.width_inplane is None:
        notes.append("no isolated bone/marrow edges: psf_sigma_bins not fitted (0)")
    return notes
