"""Tests of the bone phantom and the acquisition simulator (tiny volumes, analytic checks)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from microsr.errors import MicrosrError
from microsr.simulate import AcquisitionConfig, fbp_noise_sigma, make_phantom, simulate_acquisition
from microsr.volume import Calibration, Volume

NOISE_FREE = {"photons": 1e12}


def _disk_volume(shape, centre, radius, *, value=1000.0, spacing=0.01, origin=(0.0, 0.0, 0.0)):
    """Uniform cylinder along Z with a disk cross-section (centre in HR pixel coordinates)."""
    _, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    inside = (y - centre[0]) ** 2 + (x - centre[1]) ** 2 <= radius**2
    array = np.broadcast_to(np.where(inside, value, 0.0), shape).astype(np.float32)
    return Volume(array=array.copy(), spacing_mm=(spacing,) * 3, origin_mm=origin)


def _centroid_mm(image, volume):
    """Physical (y, x) centroid of a 2D image of ``volume`` (negative values ignored)."""
    weights = np.clip(image, 0.0, None)
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    return np.array(
        [
            volume.origin_mm[1] + volume.spacing_mm[1] * (weights * yy).sum() / weights.sum(),
            volume.origin_mm[2] + volume.spacing_mm[2] * (weights * xx).sum() / weights.sum(),
        ]
    )


def _block_mean(array, f):
    nz, ny, nx = (n // f for n in array.shape)
    out = np.zeros((nz, ny, nx))
    for k in range(f):
        for j in range(f):
            for i in range(f):
                out += array[k : nz * f : f, j : ny * f : f, i : nx * f : f]
    return out / f**3


def _envelope(mask):
    return np.stack([ndimage.binary_fill_holes(s) for s in mask])


# ----------------------------------------------------------------------------- phantom


def test_phantom_deterministic_per_seed():
    a = make_phantom((6, 48, 50), seed=3).array
    b = make_phantom((6, 48, 50), seed=3).array
    c = make_phantom((6, 48, 50), seed=4).array
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("site", ["femur", "spine"])
def test_phantom_grey_levels(site):
    vol, mask = make_phantom((12, 96, 96), site=site, seed=1, return_mask=True)
    assert vol.array.dtype == np.float32 and vol.shape == mask.shape and mask.dtype == bool
    assert vol.calibration == Calibration(slope=1.0, intercept=0.0, units="mg HA/cm3")
    assert vol.spacing_mm == (0.01, 0.01, 0.01)
    envelope = _envelope(mask)
    background = ~ndimage.binary_dilation(envelope, iterations=3)
    marrow = envelope & ~ndimage.binary_dilation(mask, iterations=2)
    bone_core = ndimage.binary_erosion(mask, iterations=1)
    assert abs(np.median(vol.array[background])) < 5.0
    assert 15.0 <= vol.array[background].std() <= 25.0
    assert 75.0 <= np.median(vol.array[marrow]) <= 105.0
    assert 800.0 <= np.median(vol.array[bone_core]) <= 1150.0
    levels = vol.metadata["phantom"]["levels"]
    assert 80 <= levels["marrow"] <= 100
    assert 850 <= levels["trabecular"] <= 950
    assert 1050 <= levels["cortical"] <= 1150


def test_phantom_bone_fractions_by_site():
    # documented ranges: trabecular BV/TV femur 11-14 %, spine 27-33 %; total bone
    # fraction inside the periosteal envelope (cortex included) about 20-32 % / 32-46 %
    fractions = {}
    for site, tb_range, env_range in [
        ("femur", (0.11, 0.14), (0.20, 0.32)),
        ("spine", (0.27, 0.33), (0.32, 0.46)),
    ]:
        for seed in (0, 1):
            vol, mask = make_phantom((16, 96, 96), site=site, seed=seed, return_mask=True)
            bv_tv = vol.metadata["phantom"]["trabecular_bv_tv"]
            assert tb_range[0] - 0.01 <= bv_tv <= tb_range[1] + 0.01
            in_envelope = mask[_envelope(mask)].mean()
            assert env_range[0] <= in_envelope <= env_range[1]
            fractions.setdefault(site, []).append(bv_tv)
    assert min(fractions["spine"]) > max(fractions["femur"])


@pytest.mark.parametrize("site", ["femur", "spine"])
def test_phantom_bone_off_fov_edge(site):
    for seed in range(3):
        _, mask = make_phantom((8, 80, 70), site=site, seed=seed, return_mask=True)
        margin = 4  # 5 % of the smaller side
        assert mask.any()
        assert not mask[:, :margin].any() and not mask[:, -margin:].any()
        assert not mask[:, :, :margin].any() and not mask[:, :, -margin:].any()


@pytest.mark.parametrize("shape", [(1, 16, 16), (5, 33, 41), (7, 41, 29)])
def test_phantom_odd_shapes(shape):
    vol, mask = make_phantom(shape, site="spine", seed=2, return_mask=True)
    assert vol.shape == shape and mask.shape == shape
    assert np.isfinite(vol.array).all() and mask.any()


def test_phantom_bad_shape():
    with pytest.raises(MicrosrError, match=r"Y, X >= 16, got \(4, 8, 40\)"):
        make_phantom((4, 8, 40))


# ----------------------------------------------------------------------------- simulator


@pytest.mark.parametrize("factor", [2, 3])
def test_simulator_geometry(factor):
    hr = _disk_volume((7, 25, 31), (12.0, 15.0), 8.0, origin=(1.0, -2.0, 0.5))
    hr = hr.with_array(hr.array, calibration=Calibration(2.0, -5.0), metadata={"id": "x"})
    lr = simulate_acquisition(hr, AcquisitionConfig(factor=factor, projections_ratio=0.3))
    assert lr.shape == (7 // factor, 25 // factor, 31 // factor)
    assert lr.array.dtype == np.float32
    np.testing.assert_allclose(lr.spacing_mm, (0.01 * factor,) * 3)
    expected_origin = np.array(hr.origin_mm) + (factor - 1) / 2 * 0.01
    np.testing.assert_allclose(lr.origin_mm, expected_origin)
    assert lr.calibration == hr.calibration
    assert lr.metadata["id"] == "x"
    assert AcquisitionConfig(**lr.metadata["acquisition"]).factor == factor


def test_simulator_quick_geometry():
    hr = _disk_volume((7, 25, 31), (12.0, 15.0), 8.0)
    lr = simulate_acquisition(hr, AcquisitionConfig(factor=3, quick=True))
    assert lr.shape == (2, 8, 10)
    np.testing.assert_allclose(lr.origin_mm, (0.01,) * 3)


@pytest.mark.parametrize("factor", [2, 3])
def test_uniform_disk_intensity(factor):
    hr = _disk_volume((factor, 96, 96), (47.5, 47.5), 36.0)
    lr = simulate_acquisition(hr, AcquisitionConfig(factor=factor, **NOISE_FREE)).array[0]
    c = lr.shape[0] // 2
    interior = lr[c - 4 : c + 4, c - 4 : c + 4]
    assert abs(interior.mean() - 1000.0) < 20.0
    assert np.abs(interior - 1000.0).max() < 30.0
    assert np.abs(lr[:2, :2]).max() < 30.0  # air stays air


@pytest.mark.parametrize(
    ("shape", "factor", "centre"),
    [
        ((2, 64, 64), 2, (31.5, 31.5)),
        ((2, 60, 70), 2, (25.2, 40.7)),
        ((3, 61, 67), 3, (27.3, 35.8)),
        ((2, 45, 51), 2, (20.0, 27.6)),
    ],
)
def test_centroid_alignment(shape, factor, centre):
    hr = _disk_volume(shape, centre, 12.0, origin=(0.3, -0.1, 0.2))
    lr = simulate_acquisition(hr, AcquisitionConfig(factor=factor, **NOISE_FREE))
    offset_mm = _centroid_mm(lr.array[0], lr) - _centroid_mm(hr.array[0], hr)
    assert np.all(np.abs(offset_mm / lr.spacing_mm[1]) < 0.25), offset_mm


def test_full_projections_match_block_average():
    phantom = make_phantom((4, 64, 64), site="spine", seed=5)
    smooth = ndimage.gaussian_filter(phantom.array, 2.0)
    hr = phantom.with_array(smooth)
    config = AcquisitionConfig(factor=2, projections_ratio=1.0, photons=float("inf"))
    lr = simulate_acquisition(hr, config).array
    reference = _block_mean(smooth, 2)
    assert np.corrcoef(lr.ravel(), reference.ravel())[0, 1] > 0.95


def test_noise_falls_with_photons():
    hr = _disk_volume((4, 80, 80), (39.5, 39.5), 32.0)
    stds = []
    for frames in (1, 4):
        config = AcquisitionConfig(photons=5000.0, frames=frames, seed=1)
        lr = simulate_acquisition(hr, config).array
        stds.append(lr[:, 12:28, 12:28].std())
        predicted = fbp_noise_sigma(hr, config)
        assert 0.7 * predicted < stds[-1] < 1.3 * predicted
    assert 1.6 < stds[0] / stds[1] < 2.5  # ideal: sqrt(4) = 2


def test_simulator_deterministic_by_seed():
    hr = make_phantom((4, 40, 40), seed=0)
    a = simulate_acquisition(hr, AcquisitionConfig(seed=7)).array
    b = simulate_acquisition(hr, AcquisitionConfig(seed=7)).array
    c = simulate_acquisition(hr, AcquisitionConfig(seed=8)).array
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    qa = simulate_acquisition(hr, AcquisitionConfig(seed=7, quick=True)).array
    qb = simulate_acquisition(hr, AcquisitionConfig(seed=7, quick=True)).array
    np.testing.assert_array_equal(qa, qb)


@pytest.mark.parametrize("factor", [1, 2, 3])
def test_quick_mode_without_blur_or_noise_is_block_average(factor):
    rng = np.random.default_rng(0)
    array = rng.uniform(0, 1000, size=(7, 11, 13)).astype(np.float32)
    hr = Volume(array=array, spacing_mm=(0.01, 0.01, 0.01))
    config = AcquisitionConfig(
        factor=factor, quick=True, quick_psf_sigma=0.0, quick_noise_sigma=0.0
    )
    lr = simulate_acquisition(hr, config).array
    np.testing.assert_allclose(lr, _block_mean(array.astype(np.float64), factor), rtol=1e-5)


def test_progress_reports_and_does_not_change_the_result(monkeypatch, caplog):
    """progress=True logs the slice count (log mode) and gives the same LR as progress=False."""
    monkeypatch.setenv("MICROSR_PROGRESS", "log")
    hr = _disk_volume((2, 20, 20), (9.5, 9.5), 6.0)
    with caplog.at_level("INFO"):
        lr = simulate_acquisition(hr, AcquisitionConfig(), progress=True)
    assert any("simulate LR: 1/1 slice" in r.getMessage() for r in caplog.records)
    quiet = simulate_acquisition(hr, AcquisitionConfig(), progress=False)
    np.testing.assert_array_equal(lr.array, quiet.array)
    assert lr.shape == (1, 10, 10)


@pytest.mark.parametrize(
    "options",
    [
        {"factor": 0},
        {"projections_ratio": 0.0},
        {"photons": -1.0},
        {"frames": 0},
        {"filter_name": "bogus"},
        {"quick_noise_sigma": -1.0},
    ],
)
def test_bad_config_raises(options):
    (name,) = options
    with pytest.raises(MicrosrError, match=f"invalid AcquisitionConfig: {name} must be"):
        AcquisitionConfig(**options)


@pytest.mark.parametrize(("shape", "factor"), [((1, 20, 20), 2), ((4, 2, 20), 3), ((4, 20, 1), 2)])
@pytest.mark.parametrize("quick", [False, True])
def test_too_small_volume_raises(shape, factor, quick):
    hr = Volume(array=np.zeros(shape, dtype=np.float32), spacing_mm=(0.01,) * 3)
    with pytest.raises(MicrosrError, match="too small"):
        simulate_acquisition(hr, AcquisitionConfig(factor=factor, quick=quick))
