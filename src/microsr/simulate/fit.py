"""Fit the acquisition simulator to a user's low-resolution scan (``microsr fit-acquisition``).

Simulation-based matching of summary statistics (:mod:`microsr.simulate.fit_stats`):
candidate protocols are simulated on a reference HR volume (the user's own HR data with
``reference=``, else a phantom made at the scan's voxel size / ``factor``) and their
statistics are matched to the scan's, one setting at a time, in the order in which they
are identifiable:

1. **filter** from the *shape* of the noise power spectrum (NPS). The simulator applies
   the detector PSF before the Poisson noise, so the noise texture depends on the FBP
   filter only; it is compared with the NPS of white sinogram noise reconstructed by the
   same FBP for each filter.
2. **photons** from the slice-to-slice independent noise (neighbouring-slice
   differences) relative to the scan's grey-value scale (99.5th percentile of the smoothed
   scan minus the marrow level), which scales as
   ``photons ** -0.5`` (secant steps on candidate simulations).
3. **projections_ratio** from the noise that neighbouring slices share (view-aliasing
   streaks of the structure; photon noise is independent from slice to slice), on a grid
   of ratios at constant photons x views, where it exceeds its sampling error.
4. **psf_sigma_bins** from the in-plane edge-spread width, interpolated on a grid of
   candidate PSFs (``width**2`` is about linear in ``psf**2``); then photons once more.

Not identifiable from one scan (kept at the simulator's defaults and reported in the
notes): photons x frames x views (only their product sets the photon noise: ``frames``
is 1; ``hr_projections`` is fixed at the reference's Nyquist count),
and ``mu_bone_per_mm`` against photons (the fitted photons are those that give the scan's
noise at the default attenuation and the reference's path lengths).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
from skimage.transform import iradon

from microsr.errors import MicrosrError
from microsr.simulate.acquisition import _make_geometry, simulate_acquisition
from microsr.simulate.attenuation import resolve_attenuation
from microsr.simulate.config import FILTERS, AcquisitionConfig
from microsr.simulate.fit_stats import (
    MIN_PATCHES,
    PATCH_SIZES,
    ScanStats,
    _detrend,
    largest_patch,
    radial_nps,
    scan_statistics,
)
from microsr.simulate.phantom import make_phantom
from microsr.volume import Volume

logger = logging.getLogger(__name__)

__all__ = ["AcquisitionFit", "fit_acquisition"]

#: Smallest scan accepted: (Z, Y, X) voxels.
MIN_SHAPE = (2, 24, 24)
PSF_GRID = (0.0, 0.75, 1.5, 2.25)
RATIO_GRID = (0.25, 0.5, 1.0)
PHOTON_RANGE = (50.0, 1e7)
_START_PHOTONS = 5000.0
_REF_SLICES = 4  # LR slices of the reference simulated per candidate
_MAX_REF_INPLANE = 320  # HR voxels; larger references are cropped at the centre


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

    def statistics(self) -> dict:
        """``{name: {"scan", "fit", "residual"}}``, unit-free (JSON-ready)."""
        s, f = self.scan, self.fitted
        rows = {
            "relative_noise": (s.relative_noise, f.relative_noise),
            "relative_photon_noise": (s.relative_photon_noise, f.relative_photon_noise),
            "relative_streak_noise": (s.relative_excess, f.relative_excess),
            "relative_noise_slice_difference": (
                _ratio(s.noise_diff, s.scale), _ratio(f.noise_diff, f.scale)),
            "slice_difference_over_patch_noise": (
                _ratio(s.noise_diff, s.noise), _ratio(f.noise_diff, f.noise)),
            "edge_width_inplane_voxels": (s.width_inplane, f.width_inplane),
            "edge_width_z_voxels": (s.width_z, f.width_z),
            "nps_shape": (_shape(s), _shape(f)),
            "nps_shape_slice_difference": (_list(s.noise_shape), _list(f.noise_shape)),
            "edge_profile_inplane": (_list(s.edge_inplane), _list(f.edge_inplane)),
        }  # fmt: skip
        return {k: {"scan": a, "fit": b, "residual": _residual(a, b)} for k, (a, b) in rows.items()}


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
    factor: int = 2,
    reference: Volume | None = None,
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
        HR volume to simulate candidates on (ideally the user's HR data, at
        ``scan.spacing_mm / factor``); None: a femur phantom of the scan's field of view.
    mask
        Boolean ``(Z, Y, X)``: the region of ``scan`` to use.
    seed
        Seed of the candidate simulations and of the phantom.

    Raises
    ------
    MicrosrError
        A scan too small, a mask of the wrong shape, no flat region to measure noise in,
        or no bone/marrow contrast.
    """
    name = scan.metadata.get("source", "scan")
    _check_scan(scan, mask, name)
    stats, info = scan_statistics(scan.array, mask)
    if stats is None:
        raise MicrosrError(_no_flat_message(name, info))
    if not stats.contrast > 1.5 * stats.noise:
        raise MicrosrError(
            f"{name}: no bone/marrow contrast (bone {stats.bone:.4g} vs marrow "
            f"{stats.marrow:.4g}, noise {stats.noise:.3g}): the noise cannot be scaled to "
            "the simulator's units without bone in the scan; give a region with bone"
        )
    ref, ref_label = _reference(scan, factor, reference, seed)
    ref_lr = _block_mean(ref.array, factor)
    ref_patch = largest_patch(ref_lr, min_count=3 * MIN_PATCHES) or largest_patch(ref_lr)
    if ref_patch is None:
        raise MicrosrError(
            f"the reference ({ref_label}) has no flat region to measure simulated noise in; "
            "give a --reference with marrow or air areas"
        )
    if ref_patch < stats.patch:  # the same patch size on scan and simulations
        stats, _ = scan_statistics(scan.array, mask, patch=ref_patch)
    base = AcquisitionConfig(
        factor=factor, seed=seed, hr_projections=_hr_projections(ref), photons=_START_PHOTONS
    )
    fit = _Fitter(stats, ref, base, (scan.array, mask))
    expected = scan.spacing_mm[1] / factor
    if reference is not None and abs(ref.spacing_mm[1] / expected - 1) > 0.05:
        fit.warnings.append(
            f"the reference's voxel size {ref.spacing_mm[1]:.4g} mm is not the scan's "
            f"{scan.spacing_mm[1]:.4g} mm / factor {factor} = {expected:.4g} mm: photons and "
            "PSF are fitted for the reference's geometry"
        )
        logger.warning(fit.warnings[-1])
    filter_name, templates = choose_filter(stats, ref, base)
    config = fit.photons(base.model_copy(update={"filter_name": filter_name}))
    config = fit.views(config)
    config, warning = fit.psf(config)
    checked = fit.filter(config)
    if checked.filter_name != config.filter_name:
        config = fit.photons(checked)
        config, warning = fit.psf(config)
    config = fit.photons(config)
    final = fit.simulate(config)
    stats = fit.stats  # possibly re-measured with a smaller patch
    if fit.filter_scores is not None:
        templates["distance_simulated"] = fit.filter_scores
    result = AcquisitionFit(
        acquisition=config,
        uncertainty=_uncertainty(stats, final, fit),
        scan=stats,
        fitted=final,
        templates=templates,
        intensity=_intensity(stats, final, ref, config),
        notes=_notes(stats) + fit.notes,
        warnings=fit.warnings + ([warning] if warning else []),
        trace=fit.trace,
        reference=ref_label,
    )
    return result


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


