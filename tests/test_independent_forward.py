"""The independent forward models of bench/independent_forward.py (issue 32): tiny arrays,
analytic expectations."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from skimage.transform import radon

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import independent_forward as fwd


def test_zero_attenuation_gives_zero_line_integrals():
    t = fwd.polychromatic_transmission(
        np.zeros((7, 5)), np.zeros((7, 5)), fwd.Spectrum((20, 40), (0.3, 0.7))
    )
    assert np.array_equal(t, np.ones((7, 5)))
    p = fwd.detect(t, photons=1000.0, electronic_sigma=0.0, gains=None, rng=None)
    assert np.array_equal(p, np.zeros((7, 5)))


def test_one_energy_is_monochromatic():
    path, bone = np.array([0.0, 1.0, 3.5]), np.array([0.0, 0.4, 1.2])
    p = -np.log(fwd.polychromatic_transmission(path, bone, fwd.Spectrum((30,), (1.0,))))
    mw, mb = fwd.MU_WATER[30], fwd.MU_BONE[30]
    np.testing.assert_allclose(p, mw * path + (mb - mw) * bone, rtol=1e-12)


def test_beam_hardening_under_reads_long_paths():
    """Two energies: log of the summed intensity is below the thin-object line integral
    (Jensen), more so for more bone; equal at zero path."""
    s = fwd.Spectrum((20, 50), (0.5, 0.5))
    bone = np.array([0.0, 0.5, 2.0])
    p = -np.log(fwd.polychromatic_transmission(np.full(3, 2.0), bone, s))
    water, b = s.effective_mu()
    linear = water * 2.0 + (b - water) * bone
    assert np.all(p < linear)
    assert np.all(np.diff(linear - p) > 0)
    assert -np.log(fwd.polychromatic_transmission(np.zeros(1), np.zeros(1), s))[0] == 0.0


def test_calibration_maps_the_phantom_readings():
    g = fwd.calibrate(np.array([0.03, 0.05, 0.07]), (0.03, 0.05), 200.0)
    np.testing.assert_allclose(
        g, [0.0, fwd.CALIBRATION_FRACTION * 200, 2 * fwd.CALIBRATION_FRACTION * 200]
    )


def test_monochromatic_phantom_readings_are_linear_attenuation():
    """One energy, no noise: the phantoms read (nearly) their true attenuation."""
    cfg = fwd.ForwardConfig(views=60, spectrum=fwd.Spectrum((40,), (1.0,)), photons=1e12, pad=8)
    geo = fwd._geometry(24, 0.02, cfg)
    water, ref = fwd.phantom_readings(geo, cfg)
    mw, mb = fwd.MU_WATER[40], fwd.MU_BONE[40]
    np.testing.assert_allclose(
        [water, ref], [mw, mw + fwd.CALIBRATION_FRACTION * (mb - mw)], rtol=0.02
    )


@pytest.mark.parametrize("fwhm", [0.5, 1.0, 1.7, 3.0])
def test_slice_profile_conserves_mean_and_ramps(fwhm):
    w = fwd.slice_profile_weights(21, 2, fwhm)
    assert w.shape == (10, 21)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    const = np.full((21, 3, 3), 7.25)
    np.testing.assert_allclose(np.tensordot(w, const, axes=(1, 0)), 7.25)
    # a linear ramp along z comes back at the LR centres 2k + 0.5, away from the ends
    w = fwd.slice_profile_weights(41, 2, fwhm)
    inner = slice(6, 14)
    centres = 2 * np.arange(20) + 0.5
    np.testing.assert_allclose((w @ np.arange(41.0))[inner], centres[inner], atol=1e-3)


def test_narrow_slice_profile_is_the_two_slice_mean():
    w = fwd.slice_profile_weights(8, 2, 1e-3)
    expected = np.zeros((4, 8))
    for k in range(4):
        expected[k, 2 * k : 2 * k + 2] = 0.5
    np.testing.assert_allclose(w, expected, atol=1e-12)


def test_wider_profile_reaches_further():
    narrow, wide = fwd.slice_profile_weights(20, 2, 1.0), fwd.slice_profile_weights(20, 2, 2.5)
    assert wide[5, 8] > narrow[5, 8]  # HR slice 8 is 2.5 slices from LR 5's centre (10.5)


def test_rays_projector_matches_skimage_radon():
    """Independent code, same geometry: a smooth off-centre blob projects alike (outside
    reference: scikit-image's radon)."""
    n = 33
    yy, xx = np.mgrid[:n, :n]
    img = np.exp(-((yy - 12.0) ** 2 + (xx - 20.0) ** 2) / (2 * 3.0**2))
    theta = np.array([0.0, 30.0, 90.0, 135.0])
    ours = fwd.project(img, theta, projector="rays")
    ref = radon(img, theta=theta, circle=False, preserve_range=True)
    assert ours.shape == ref.shape == (math.ceil(math.sqrt(2) * n), 4)
    np.testing.assert_allclose(ours.sum(axis=0), img.sum(), rtol=1e-3)
    assert np.abs(ours - ref).max() < 0.02 * ref.max()


def test_bin_and_unbin_detector():
    s = np.arange(10, dtype=float).reshape(5, 2)
    b = fwd.bin_detector(s, 2)
    np.testing.assert_allclose(b, [[1, 2], [5, 6], [8, 9]])
    # a linear ramp binned and put back is the ramp between the end element centres
    ramp = np.arange(8.0)[:, None]
    u = fwd.unbin_detector(fwd.bin_detector(ramp, 2), 2, 8)
    np.testing.assert_allclose(u[1:7, 0], ramp[1:7, 0])
    np.testing.assert_allclose(u[[0, 7], 0], [0.5, 6.5])


def test_rings_come_from_uncorrected_gains():
    gains = np.array([1.0, 1.1])
    p = fwd.detect(np.ones((2, 3)), photons=100.0, electronic_sigma=0.0, gains=gains, rng=None)
    np.testing.assert_allclose(p[0], 0.0)
    np.testing.assert_allclose(p[1], -math.log(1.1))


def test_electronic_noise_adds_variance():
    t = np.full((400, 50), 0.5)
    p0 = fwd.detect(
        t, photons=2000.0, electronic_sigma=0.0, gains=None, rng=np.random.default_rng(0)
    )
    p1 = fwd.detect(
        t, photons=2000.0, electronic_sigma=40.0, gains=None, rng=np.random.default_rng(0)
    )
    # Poisson: var(p) ~ 1 / (N T) = 1e-3; with read noise (40 / 1000)^2 = 1.6e-3 more
    assert p0.var() == pytest.approx(1e-3, rel=0.1)
    assert p1.var() == pytest.approx(2.6e-3, rel=0.1)


def test_post_filters_keep_constants():
    v = np.full((3, 7, 5), 4.0, np.float32)
    for kind, size in (("gaussian", 0.8), ("median", 3)):
        for three_d in (False, True):
            np.testing.assert_allclose(
                fwd.post_filter(v, kind=kind, size=size, three_d=three_d), 4.0
            )


@pytest.mark.parametrize("recon, rtol", [("fbp", 0.03), ("sart", 0.05)])  # SART: 6 iterations
def test_acquire_water_block_reads_zero_and_bone_reads_its_grey(recon, rtol):
    """Monochromatic, noise-free, a uniform object: the calibrated LR is flat at the HR grey."""
    hr = np.full((4, 24, 24), 100.0)
    cfg = fwd.ForwardConfig(
        recon=recon,
        views=60,
        spectrum=fwd.Spectrum((40,), (1.0,)),
        photons=1e12,
        sart_iterations=6,
        pad=16,
    )
    lr = fwd.acquire(hr, grey_ref=200.0, spacing_hr_mm=0.02, config=cfg)
    assert lr.shape == (2, 12, 12) and lr.dtype == np.float32
    np.testing.assert_allclose(lr, 100.0, rtol=rtol)
    zero = fwd.acquire(np.zeros((2, 12, 12)), grey_ref=200.0, spacing_hr_mm=0.02, config=cfg)
    np.testing.assert_allclose(
        zero, 0.0, atol=4.0
    )  # 2 % of grey_ref; the field lies inside the (padded) object


def test_acquire_is_seeded():
    rng = np.random.default_rng(1)
    hr = rng.random((4, 16, 16)) * 200
    cfg = fwd.ForwardConfig(
        views=30, photons=500, electronic_sigma=3, ring_sd=0.01, post="median", post_size=3
    )
    a = fwd.acquire(hr, grey_ref=200.0, spacing_hr_mm=0.02, config=cfg)
    b = fwd.acquire(hr, grey_ref=200.0, spacing_hr_mm=0.02, config=cfg)
    assert np.array_equal(a, b)


def test_bench_skips_without_data(tmp_path, capsys):
    import independent_acquisitions as bench

    assert bench.main([str(tmp_path / "out"), "--lhdl", str(tmp_path / "absent")]) == 0
    assert "skipped: no LHDL data" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


def test_declared_split_of_acquisitions():
    """Two development and six final acquisitions, each with beam hardening (>= 2 energies),
    electronic noise and a slice profile wider than the voxel."""
    import independent_acquisitions as bench

    names = list(bench.ACQUISITIONS)
    assert sum(n.startswith("dev_") for n in names) == 2
    assert sum(n.startswith("final_") for n in names) == 6
    for config in bench.ACQUISITIONS.values():
        assert len(config.spectrum.energies_kev) >= 2
        assert config.electronic_sigma > 0 and config.slice_fwhm_lr > 1
