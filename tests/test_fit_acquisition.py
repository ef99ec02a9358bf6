"""fit-acquisition: noise, NPS shape, PSF / photon recovery and the CLI's outputs."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from microsr.cli import app
from microsr.io import write_volume
from microsr.simulate import AcquisitionConfig, make_phantom, simulate_acquisition
from microsr.simulate.fit import fit_acquisition
from microsr.simulate.fit_quality import TOLERANCES
from microsr.simulate.fit_search import (
    FILTER_CONSISTENT_SHARE,
    MIN_WIDTH_SD,
    PHOTON_RANGE,
    CandidateSearch,
    filter_choice_frequencies,
    filter_templates,
    nearest_filter,
)
from microsr.simulate.fit_stats import (
    ScanStats,
    classify,
    edge_profile,
    edge_width,
    scan_statistics,
    width_spread,
)
from microsr.simulate.fit_views import estimate_views
from microsr.volume import Volume


def test_white_noise_std_of_a_flat_volume_within_10_percent():
    rng = np.random.default_rng(3)
    array = 500.0 + rng.normal(0.0, 7.0, size=(5, 61, 67))
    stats, info = scan_statistics(array)
    assert not info["structured"]
    assert stats.noise == pytest.approx(7.0, rel=0.10)
    assert stats.noise_diff == pytest.approx(7.0, rel=0.10)
    assert np.ptp(stats.nps / stats.nps.mean()) < 0.3  # white: flat spectrum


@pytest.mark.parametrize("truth", ["ramp", "hann"])
def test_ramp_and_hann_nps_told_apart(truth):
    # a uniform water-like disc: the whole reconstruction is flat, only noise
    yy, xx = np.mgrid[:96, :96] - 47.5
    disc = np.where(np.hypot(yy, xx) < 46, 100.0, 0.0).astype(np.float32)
    hr = Volume(np.repeat(disc[None], 4, axis=0), (0.01, 0.01, 0.01))
    config = AcquisitionConfig(photons=2000, filter_name=truth, reference_value=100.0)
    lr = simulate_acquisition(hr, config)
    inside = np.zeros(lr.shape, bool)
    inside[:, 8:40, 8:40] = True
    stats, _ = scan_statistics(lr.array, inside, patch=16)
    _, templates = filter_templates(hr, config, 16)
    best, record = nearest_filter(stats, templates)
    assert best == truth, record["distance"]
    other = "hann" if truth == "ramp" else "ramp"
    assert record["distance"][other] > 5 * record["distance"][truth]


def _spectra(shape: np.ndarray, blocks: int, rng, per_block: int = 4) -> ScanStats:
    """Slice-difference NPS of ``blocks * per_block`` patches scattered around ``shape``
    (each bin of a patch's radial spectrum a mean of 8 exponential periodogram values)."""
    freq = np.linspace(0.03, 0.47, len(shape))
    each = shape * rng.gamma(8.0, 1 / 8.0, size=(blocks * per_block, len(shape)))
    nps = each.mean(axis=0)
    return ScanStats(marrow=0.0, bone=1.0, noise=1.0, noise_diff=1.0, patch=16,
                     n_patches=len(each), nps_freq=freq, nps=nps, noise_rel_se=0.1, nps_diff=nps,
                     nps_diff_patches=each,
                     nps_diff_blocks=np.repeat(np.arange(blocks), per_block))  # fmt: skip


def test_filter_choice_frequencies_widen_with_little_data_and_narrow_with_more():
    rng = np.random.default_rng(0)
    f = np.linspace(0.03, 0.47, 8)
    ramp, near, far = f, f * (1 - 0.4 * f), f * (1 - f) ** 2  # near: ~10 % lower at the top
    # a far shape is never chosen, whatever the amount of data
    shares = filter_choice_frequencies(
        _spectra(ramp, 10, rng), {"ramp": _spectra(ramp, 10, rng), "far": _spectra(far, 10, rng)}
    )
    assert shares == {"ramp": 1.0, "far": 0.0}
    # the same shape twice: each about half the time
    shares = filter_choice_frequencies(
        _spectra(ramp, 40, rng), {"a": _spectra(ramp, 40, rng), "b": _spectra(ramp, 40, rng)}
    )
    assert 0.2 < shares["a"] < 0.8 and shares["a"] + shares["b"] == 1.0
    # a near shape: consistent on a few blocks, excluded on many
    few = filter_choice_frequencies(
        _spectra(ramp, 3, rng), {"ramp": _spectra(ramp, 3, rng), "near": _spectra(near, 3, rng)}
    )
    assert min(few.values()) >= FILTER_CONSISTENT_SHARE, few
    many = filter_choice_frequencies(
        _spectra(ramp, 300, rng),
        {"ramp": _spectra(ramp, 300, rng), "near": _spectra(near, 300, rng)},
    )
    assert many["near"] < FILTER_CONSISTENT_SHARE, many
    # without per-patch spectra there is nothing to resample
    bare = _spectra(ramp, 3, rng)
    bare.nps_diff_patches = None
    assert filter_choice_frequencies(bare, {"ramp": _spectra(ramp, 3, rng)}) is None


def test_known_psf_and_photons_recovered():
    hr = make_phantom((8, 160, 160), spacing_mm=0.01, seed=5)
    truth = AcquisitionConfig(photons=3000, psf_sigma_bins=1.0, filter_name="ramp")
    lr = simulate_acquisition(hr, truth.model_copy(update={"seed": 11}))
    fit = fit_acquisition(lr, factor=2, reference=hr)
    got = fit.acquisition
    assert got.filter_name == "ramp"
    assert got.psf_sigma_bins == pytest.approx(1.0, abs=0.3)
    assert got.photons == pytest.approx(3000, rel=0.3)
    assert got.factor == 2 and fit.warnings == []
    assert fit.filter_set["consistent"][0] == "ramp"
    assert fit.quality.passed, fit.quality  # our own simulator's scan is not flagged


def test_every_consistent_filter_gets_its_own_photons_and_psf(monkeypatch):
    # the known-PSF scan (ramp, PSF 1) with Hann made consistent too: Hann's smoother
    # reconstruction needs less detector blur for the scan's edges and fewer photons for
    # its noise (it passes less of the ramp's high-frequency noise)
    from microsr.simulate import fit_search

    hr = make_phantom((8, 160, 160), spacing_mm=0.01, seed=5)
    truth = AcquisitionConfig(photons=3000, psf_sigma_bins=1.0, filter_name="ramp", seed=11)
    lr = simulate_acquisition(hr, truth)

    def ramp_or_hann(scan, sims, **kw):
        return {k: {"ramp": 0.8, "hann": 0.2}.get(k, 0.0) for k in sims}

    monkeypatch.setattr(fit_search, "filter_choice_frequencies", ramp_or_hann)
    fit = fit_acquisition(lr, factor=2, reference=hr)
    got = fit.acquisition
    assert fit.filter_set["consistent"] == ["ramp", "hann"]
    matches = fit.uncertainty["filters"]
    assert list(matches) == ["ramp", "hann"]
    assert matches["ramp"] == {"photons": got.photons, "psf_sigma_bins": got.psf_sigma_bins}
    assert matches["hann"]["psf_sigma_bins"] < got.psf_sigma_bins - 0.2
    assert matches["hann"]["photons"] < got.photons
    assert got.psf_sigma_bins == pytest.approx(1.0, abs=0.3)  # the fit itself unchanged
    assert any("does not tell ramp from hann" in n for n in fit.notes)
    # a PSF of 1 bin is told from 0: its range holds the truth and excludes 0
    assert 0 < fit.psf_range["low"] <= 1.0 <= fit.psf_range["high"]
    assert fit.uncertainty["psf_sigma_bins"] == pytest.approx(
        max((fit.psf_range["high"] - fit.psf_range["low"]) / 4, 0.05), abs=1e-3
    )


def _blobs(shape, seed, sigma_x):
    """Binary blobs (thresholded smoothed noise) blurred in-plane by ``sigma_x``: a float
    or one value per X half."""
    rng = np.random.default_rng(seed)
    binary = ndimage.gaussian_filter(rng.standard_normal(shape), (1.5, 3, 3)) > 0
    out = np.empty(shape, np.float32)
    half = shape[2] // 2
    for part, sigma in zip((slice(0, half), slice(half, None)), np.broadcast_to(sigma_x, 2)):
        out[..., part] = ndimage.gaussian_filter(binary.astype(np.float32), (0, sigma, sigma))[
            ..., part
        ]
    return 100.0 * out


def _width(array, region):
    smooth, threshold = classify(array)
    stats, _ = scan_statistics(array, patch=8, structured=True)
    profile, _ = edge_profile(array, smooth, threshold, (stats.marrow, stats.bone), region)
    return edge_width(profile)


def test_edge_width_spread_between_regions_finds_a_blur_that_differs_between_halves():
    same = _blobs((8, 96, 96), 4, 1.2)
    stats, _ = scan_statistics(same, patch=8, structured=True)
    homogeneous = width_spread(same, stats)
    assert homogeneous["splits"] == 3
    mixed = _blobs((8, 96, 96), 4, (0.9, 1.5))
    stats, _ = scan_statistics(mixed, patch=8, structured=True)
    spread = width_spread(mixed, stats)
    left = np.zeros(mixed.shape, bool)
    left[..., :48] = True
    d = (_width(mixed, left) - _width(mixed, ~left)) / stats.width_inplane
    # the X split carries d, the Z and Y splits about none: sqrt(d**2 / 3) / 2
    assert spread["relative_sd"] == pytest.approx(abs(d) / (2 * math.sqrt(3)), rel=0.3)
    assert spread["relative_sd"] > 3 * homogeneous["relative_sd"]


def test_psf_range_inverts_the_width_grid_at_two_standard_deviations():
    search = CandidateSearch.__new__(CandidateSearch)
    search.stats = type("S", (), {"width_inplane": 1.0})()
    search.psf_grid = [(0.0, 1.0), (0.75, 1.2), (1.5, 1.6), (2.25, 2.1)]
    got = search.psf_range({"relative_sd": 0.02, "splits": 3}, (500, 500))
    sd = 0.02 * math.sqrt(2)  # scan and reference with as many edges: sqrt(1 + 1)
    assert got["edge_width_relative_sd"] == pytest.approx(sd, abs=1e-4)
    assert got["low"] == 0.0  # below the PSF-0 width
    # psf**2 linear in width**2 between (1.0, 0) and (1.2, 0.75)
    high = math.sqrt(((1 + 2 * sd) ** 2 - 1) / (1.44 - 1) * 0.75**2)
    assert got["high"] == pytest.approx(high, abs=1e-3)
    search.stats.width_inplane = 1.4  # between 0.75 and 1.5: both ends inside
    tight = search.psf_range({"relative_sd": 0.0, "splits": 3}, (500, 500))
    assert tight["edge_width_relative_sd"] == MIN_WIDTH_SD
    assert 0.75 < tight["low"] < tight["high"] < 1.5


def test_photons_separated_from_a_higher_noise_floor_than_the_references():
    # the scan's HR carries smooth extra texture (structure / correlated HR noise) that the
    # reference lacks: a floor of slice-to-slice noise twice the reference's, on top of the
    # photon noise. Matching the total noise would take the floor for photons (too few);
    # the spectral split gives the photons and the floor's scale.
    hr = make_phantom((8, 160, 160), spacing_mm=0.01, seed=5)
    rng = np.random.default_rng(2)

    def textured(amplitude):
        texture = ndimage.gaussian_filter(rng.normal(0.0, 1.0, hr.shape), (0.0, 1.5, 1.5))
        scale = amplitude * float(np.ptp(hr.array))
        return hr.with_array(hr.array + scale * texture.astype(np.float32))

    scan_hr, reference = textured(0.3), textured(0.2)  # floors 2.25x apart in variance
    truth = AcquisitionConfig(photons=20000, filter_name="hann", seed=11)
    lr = simulate_acquisition(scan_hr, truth)
    floor_only = simulate_acquisition(scan_hr, truth.model_copy(update={"photons": 1e10}))
    scan, _ = scan_statistics(lr.array)
    floor, _ = scan_statistics(floor_only.array, patch=scan.patch, structured=True)
    assert (floor.noise_diff / floor.scale) ** 2 > 0.4 * (scan.noise_diff / scan.scale) ** 2
    fit = fit_acquisition(lr, factor=2, reference=reference)
    assert fit.acquisition.filter_name == "hann"
    # matching the total noise instead gives about 0.7x here (13800)
    assert 0.8 * 20000 < fit.acquisition.photons < 1.5 * 20000
    assert fit.floor["scale_over_reference"] == pytest.approx(2.25, rel=0.3)
    assert 0.3 < fit.floor["share_of_slice_difference_noise"] < 1.0


def test_a_filter_that_cannot_be_as_sharp_as_the_scan_is_not_chosen(monkeypatch):
    # a ramp scan with no detector blur: Hann (the smoothest window) cannot reach its edge
    # width, whatever the NPS shapes say; here the shape comparison is made to prefer Hann
    from microsr.simulate import fit_search

    hr = make_phantom((8, 128, 128), spacing_mm=0.01, seed=8)
    lr = simulate_acquisition(hr, AcquisitionConfig(photons=5000, filter_name="ramp", seed=2))

    def prefer_hann(stats, templates):
        scores = {k: (0.0 if k == "hann" else 1.0) for k in templates}
        return "hann", {"templates": {}, "distance": scores}

    monkeypatch.setattr(fit_search, "nearest_filter", prefer_hann)
    fit = fit_acquisition(lr, factor=2, reference=hr)
    widths = fit.templates["edge_widths"]
    assert widths["no_psf"]["hann"] > 1.08 * widths["scan"]
    assert fit.acquisition.filter_name != "hann"
    assert widths["no_psf"][fit.acquisition.filter_name] <= 1.08 * widths["scan"]
    assert any("cannot be as sharp as the scan" in n for n in fit.notes)


def test_no_photon_noise_to_separate_gives_the_top_of_the_range_and_says_so():
    hr = make_phantom((8, 128, 128), spacing_mm=0.01, seed=3)
    lr = simulate_acquisition(hr, AcquisitionConfig(photons=1e10, seed=4))
    fit = fit_acquisition(lr, factor=2, reference=hr)
    assert fit.acquisition.photons == PHOTON_RANGE[1]
    assert any("no photon noise separable" in n for n in fit.notes)


@pytest.mark.parametrize("ratio", [0.2, 0.3, 0.5, 1.0])
def test_views_counted_from_the_spectrum_only_where_too_few(ratio):
    hr = make_phantom((8, 128, 128), spacing_mm=0.01, seed=4)
    config = AcquisitionConfig(photons=2000, projections_ratio=ratio, filter_name="hamming")
    lr = simulate_acquisition(hr, config)
    got = estimate_views(lr.array)
    views = round(ratio * math.ceil(math.pi / 2 * 128))  # the simulator's count
    assert got.nyquist == math.ceil(math.pi / 2 * 64)  # the LR slice's
    if views < 0.7 * got.nyquist:
        assert got.views == views, got
    else:
        assert got.views is None, got


def test_an_axis_aligned_comb_is_not_counted_as_views():
    # squares: their spectrum's angular profile has every even harmonic (edges along the
    # axes), a comb and not one isolated peak
    got = estimate_views(sharp_blocks().array)
    assert got.views is None and got.contrast > 6  # high, but not isolated


def test_undersampled_scan_fits_its_views():
    hr = make_phantom((8, 128, 128), spacing_mm=0.01, seed=6)
    lr = simulate_acquisition(hr, AcquisitionConfig(photons=5000, projections_ratio=0.25))
    fit = fit_acquisition(lr, factor=2, reference=hr)
    assert fit.acquisition.projections_ratio == pytest.approx(0.25, abs=0.01)
    assert fit.acquisition.hr_projections is None  # relative to each volume's Nyquist count
    assert fit.uncertainty["projections_ratio"] == 0.01
    assert fit.views_fitted.views == fit.views.views  # the fitted simulation has the spokes


def test_cli_writes_the_acquisition_file_and_its_figure(tmp_path):
    hr = make_phantom((4, 160, 160), spacing_mm=0.01, seed=2)
    lr = simulate_acquisition(hr, AcquisitionConfig(photons=5000, filter_name="hamming"))
    scan = write_volume(lr, tmp_path / "lr.mha")
    ref = write_volume(make_phantom((4, 160, 160), spacing_mm=0.01, seed=3), tmp_path / "hr.mha")
    out = tmp_path / "fit" / "acq.json"
    args = ["fit-acquisition", str(scan), str(out), "--reference", str(ref)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert out.is_file() and out.with_suffix(".png").stat().st_size > 1000
    record = json.loads(out.read_text())
    assert record["format"] == "microsr-acquisition" and record["version"] == 2
    config = AcquisitionConfig(**record["acquisition"])  # the reader's round trip
    assert config.filter_name == "hamming"
    assert set(record["uncertainty"]) == {"photons", "psf_sigma_bins", "projections_ratio",
                                          "filters"}  # fmt: skip
    consistent = record["fit"]["filter_set"]["consistent"]
    assert consistent[0] == "hamming"
    assert list(record["uncertainty"]["filters"]) == (consistent if len(consistent) > 1 else [])
    shares = record["fit"]["filter_set"]["chosen_share"]
    assert sum(shares.values()) == pytest.approx(1.0, abs=0.01)
    assert all(shares[k] >= FILTER_CONSISTENT_SHARE for k in consistent[1:])
    psf_range = record["fit"]["psf_range"]
    assert psf_range["low"] <= record["acquisition"]["psf_sigma_bins"] <= psf_range["high"]
    quality = record["fit"]["quality"]  # the project's own simulator: every check passes
    assert quality["passed"] and set(quality["checks"]) == set(TOLERANCES), quality
    assert not any("does not reproduce" in w for w in record["fit"]["warnings"])
    assert record["fit"]["spacing_mm"] == pytest.approx([0.02] * 3)
    for name, row in record["fit"]["statistics"].items():
        assert set(row) == {"scan", "fit", "residual"}, name
        for value in row.values():
            assert isinstance(value, int | float | list), name
    assert "edge_width_z_voxels" in record["fit"]["statistics_unavailable"]  # 2 LR slices
    assert record["fit"]["statistics"]["relative_noise"]["scan"] > 0
    assert record["fit"]["views"]["views"] is None  # the Nyquist count: no spokes
    assert record["acquisition"]["projections_ratio"] == 0.5
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "--overwrite" in res.output


def sharp_blocks(seed: int = 0, *, factor: int = 1) -> Volume:
    """Bone squares with ideal (unblurred) edges in marrow: sharper than any LR scan.

    ``factor`` 1: the "LR scan" (0.02 mm, noisy); 2: an HR reference of the same layout.
    """
    rng = np.random.default_rng(seed)
    array = np.full((4, 64, 64), 100.0, np.float32)
    for y in (8, 40):
        for x in (8, 40):
            array[:, y : y + 14, x : x + 14] = 1000.0
    if factor > 1:
        array = np.kron(array, np.ones((factor,) * 3, np.float32))
    array += rng.normal(0, 10, array.shape).astype(np.float32)
    return Volume(array, (0.02 / factor,) * 3)


def test_sharp_scan_warns_with_the_numbers(caplog):
    with caplog.at_level(logging.WARNING, logger="microsr"):
        fit = fit_acquisition(sharp_blocks(), factor=2, reference=sharp_blocks(1, factor=2))
    assert fit.warnings and "sharper than its voxel size" in fit.warnings[0]
    assert any("edge width" in r.getMessage() for r in caplog.records)
    assert fit.acquisition.psf_sigma_bins == 0.0