def _reference(scan: Volume, factor: int, reference: Volume | None, seed: int):
    """The HR volume (a few LR slices' worth) simulated per candidate, and its label."""
    nz = factor * min(_REF_SLICES, scan.shape[0])
    if reference is None:
        ny, nx = (min(factor * n, _MAX_REF_INPLANE) for n in scan.shape[1:])
        spacing = scan.spacing_mm[1] / factor
        hr = make_phantom((nz, ny, nx), spacing_mm=spacing, site="femur", seed=seed)
        label = f"phantom (femur, seed {seed}) {nz}x{ny}x{nx} at {spacing:.4g} mm"
        return hr, label
    shape = reference.shape
    if shape[0] < factor or min(shape[1:]) < 16 * factor:
        raise MicrosrError(f"reference volume of shape {shape} is too small for factor {factor}")
    z0 = max(0, (shape[0] - nz) // 2)
    sl = [slice(z0, z0 + nz)]
    for n in shape[1:]:
        m = min(n, _MAX_REF_INPLANE)
        sl.append(slice((n - m) // 2, (n - m) // 2 + m))
    array = np.asarray(reference.array[tuple(sl)], dtype=np.float32)
    label = f"{reference.metadata.get('source', 'reference')} cropped to {array.shape}"
    return reference.with_array(array), label


def _block_mean(array: np.ndarray, f: int) -> np.ndarray:
    """``f``-cube block average (the LR grid of an HR array), float32."""
    nz, ny, nx = (n // f for n in array.shape)
    blocks = np.asarray(array[: nz * f, : ny * f, : nx * f], np.float32)
    return blocks.reshape(nz, f, ny, f, nx, f).mean(axis=(1, 3, 5))


def _hr_projections(ref: Volume) -> int:
    return math.ceil(math.pi / 2 * max(ref.shape[1:]))


class _Fitter:
    """Candidate simulations of the reference and the one-parameter searches."""

    def __init__(self, stats: ScanStats, ref: Volume, base: AcquisitionConfig, scan: tuple):
        self.stats, self.ref, self.base, self.scan = stats, ref, base, scan
        self.trace: list = []
        self.notes: list = []
        self.warnings: list = []
        self.ratio_sd: float | None = None
        self.filter_scores: dict | None = None
        self.floor_share = 0.0  # share of the scan's relative noise variance not from photons

    def simulate(self, config: AcquisitionConfig) -> ScanStats:
        lr = simulate_acquisition(self.ref, config)
        stats, _ = scan_statistics(lr.array, patch=self.stats.patch, structured=True)
        smaller = [p for p in PATCH_SIZES if p < self.stats.patch]
        while stats is None and smaller:  # blur or noise shrank the flat regions
            patch = smaller.pop(0)
            stats, _ = scan_statistics(lr.array, patch=patch, structured=True)
            scan, _ = scan_statistics(self.scan[0], self.scan[1], patch=patch)
            if stats is not None and scan is not None:
                logger.info("NPS patch size %d -> %d voxels", self.stats.patch, patch)
                self.stats = scan
        if stats is None:
            raise MicrosrError(
                "the reference simulation has no flat region to measure noise in; give a "
                "--reference with marrow or air areas"
            )
        self.trace.append(
            {
                "filter": config.filter_name, "photons": config.photons,
                "psf_sigma_bins": config.psf_sigma_bins,
                "projections_ratio": config.projections_ratio,
                "relative_noise": stats.relative_noise,
                "relative_photon_noise": stats.relative_photon_noise,
                "relative_excess": stats.relative_excess, "edge_width": stats.width_inplane,
            }
        )  # fmt: skip
        logger.info("candidate %s", self.trace[-1])
        return stats

    def noise(self, stats: ScanStats) -> float:
        """The noise measure matched: slice-to-slice noise over the noise scale
        (:attr:`ScanStats.scale`) when the scan has neighbouring flat slices, else all noise
        over it."""
        if self.stats.noise_diff is not None and stats.noise_diff is not None:
            return stats.noise_diff / stats.scale
        return stats.noise / stats.scale

    def photons(self, config: AcquisitionConfig) -> AcquisitionConfig:
        """Photons whose relative slice-to-slice noise (:meth:`noise`) matches the scan's.

        Two candidates at ``P`` and ``4 P`` fit ``noise**2 = a / photons + b``, where ``b`` is
        what does not scale with photons (structure changing between slices); the
        photons are then ``a / (target**2 - b)``, within :data:`PHOTON_RANGE`.
        """
        target = self.noise(self.stats) ** 2
        p1 = config.photons
        y1 = self.noise(self.simulate(config)) ** 2
        p2 = p1 * 4 if y1 > target else p1 / 4
        p2 = float(np.clip(p2, *PHOTON_RANGE))
        y2 = self.noise(self.simulate(config.model_copy(update={"photons": p2}))) ** 2
        a = (y1 - y2) / (1 / p1 - 1 / p2) if p1 != p2 else y1 * p1
        b = y1 - a / p1
        if a <= 0:  # no photon dependence seen: keep the pure 1/P law
            a, b = y1 * p1, 0.0
        # b differs between scan and reference by ~30 % (LHDL slabs): its share of the
        # target sets how well photons are known
        self.floor_share = float(np.clip(b / target, 0.0, 1.0)) if target > 0 else 1.0
        if target <= b:
            self.notes.append(
                "the scan's slice-to-slice noise is at or below what the reference's structure "
                f"alone gives: photons set to the top of the range {PHOTON_RANGE[1]:g}"
            )
            photons = PHOTON_RANGE[1]
        else:
            photons = float(np.clip(a / (target - b), *PHOTON_RANGE))
        return config.model_copy(update={"photons": round(photons, 1)})

    def _matched(self, config: AcquisitionConfig) -> ScanStats:
        """Statistics of ``config`` after one ``photons ** -0.5`` step towards the scan's
        relative noise."""
        first = self.noise(self.simulate(config))
        photons = config.photons * (first / self.noise(self.stats)) ** 2
        photons = float(np.clip(photons, *PHOTON_RANGE))
        return self.simulate(config.model_copy(update={"photons": photons}))

    def filter(self, config: AcquisitionConfig) -> AcquisitionConfig:
        """Re-check the filter by simulation: the candidate filter whose simulated NPS shape
        (structure leaking into the flat patches included) is nearest the scan's."""
        shapes = {
            name: self.simulate(config.model_copy(update={"filter_name": name})).noise_shape
            for name in FILTERS
        }
        best, scores = nearest_filter(self.stats, shapes)
        self.filter_scores = scores["distance"]
        return config.model_copy(update={"filter_name": best})

    def views(self, config: AcquisitionConfig) -> AcquisitionConfig:
        """``projections_ratio`` from the noise that neighbouring slices share (undersampling
        streaks), on a grid of ratios at constant photons x views; kept where the grid's
        spread is within 3 standard errors of the scan's value (not identifiable)."""
        s = self.stats
        if s.excess is None:
            self.notes.append("one slice: projections_ratio not fitted")
            return config
        target, se = s.excess / s.scale**2, s.excess_se / s.scale**2
        grid = []
        for r in RATIO_GRID:
            photons = config.photons * config.projections_ratio / r
            candidate = config.model_copy(update={"projections_ratio": r, "photons": photons})
            sim = self.simulate(candidate)
            if sim.excess is None:
                self.notes.append("too few flat slice pairs in the reference: views not fitted")
                return config
            grid.append((r, sim.excess / sim.scale**2, candidate))
        values = np.array([g[1] for g in grid])
        if values[0] - values[-1] < 3 * se:
            self.notes.append(
                "angular undersampling does not show in this scan (streak noise of the "
                f"ratios {RATIO_GRID} within 3 standard errors of the scan's): "
                f"projections_ratio kept at {config.projections_ratio}"
            )
            return config
        log_r = np.log([g[0] for g in grid])
        order = np.argsort(values)
        ratio = float(np.exp(np.interp(target, values[order], log_r[order])))
        slope = abs(values[0] - values[-1]) / (RATIO_GRID[-1] - RATIO_GRID[0])
        self.ratio_sd = max(0.05, se / slope)
        if not RATIO_GRID[0] < ratio < RATIO_GRID[-1]:
            self.notes.append(f"projections_ratio at the edge of the grid {RATIO_GRID}")
        photons = config.photons * config.projections_ratio / ratio
        return config.model_copy(
            update={"projections_ratio": round(ratio, 3), "photons": round(photons, 1)}
        )

    def psf(self, config: AcquisitionConfig) -> tuple[AcquisitionConfig, str | None]:
        """PSF interpolated from the edge widths of a grid of candidates, each at the photons
        that match the scan's relative noise (noise jitters the edges that
        are averaged, so the widths are compared at equal relative noise)."""
        width = self.stats.width_inplane
        if width is None:
            return config, None
        grid = [(p, self._matched(config.model_copy(update={"psf_sigma_bins": p})))
                for p in PSF_GRID]  # fmt: skip
        pairs = [(p, s.width_inplane) for p, s in grid if s.width_inplane is not None]
        if len(pairs) < 2:
            return config, None
        p2 = np.array([p * p for p, _ in pairs])
        w2 = np.array([w * w for _, w in pairs])
        order = np.argsort(w2)
        psf2 = np.interp(width**2, w2[order], p2[order])
        if width**2 > w2.max():  # beyond the grid: extend the last segment linearly
            slope = (p2[-1] - p2[-2]) / max(w2[-1] - w2[-2], 1e-9)
            psf2 = p2[-1] + slope * (width**2 - w2[-1])
        warning = None
        sharpest = pairs[0][1]
        if width < 0.85 * sharpest:
            warning = (
                f"the scan is sharper than its voxel size suggests: edge width {width:.2f} "
                f"voxels against {sharpest:.2f} for the simulator with no detector blur at "
                f"factor {config.factor}; is it an HR scan, or are --spacing / --factor wrong?"
            )
            logger.warning(warning)
        psf = round(float(math.sqrt(max(psf2, 0.0))), 3)
        self.psf_grid = pairs
        return config.model_copy(update={"psf_sigma_bins": psf}), warning


def filter_templates(ref: Volume, config: AcquisitionConfig, patch: int) -> tuple:
    """Normalised radial NPS of white sinogram noise through the simulator's FBP, per filter.

    The reconstruction geometry (detector bins, views, output size) is the simulator's for
    ``ref`` at ``config``; returns ``(freq, {filter: nps / mean(nps)})``.
    """
    geometry = _make_geometry(ref.shape[1:], ref.spacing_mm[1], config)
    size = min(geometry.out_size, 96)
    rng = np.random.default_rng(1)
    sinograms = [rng.standard_normal((geometry.lr_bins, len(geometry.theta_deg))) for _ in "abc"]
    out, freq = {}, None
    for name in FILTERS:
        tiles = []
        for sino in sinograms:
            image = iradon(sino, theta=geometry.theta_deg, output_size=size, filter_name=name,
                           circle=False, preserve_range=True)  # fmt: skip
            for y in range(0, size - patch + 1, patch):
                for x in range(0, size - patch + 1, patch):
                    tiles.append(image[y : y + patch, x : x + patch])
        freq, nps = radial_nps(_detrend(np.stack(tiles)))
        out[name] = nps / nps.mean()
    return freq, out


def choose_filter(stats: ScanStats, ref: Volume, config: AcquisitionConfig) -> tuple[str, dict]:
    """The filter whose template NPS shape (:func:`filter_templates`) is closest to the
    scan's (:func:`nearest_filter`)."""
    _, templates = filter_templates(ref, config, stats.patch)
    return nearest_filter(stats, templates)


def nearest_filter(stats: ScanStats, templates: dict) -> tuple[str, dict]:
    """The filter whose normalised template NPS is closest to the scan's (mean squared log
    ratio, up to a constant, from 0.15 cycles/voxel up: below, structure leaks in)."""
    shape = stats.noise_shape
    use = stats.nps_freq >= 0.15

    def distance(t):
        d = np.log(np.maximum(shape[use], 1e-6)) - np.log(np.maximum(t[use], 1e-6))
        return float(np.mean((d - d.mean()) ** 2))

    scores = {name: distance(t) for name, t in templates.items()}
    best = min(scores, key=scores.get)
    logger.info("filter NPS distances %s -> %s", scores, best)
    return best, {"templates": {k: _list(v) for k, v in templates.items()}, "distance": scores}


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


def _uncertainty(scan: ScanStats, fit: ScanStats, fitter: _Fitter) -> dict:
    """Rough standard deviations: sampling error of the noise statistics, a 10 % model floor
    for photons plus the part of the noise that does not come from photons (structure and
    HR noise: where it dominates, photons are barely identified); PSF 0.2 bins (the
    largest error on the LHDL recovery bench was 0.27); views 0.25 when not identified."""
    se = [x.noise_diff_rel_se or x.noise_rel_se for x in (scan, fit)]
    share = min(fitter.floor_share, 0.9)
    floor = 0.3 * share / (1 - share)  # photons ~ 1 / (target - b)
    photons = math.sqrt((2 * se[0]) ** 2 + (2 * se[1]) ** 2 + 0.1**2 + floor**2)
    ratio = fitter.ratio_sd if fitter.ratio_sd is not None else 0.25
    return {
        "photons": round(photons, 3),
        "psf_sigma_bins": 0.2,
        "projections_ratio": round(ratio, 3),
    }


def _notes(stats: ScanStats) -> list:
    notes = [
        "photons x frames x views: only their product sets the photon noise; frames is 1 "
        "and the views come from the streak noise where it shows (else 0.5 of the "
        "reference's Nyquist count), so photons is a noise-equivalent count",
        "mu_bone_per_mm is kept at its default; photons are those that give the scan's "
        "noise relative to bone contrast at that attenuation and the reference's path lengths",
        "Z resolution: the simulator bins detector rows (no PSF along Z); compare "
        "edge_width_z_voxels with edge_width_inplane_voxels",
    ]
    if stats.width_inplane is None:
        notes.append("no isolated bone/marrow edges: psf_sigma_bins not fitted (0)")
    return notes
