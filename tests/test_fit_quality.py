"""fit.quality: the fitted simulation against the scan, statistic by statistic."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from microsr.cli import app
from microsr.io import write_volume
from microsr.simulate import AcquisitionConfig, make_phantom, simulate_acquisition
from microsr.simulate.acquisition_file import read_acquisition_file
from microsr.simulate.fit_quality import TOLERANCES, assess_fit
from microsr.simulate.fit_search import SHAPE_FROM
from microsr.simulate.fit_stats import EDGE_OFFSETS, ScanStats


def _stats(*, noise=0.1, nps=None, width=1.0, bone=0.6) -> ScanStats:
    """Statistics of a scan with a known noise level, NPS, edge width and bone level."""
    freq = np.linspace(0.05, 0.45, 9)
    nps = np.ones_like(freq) if nps is None else nps
    edge = 0.5 * (1 + np.tanh(EDGE_OFFSETS / (1.7 * width)))
    return ScanStats(marrow=0.0, bone=bone, noise=noise, noise_diff=noise, patch=16,
                     n_patches=30, nps_freq=freq, nps=nps, noise_rel_se=0.05, nps_diff=nps,
                     bone_high=1.0, edge_inplane=edge, width_inplane=width)  # fmt: skip


def test_identical_statistics_pass_with_zero_residuals():
    q = assess_fit(_stats(), _stats())
    assert q.passed and set(q.checks) == set(TOLERANCES) and q.failed() == []
    assert all(c.residual == 0 for c in q.checks.values())


def test_each_statistic_fails_alone_with_its_residual():
    scan = _stats()
    q = assess_fit(scan, replace(scan, noise=0.17, noise_diff=0.17))  # 1.7x the noise
    assert q.failed() == ["slice_noise", "patch_noise"]
    assert q.checks["slice_noise"].residual == pytest.approx(0.7)
    assert "slice-to-slice noise level" in q.message() and "+0.7" in q.message()
    # a texture of another shape: log ratio 0.4 above SHAPE_FROM, half below -> RMS 0.4
    freq = scan.nps_freq
    tilted = np.where(freq >= SHAPE_FROM, np.exp(0.4 * np.sign(freq - 0.25)), 1.0)
    q = assess_fit(scan, replace(scan, nps=tilted, nps_diff=tilted))
    use = freq >= SHAPE_FROM
    d = 0.4 * np.sign(freq[use] - 0.25)
    assert q.checks["nps_shape"].residual == pytest.approx(np.std(d), abs=1e-4)
    assert q.failed() == ["nps_shape"]
    # a scale of the NPS alone is not a change of texture
    assert assess_fit(scan, replace(scan, nps=3 * scan.nps, nps_diff=3 * scan.nps)).passed
    q = assess_fit(scan, replace(scan, bone=0.8))
    assert q.failed() == ["grey_levels"] and q.checks["grey_levels"].residual == pytest.approx(0.2)


def test_edge_width_tolerance_widens_with_the_references_own_spread():
    scan = _stats()
    wider = replace(scan, width_inplane=1.2)  # the profile kept: only the width check
    assert assess_fit(scan, wider).failed() == ["edge_width"]
    assert assess_fit(scan, wider, edge_width_relative_sd=0.08).passed  # 3 sd = 0.24


def test_no_edges_leaves_the_edge_checks_out_and_says_why():
    scan = replace(_stats(), edge_inplane=None, width_inplane=None)
    q = assess_fit(scan, scan)
    assert q.passed and "edge_width" not in q.checks
    assert q.unchecked["edge_profile"] == "no isolated bone/marrow edges"


def test_a_post_filtered_scan_is_flagged_and_strict_refuses_it(tmp_path, caplog):
    """A vendor-like median post-filter (outside the simulator's model) changes the noise
    texture: the fit warns, naming it; --strict writes nothing; every later read of the
    file warns again. (The project's own scans pass: test_fit_acquisition.)"""
    hr = make_phantom((4, 160, 160), spacing_mm=0.01, seed=5)
    truth = AcquisitionConfig(photons=3000, psf_sigma_bins=0.8, filter_name="shepp-logan")
    lr = simulate_acquisition(hr, truth)
    lr = lr.with_array(ndimage.median_filter(lr.array, size=(1, 3, 3)))
    scan = write_volume(lr, tmp_path / "lr.mha")
    ref = write_volume(make_phantom((4, 160, 160), spacing_mm=0.01, seed=6), tmp_path / "hr.mha")
    out = tmp_path / "acq.json"
    args = ["fit-acquisition", str(scan), str(out), "--reference", str(ref)]
    res = CliRunner().invoke(app, [*args, "--strict"])
    assert res.exit_code == 2 and "--strict" in res.output and "noise texture" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hr.mha", "lr.mha"]  # nothing written
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    record = json.loads(out.read_text())
    quality = record["fit"]["quality"]
    assert not quality["passed"] and "nps_shape" in quality["checks"]
    assert not quality["checks"]["nps_shape"]["passed"], quality
    assert any("noise texture" in w for w in record["fit"]["warnings"])
    with caplog.at_level(logging.WARNING, logger="microsr"):
        file = read_acquisition_file(out)
    assert "nps_shape" in file.quality().failed()
    assert any(str(out) in r.getMessage() and "noise texture" in r.getMessage()
               for r in caplog.records)  # fmt: skip
