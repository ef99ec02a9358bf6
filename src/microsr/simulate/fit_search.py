"""Searches of :func:`microsr.simulate.fit.fit_acquisition`: candidate simulations of the
reference and the one-setting-at-a-time matches (filter, photons, PSF).

The NPS filter templates (:func:`filter_templates`) are white sinogram noise reconstructed by
the simulator's own FBP (scikit-image ``iradon``) for each filter.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy.optimize import nnls
from skimage.transform import iradon

from microsr.errors import MicrosrError
from microsr.simulate.acquisition import _make_geometry, simulate_acquisition
from microsr.simulate.config import FILTERS, AcquisitionConfig
from microsr.simulate.fit_stats import (
    PATCH_SIZES,
    ScanStats,
    _detrend,
    radial_nps,
    scan_statistics,
)
from microsr.volume import Volume

logger = logging.getLogger(__name__)

PSF_GRID = (0.0, 0.75, 1.5, 2.25)
PHOTON_RANGE = (50.0, 1e7)
#: Photons of the floor candidate (no photon noise to speak of) and the range of the noisy
#: one in :meth:`CandidateSearch._spectral_photons`.
NO_NOISE_PHOTONS = 1e10
LOW_PHOTONS = (200.0, 1250.0)
#: A filter is kept only if its edge width with no detector blur is at most this much above
#: the scan's (relative; edge widths of one protocol on two LHDL slabs differ by ~5 %).
EDGE_SLACK = 0.08
#: The scan's floor over the reference's: slabs of one bone differ by up to ~2x (LHDL).
FLOOR_SCALE = (1 / 3, 3.0)
#: Smallest relative standard deviation of an edge width between scan and reference.
MIN_WIDTH_SD = 0.01
#: NPS shapes are compared from this frequency up (cycles/voxel): below, structure leaks in.
SHAPE_FROM = 0.15
#: Resamples of the filter choice (:func:`filter_choice_frequencies`), and the share of them
#: a filter must be chosen in to count as consistent with the scan.
FILTER_RESAMPLES = 200
FILTER_CONSISTENT_SHARE = 0.05


def _list(a):
    return None if a is None else [float(v) for v in a]


class CandidateSearch:
    """Candidate simulations of the reference and the one-parameter searches."""

    def __init__(self, stats: ScanStats, ref: Volume, base: AcquisitionConfig, scan: tuple):
        self.stats, self.ref, self.base, self.scan = stats, ref, base, scan
        self.trace: list = []
        self.notes: list = []
        self.warnings: list = []
        self.last_lr: np.ndarray | None = None  # the last candidate's LR scan
        self.filter_scores: dict | None = None
        self.floor_share = 0.0  # share of the scan's relative noise variance not from photons
        self.floor_scale: float | None = None  # the scan's noise floor over the reference's
        self.filter_edge_widths: dict | None = None  # scan vs each filter with no PSF
        self.psf_grid: list | None = None  # (psf, edge width) of the last PSF search
        self.filter_set: dict | None = None  # filters consistent with the scan (_filter_support)

    def simulate(self, config: AcquisitionConfig) -> ScanStats:
        lr = simulate_acquisition(self.ref, config)
        self.last_lr = lr.array
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
        """Photons whose slice-to-slice photon noise matches the scan's.

        The scan's neighbouring-slice NPS is split into photon noise and a floor
        (:meth:`_spectral_photons`): the floor is what the reference gives with no photon
        noise (its own HR noise and structure changing between slices, carried through the
        simulator), with a free scale, because it differs between volumes (by up to ~2x
        between slabs of one bone). Without slice-difference spectra (one flat slice), the
        total noise is matched instead (:meth:`_total_photons`).
        """
        if self.stats.nps_diff is not None:
            photons = self._spectral_photons(config)
            if photons is not None:
                return config.model_copy(update={"photons": round(photons, 1)})
        return self._total_photons(config)

    def _spectral_photons(self, config: AcquisitionConfig) -> float | None:
        """Photons from :meth:`_split`; the top of :data:`PHOTON_RANGE` (with a note) when
        no photon noise is separable from the floor; None if :meth:`_split` cannot run."""
        u = self._split(config)
        if u is None:
            return None
        if u * PHOTON_RANGE[1] <= 1.0:
            note = (
                "no photon noise separable from the floor of the scan's slice-to-slice noise "
                f"(structure and HR noise): photons set to the top of the range {PHOTON_RANGE[1]:g}"
            )
            if note not in self.notes:
                self.notes.append(note)
            return PHOTON_RANGE[1]
        return float(np.clip(1.0 / u, *PHOTON_RANGE))

    def _split(self, config: AcquisitionConfig) -> float | None:
        """Fit ``nps_scan(f) = u * nps_photon(f) + s * nps_floor(f)`` per frequency bin of
        the slice-difference NPS (relative to the noise scale; weights 1 / nps_scan; ``s``
        within :data:`FLOOR_SCALE`) for ``config``'s filter, PSF and views.

        ``nps_floor`` is a candidate at :data:`NO_NOISE_PHOTONS` (the reference's own HR
        noise and structure changing between slices, carried through the simulator; it
        differs between volumes, hence the free scale ``s``), ``nps_photon`` the excess of
        a noisy candidate over it, per 1 / photons. The floor is low-frequency heavy,
        photon noise follows the filtered ramp, so the two separate where the floor
        dominates the total. Sets :attr:`floor_scale` and :attr:`floor_share`. Returns
        ``u`` (``1 / photons``), or None if a candidate was measured with another patch size
        than the scan.
        """
        low = float(np.clip(0.25 * config.photons, *LOW_PHOTONS))
        floor = self.simulate(config.model_copy(update={"photons": NO_NOISE_PHOTONS}))
        noisy = self.simulate(config.model_copy(update={"photons": low}))
        scan = self.stats
        spectra = [x.nps_diff for x in (scan, floor, noisy)]
        if any(s is None or len(s) != len(spectra[0]) for s in spectra):
            return None
        y = scan.nps_diff / scan.scale**2
        b = floor.nps_diff / floor.scale**2
        a = np.maximum(noisy.nps_diff / noisy.scale**2 - b, 0.0) * low
        w = 1.0 / np.maximum(y, 1e-30)
        (u, s), _ = nnls(np.stack([a * w, b * w], axis=1), y * w)
        if not FLOOR_SCALE[0] <= s <= FLOOR_SCALE[1]:
            s = float(np.clip(s, *FLOOR_SCALE))
            u = max(float(np.sum(w * w * a * (y - s * b)) / max(np.sum((w * a) ** 2), 1e-30)), 0.0)
        self.floor_scale = float(s)
        self.floor_share = float(np.clip(s * b.mean() / max(y.mean(), 1e-30), 0.0, 1.0))
        return float(u)

    def floor_record(self) -> dict | None:
        """``{"scale_over_reference", "share_of_slice_difference_noise"}`` of the last split
        (:meth:`_split`), or None when photons were matched on the total noise."""
        if self.floor_scale is None:
            return None
        return {
            "scale_over_reference": round(self.floor_scale, 3),
            "share_of_slice_difference_noise": round(self.floor_share, 3),
        }

    def _total_photons(self, config: AcquisitionConfig) -> AcquisitionConfig:
        """Photons whose relative total noise (:meth:`noise`) matches the scan's.

        Two candidates at ``P`` and ``4 P`` fit ``noise**2 = a / photons + b``, where ``b`` is
        what does not scale with photons (structure changing between slices); the
        photons are then ``a / (target**2 - b)``, within :data:`PHOTON_RANGE`.
        """
        self.floor_scale = None
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
        """Re-check the filter by simulation: among the filters that can be as sharp as the
        scan (in-plane edge width at no detector blur at most :data:`EDGE_SLACK` above the
        scan's: a detector PSF only blurs further), the one whose simulated NPS shape
        (structure leaking into the flat patches included) is nearest the scan's."""
        sims = {
            name: self.simulate(config.model_copy(update={"filter_name": name})) for name in FILTERS
        }
        best, scores = nearest_filter(self.stats, {k: s.noise_shape for k, s in sims.items()})
        self.filter_scores = scores["distance"]
        width = self.stats.width_inplane
        if width is None:
            return config.model_copy(update={"filter_name": best})
        if config.psf_sigma_bins > 0:
            sharp = {name: self.simulate(config.model_copy(
                update={"filter_name": name, "psf_sigma_bins": 0.0})) for name in FILTERS}  # fmt: skip
        else:
            sharp = sims
        widths = {k: s.width_inplane for k, s in sharp.items() if s.width_inplane is not None}
        self.filter_edge_widths = {"scan": width, "no_psf": widths}
        allowed = [k for k, w in widths.items() if w <= width * (1 + EDGE_SLACK)]
        if not allowed and widths:  # sharper than every filter: the sharpest
            allowed = [min(widths, key=widths.get)]
        if allowed and best not in allowed:
            choice = min(allowed, key=self.filter_scores.get)
            self.notes.append(
                f"filter {best} has the nearest NPS shape but cannot be as sharp as the scan "
                f"(edge width {widths[best]:.2f} voxels with no detector blur against the scan's "
                f"{width:.2f}): {choice}, the nearest of the filters that can"
            )
            best = choice
        self._filter_support(best, {k: sims[k] for k in (allowed or sims)})
        return config.model_copy(update={"filter_name": best})

    def match(self, config: AcquisitionConfig) -> tuple[AcquisitionConfig, str | None]:
        """Photons, PSF, then photons again at that PSF, for ``config``'s filter; and the
        PSF search's warning (:meth:`psf`)."""
        config, warning = self.psf(self.photons(config))
        return self.photons(config), warning

    def refit_for(self, config: AcquisitionConfig, name: str) -> AcquisitionConfig:
        """``config`` with filter ``name`` and the photons and PSF that match the scan with
        it (:meth:`match`). The search's state (last candidate, PSF grid, noise floor,
        notes) is left as it was."""
        saved = (self.stats, self.last_lr, self.psf_grid, self.floor_scale, self.floor_share,
                 list(self.notes), list(self.warnings))  # fmt: skip
        try:
            return self.match(config.model_copy(update={"filter_name": name}))[0]
        finally:
            (self.stats, self.last_lr, self.psf_grid, self.floor_scale, self.floor_share,
             self.notes, self.warnings) = saved  # fmt: skip

    def _filter_support(self, best: str, sims: dict) -> None:
        """Sets :attr:`filter_set`: the filters as consistent with the scan's NPS as
        ``best`` (:func:`filter_choice_frequencies` among ``sims``), ``best`` first."""
        shares = filter_choice_frequencies(self.stats, sims)
        if shares is None:
            self.filter_set = None
            return
        consistent = [best] + sorted(
            (k for k, v in shares.items() if v >= FILTER_CONSISTENT_SHARE and k != best),
            key=lambda k: -shares[k],
        )
        self.filter_set = {
            "consistent": consistent,
            "chosen_share": {k: round(v, 3) for k, v in shares.items()},
            "resamples": FILTER_RESAMPLES,
        }

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
        self.psf_grid = pairs
        warning = None
        sharpest = pairs[0][1]
        if width < 0.85 * sharpest:
            warning = (
                f"the scan is sharper than its voxel size suggests: edge width {width:.2f} "
                f"voxels against {sharpest:.2f} for the simulator with no detector blur at "
                f"factor {config.factor}; is it an HR scan, or are --spacing / --factor wrong?"
            )
            logger.warning(warning)
        psf = round(self._psf_at(width), 3)
        return config.model_copy(update={"psf_sigma_bins": psf}), warning

    def _psf_at(self, width: float) -> float:
        """The PSF whose candidate edge width is ``width``, on :attr:`psf_grid` (``psf**2``
        linear in ``width**2`` between grid points, the last segment extended beyond)."""
        p2 = np.array([p * p for p, _ in self.psf_grid])
        w2 = np.array([w * w for _, w in self.psf_grid])
        order = np.argsort(w2)
        psf2 = np.interp(width**2, w2[order], p2[order])
        if width**2 > w2.max():
            slope = (p2[-1] - p2[-2]) / max(w2[-1] - w2[-2], 1e-9)
            psf2 = p2[-1] + slope * (width**2 - w2[-1])
        return float(math.sqrt(max(psf2, 0.0)))

    def psf_range(self, spread: dict | None, edges: tuple[int, int]) -> dict | None:
        """The PSFs whose edge width lies within two standard deviations of the scan's,
        where the standard deviation is that of the width between the scan and the
        reference at one PSF: regions of the reference differ by ``spread["relative_sd"]``
        (:func:`~microsr.simulate.fit_stats.width_spread`), scaled to the scan's number of
        edges (``edges``: scan's, reference's), at least :data:`MIN_WIDTH_SD`. Near PSF 0
        the width changes little with the PSF, so the range is wide there."""
        width = self.stats.width_inplane
        if width is None or spread is None or self.psf_grid is None:
            return None
        ref_sd = spread["relative_sd"]
        sd = max(ref_sd * math.sqrt(1 + edges[1] / max(edges[0], 1)), MIN_WIDTH_SD)
        return {
            "low": round(self._psf_at(width * (1 - 2 * sd)), 3),
            "high": round(self._psf_at(width * (1 + 2 * sd)), 3),
            "edge_width_relative_sd": round(sd, 4),
            "reference_regions_relative_sd": round(ref_sd, 4),
            "reference_splits": spread["splits"],
        }


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


def other_filters(filter_set: dict | None) -> list:
    """The filters of a :attr:`CandidateSearch.filter_set` besides the fitted one (``[]``:
    none, or not measured)."""
    return filter_set["consistent"][1:] if filter_set else []


def nearest_filter(stats: ScanStats, templates: dict) -> tuple[str, dict]:
    """The filter whose normalised template NPS is closest to the scan's
    (:func:`shape_distance`)."""
    use = stats.nps_freq >= SHAPE_FROM
    scores = {name: shape_distance(stats.noise_shape, t, use) for name, t in templates.items()}
    best = min(scores, key=scores.get)
    logger.info("filter NPS distances %s -> %s", scores, best)
    return best, {"templates": {k: _list(v) for k, v in templates.items()}, "distance": scores}


def shape_distance(shape: np.ndarray, template: np.ndarray, use: np.ndarray) -> float:
    """Mean squared log ratio of two NPS shapes, up to a constant, over the bins ``use``
    (from :data:`SHAPE_FROM` cycles/voxel up: below, structure leaks in)."""
    d = np.log(np.maximum(shape[use], 1e-6)) - np.log(np.maximum(template[use], 1e-6))
    return float(np.mean((d - d.mean()) ** 2))


def filter_choice_frequencies(
    scan: ScanStats, sims: dict, *, resamples: int = FILTER_RESAMPLES, seed: int = 0
) -> dict | None:
    """How often each filter of ``sims`` (filter -> :class:`ScanStats` of its simulation)
    has the simulated slice-difference NPS shape nearest the scan's (:func:`shape_distance`)
    when the flat patches of the scan and of every simulation are resampled (a block
    bootstrap: patches that overlap or share a slice are drawn together).

    The NPS of a small scan rests on a few independent patches (8 x 80 x 80 LR voxels give
    about ten), so neighbouring filters (ramp / Shepp-Logan, Hamming / Hann) can swap
    places between resamples: those chosen in at least :data:`FILTER_CONSISTENT_SHARE` of
    them are as consistent with the scan as the nearest. None without per-patch spectra.
    """
    every = [scan, *sims.values()]
    if any(s.nps_diff_patches is None or len(s.nps_freq) != len(scan.nps_freq) for s in every):
        return None
    rng = np.random.default_rng(seed)
    use = scan.nps_freq >= SHAPE_FROM
    wins = dict.fromkeys(sims, 0)
    for _ in range(resamples):
        shape = _resampled_shape(scan, rng)
        d = {k: shape_distance(shape, _resampled_shape(s, rng), use) for k, s in sims.items()}
        wins[min(d, key=d.get)] += 1
    return {k: v / resamples for k, v in wins.items()}


def _resampled_shape(stats: ScanStats, rng: np.random.Generator) -> np.ndarray:
    """The normalised slice-difference NPS of one block-bootstrap resample of the patches."""
    blocks = stats.nps_diff_blocks
    n = int(blocks.max()) + 1
    weights = np.bincount(rng.integers(n, size=n), minlength=n)[blocks]
    nps = weights @ stats.nps_diff_patches / weights.sum()
    return nps / nps.mean()
