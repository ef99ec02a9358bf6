"""Simulator in physical units, optional effects and randomised acquisitions (analytic checks)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from microsr.errors import InputFileError, MicrosrError
from microsr.simulate import (
    AcquisitionConfig,
    AcquisitionRanges,
    draw_acquisition,
    draw_record,
    load_ranges,
    resolve_attenuation,
    simulate_acquisition,
)
from microsr.simulate.effects import shift_volume
from microsr.volume import Calibration, Volume

NOISE_FREE = {"photons": float("inf")}


def _disk(shape, centre, radius, value=1000.0):
    _, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    inside = (y - centre[0]) ** 2 + (x - centre[1]) ** 2 <= radius**2
    array = np.broadcast_to(np.where(inside, value, 0.0), shape).astype(np.float32)
    return Volume(array=array.copy(), spacing_mm=(0.01,) * 3)


def _bone_scan_mgha():
    """(4, 96, 96) mg HA/cm3: air 0, marrow 100 (r < 30), cortex 1000 (30 <= r < 40)."""
    _, y, x = np.ogrid[:4, :96, :96]
    r = np.hypot(y - 47.5, x - 47.5)
    rho = np.where(r < 30, 100.0, np.where(r < 40, 1000.0, 0.0))
    return np.broadcast_to(rho, (4, 96, 96)).astype(np.float32), r


def _cnr(lr: np.ndarray) -> float:
    """Cortex-marrow contrast over the marrow noise, on the LR grid (r in LR pixels)."""
    _, y, x = np.ogrid[: lr.shape[0], : lr.shape[1], : lr.shape[2]]
    r = np.broadcast_to(np.hypot(y - 23.75, x - 23.75), lr.shape)
    cortex, marrow = (r > 16) & (r < 18.5), r < 12
    return float((lr[cortex].mean() - lr[marrow].mean()) / lr[marrow].std())


# ------------------------------------------------------------------ physical units


def test_same_scan_in_any_units_has_the_same_cnr():
    rho, _ = _bone_scan_mgha()
    scans = {
        "mgha": Volume(rho, (0.01,) * 3, calibration=Calibration(1.0, 0.0)),
        "uint8": Volume(np.round(rho * 0.2).astype(np.uint8), (0.01,) * 3),
        "uint16": Volume(np.round(rho * 40.0).astype(np.uint16), (0.01,) * 3),
    }
    config = AcquisitionConfig(photons=2000.0, seed=3)
    cnr, rules = {}, {}
    for name, hr in scans.items():
        lr = simulate_acquisition(hr, config)
        cnr[name] = _cnr(lr.array)
        rules[name] = lr.metadata["acquisition_resolved"]["attenuation"]
    assert cnr["mgha"] > 3.0
    for name in ("uint8", "uint16"):
        assert abs(cnr[name] / cnr["mgha"] - 1.0) < 0.10, cnr
    assert rules["mgha"]["rule"] == "density" and rules["mgha"]["reference_value"] == 1000.0
    assert rules["uint8"] == pytest.approx(
        {"rule": "percentile", "reference_value": 200.0, "slope": 0.5 / 200, "intercept": 0.0}
    )
    # the old fixed reference of 1000 grey values makes 8-bit data nearly transparent
    old = simulate_acquisition(scans["uint8"], config.model_copy(update={"reference_value": 1e3}))
    assert _cnr(old.array) < 0.5 * cnr["uint8"]


def test_scanco_native_values_use_their_own_attenuation():
    cal = Calibration(slope=0.3, intercept=-250.0, mu_scaling=8192.0, mu_water=0.24)
    hr = Volume(np.full((2, 8, 8), 8192.0 * 5.0, np.float32), (0.01,) * 3, calibration=cal)
    att = resolve_attenuation(hr, AcquisitionConfig())
    assert att.rule == "scanco_mu"
    assert att.to_mu(np.array([8192.0 * 5.0]))[0] == pytest.approx(0.5)  # 5 /cm = 0.5 /mm
    explicit = resolve_attenuation(hr, AcquisitionConfig(reference_value=100.0))
    assert explicit.rule == "explicit" and explicit.slope == pytest.approx(0.5 / 100.0)


def test_density_calibration_with_intercept_maps_air_to_zero_attenuation():
    cal = Calibration(slope=2.0, intercept=-100.0)  # density = 2 v - 100
    hr = Volume(np.zeros((2, 8, 8), np.float32), (0.01,) * 3, calibration=cal)
    att = resolve_attenuation(hr, AcquisitionConfig(mu_bone_per_mm=0.4))
    assert att.reference_value == pytest.approx(550.0)  # 2 * 550 - 100 = 1000
    np.testing.assert_allclose(att.to_mu(np.array([550.0, 50.0, 0.0])), [0.4, 0.0, 0.0])


@pytest.mark.parametrize(
    ("array", "calibration", "match"),
    [
        (np.full((2, 8, 8), 7.0), None, "constant"),
        (-np.arange(128.0).reshape(2, 8, 8), None, "not positive"),
        (np.arange(128.0).reshape(2, 8, 8), Calibration(-1.0, 0.0), "contradictory"),
        (np.arange(128.0).reshape(2, 8, 8), Calibration(0.0, 0.0), "contradictory"),
        (np.arange(128.0).reshape(2, 8, 8), Calibration(1.0, 0.0, mu_scaling=-4.0), "MuScaling"),
    ],
)
def test_auto_reference_bad_volumes_are_clear_errors(array, calibration, match):
    hr = Volume(array.astype(np.float32), (0.01,) * 3, calibration=calibration)
    with pytest.raises(MicrosrError, match=match):
        simulate_acquisition(hr, AcquisitionConfig(factor=2))


def test_explicit_reference_still_works_on_a_constant_volume():
    hr = Volume(np.full((2, 16, 16), 7.0, np.float32), (0.01,) * 3)
    lr = simulate_acquisition(hr, AcquisitionConfig(reference_value=7.0, quick=True))
    assert lr.metadata["acquisition_resolved"]["attenuation"]["rule"] == "explicit"


# ------------------------------------------------------------------ effects


def _edge_variance(img: np.ndarray) -> float:
    """Second moment (LR px^2) of the derivative of the right edge, central rows."""
    row = img[img.shape[0] // 2 - 1 : img.shape[0] // 2 + 1].mean(0)
    d = -np.diff(row)[33:47]
    x = np.arange(33, 47) + 0.5
    m = (d * x).sum() / d.sum()
    return float((d * (x - m) ** 2).sum() / d.sum())


@pytest.mark.parametrize("sigma", [0.75, 1.5])
def test_detector_psf_widens_an_edge_by_its_sigma(sigma):
    hr = _disk((2, 96, 96), (47.5, 47.5), 30.0)
    # weak attenuation: transmission linear in mu, so the PSF is exactly an in-plane blur
    base = {**NOISE_FREE, "projections_ratio": 1.0, "mu_bone_per_mm": 0.02}
    sharp = simulate_acquisition(hr, AcquisitionConfig(**base)).array[0]
    blurred = simulate_acquisition(hr, AcquisitionConfig(**base, psf_sigma_bins=sigma)).array[0]
    widening = _edge_variance(blurred) - _edge_variance(sharp)
    assert widening == pytest.approx(sigma**2, rel=0.1)
    # same as blurring the object in-plane by sigma LR pixels = 2 sigma HR pixels
    pre = hr.with_array(ndimage.gaussian_filter(hr.array, (0, 2 * sigma, 2 * sigma)))
    reference = simulate_acquisition(pre, AcquisitionConfig(**base)).array[0]
    assert np.abs(reference - blurred).max() < 0.01 * 1000


def test_ring_artefacts_are_centred_on_the_rotation_axis():
    empty = Volume(np.zeros((2, 66, 66), np.float32), (0.01,) * 3)
    config = AcquisitionConfig(**NOISE_FREE, reference_value=1000.0, ring_strength=0.01)
    image = simulate_acquisition(empty, config).array[0]  # LR 33 x 33, axis at pixel (16, 16)
    assert image.std() > 10.0
    # a sinogram offset constant over 180 degrees back-projects to half-rings: the image
    # plus its point reflection through the axis is rotationally symmetric about the axis
    pair = image + np.rot90(image, 2)
    assert np.abs(pair - np.rot90(pair)).max() < 1e-3 * np.abs(pair).max()
    off_axis = np.roll(pair, 3, axis=1)
    assert np.abs(off_axis - np.rot90(off_axis)).max() > 0.1 * np.abs(pair).max()
    clean = simulate_acquisition(empty, config.model_copy(update={"ring_strength": 0.0}))
    assert np.abs(clean.array).max() == 0.0


def test_rings_do_not_change_the_noise_stream():
    hr = _disk((2, 40, 40), (19.5, 19.5), 12.0)
    a = simulate_acquisition(hr, AcquisitionConfig(photons=500.0, seed=2)).array
    b = simulate_acquisition(hr, AcquisitionConfig(photons=500.0, seed=2, ring_strength=1e-9))
    np.testing.assert_allclose(a, b.array, atol=1e-3)


def test_integer_shift_equals_np_roll_and_moves_the_lr_content():
    rng = np.random.default_rng(0)
    array = rng.uniform(0, 1000, size=(10, 12, 14)).astype(np.float32)
    hr = Volume(array, (0.01,) * 3)
    moved = shift_volume(hr, (1.0, -2.0, 3.0)).array
    rolled = np.roll(array, (1, -2, 3), axis=(0, 1, 2))
    np.testing.assert_allclose(moved[1:, :-2, 3:], rolled[1:, :-2, 3:], atol=1e-3)
    assert shift_volume(hr, (0.0, 0.0, 0.0)) is hr
    quick = {"quick": True, "quick_psf_sigma": 0.0, "quick_noise_sigma": 0.0}
    lr = simulate_acquisition(hr, AcquisitionConfig(**quick, shift_hr_voxels=(2.0, 2.0, -2.0)))
    plain = simulate_acquisition(hr, AcquisitionConfig(**quick)).array
    np.testing.assert_allclose(lr.array[1:, 1:, :-1], plain[:-1, :-1, 1:], rtol=1e-4)
    assert lr.origin_mm == simulate_acquisition(hr, AcquisitionConfig(**quick)).origin_mm


def test_sub_voxel_shift_moves_the_centroid():
    hr = _disk((2, 64, 64), (31.5, 31.5), 12.0)
    config = AcquisitionConfig(**NOISE_FREE, shift_hr_voxels=(0.0, 0.5, -0.75))
    lr = simulate_acquisition(hr, config).array[0]
    plain = simulate_acquisition(hr, AcquisitionConfig(**NOISE_FREE)).array[0]
    com = np.array(ndimage.center_of_mass(np.clip(lr, 0, None)))
    com0 = np.array(ndimage.center_of_mass(np.clip(plain, 0, None)))
    np.testing.assert_allclose((com - com0) * 2, [0.5, -0.75], atol=0.1)  # HR voxels


@pytest.mark.parametrize("filter_name", ["ramp", "shepp-logan", "cosine", "hamming", "hann"])
def test_every_filter_reconstructs_the_disk(filter_name):
    hr = _disk((2, 64, 64), (31.5, 31.5), 24.0)
    lr = simulate_acquisition(hr, AcquisitionConfig(**NOISE_FREE, filter_name=filter_name))
    assert abs(lr.array[0, 12:20, 12:20].mean() - 1000.0) < 40.0


@pytest.mark.parametrize(
    "options",
    [{"psf_sigma_bins": -1.0}, {"ring_strength": -0.1}, {"ring_strength": 0.7},
     {"shift_hr_voxels": (0.0, float("nan"), 0.0)}, {"reference_value": 0.0},
     {"reference_value": "median"}],
)  # fmt: skip
def test_bad_effect_options_raise(options):
    (name,) = options  # a bad type is pydantic's error, a bad value ours: both name the field
    with pytest.raises((MicrosrError, ValueError), match=name):
        AcquisitionConfig(**options)


# ------------------------------------------------------------------ randomised acquisitions


def test_draws_lie_in_range_and_are_reproducible():
    ranges = AcquisitionRanges(filters=("hann", "ramp"))
    base = AcquisitionConfig(factor=3, mu_bone_per_mm=0.3)
    draws = [draw_acquisition(ranges, base, np.random.default_rng(s)) for s in range(40)]
    for c in draws:
        assert ranges.photons[0] <= c.photons <= ranges.photons[1]
        assert ranges.frames[0] <= c.frames <= ranges.frames[1]
        assert ranges.projections_ratio[0] <= c.projections_ratio <= ranges.projections_ratio[1]
        assert c.filter_name in ("hann", "ramp")
        assert ranges.psf_sigma_bins[0] <= c.psf_sigma_bins <= ranges.psf_sigma_bins[1]
        assert all(-0.5 <= s <= 0.5 for s in c.shift_hr_voxels)
        assert 0.0 <= c.ring_strength <= ranges.ring_strength[1]
        assert c.factor == 3 and c.mu_bone_per_mm == 0.3
    assert len({c.photons for c in draws}) == 40 and {c.frames for c in draws} == {1, 2, 3, 4}
    again = draw_acquisition(ranges, base, np.random.default_rng(7))
    assert again == draws[7]
    record = json.loads(json.dumps(draw_record(again)))
    assert AcquisitionConfig(**{**base.model_dump(), **record}) == again


def test_fixed_ranges_give_the_fixed_value():
    ranges = AcquisitionRanges(photons=(800.0, 800.0), frames=(2, 2), shift_hr_voxels=(0.0, 0.0))
    c = draw_acquisition(ranges, AcquisitionConfig(), np.random.default_rng(0))
    assert c.photons == 800.0 and c.frames == 2 and c.shift_hr_voxels == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("ranges", "match"),
    [
        ({"photons": (0.0, 100.0)}, "photons must be > 0"),
        ({"photons": (2000.0, 100.0)}, "inverted"),
        ({"projections_ratio": (-0.5, 1.0)}, "projections_ratio must be > 0"),
        ({"psf_sigma_bins": (-1.0, 1.0)}, "psf_sigma_bins must be >= 0"),
        ({"frames": (0, 3)}, "frames must be >= 1"),
        ({"shift_hr_voxels": (0.5, -0.5)}, "inverted"),
        ({"ring_strength": (0.0, 0.9)}, "ring_strength must be < 0.5"),
        ({"filters": ("ramp", "bogus")}, "filters"),
        ({"filters": ()}, "filters"),
    ],
)
def test_bad_ranges_are_clear_errors(ranges, match):
    with pytest.raises(MicrosrError, match=match):
        AcquisitionRanges(**ranges)


def test_load_ranges(tmp_path):
    path = tmp_path / "ranges.json"
    path.write_text(json.dumps({"photons": [100, 200], "filters": ["hann"]}))
    assert load_ranges(path) == AcquisitionRanges(photons=(100, 200), filters=("hann",))
    for text, match in [("{", "not valid JSON"), ("[1]", "JSON object"),
                        ('{"photons": [5, 1]}', "inverted"), ('{"typo": 1}', "typo")]:  # fmt: skip
        path.write_text(text)
        with pytest.raises(InputFileError, match=match):
            load_ranges(path)
    with pytest.raises(InputFileError, match="cannot read"):
        load_ranges(tmp_path / "missing.json")


# ------------------------------------------------------------------ command line


def test_cli_simulate_randomize_and_effects(tmp_path):
    from typer.testing import CliRunner

    from microsr.cli import app
    from microsr.io import read_volume, write_volume

    runner = CliRunner()
    rho, _ = _bone_scan_mgha()
    src = write_volume(
        Volume(np.round(rho * 0.2).astype(np.uint8), (0.01,) * 3), tmp_path / "hr.mha"
    )
    (tmp_path / "ranges.json").write_text(json.dumps({"photons": [1000, 2000], "frames": [2, 3]}))
    args = ["simulate", str(src), str(tmp_path / "lr.mha"), "--randomize", "--ranges",
            str(tmp_path / "ranges.json"), "--seed", "5"]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    record = json.loads(next(line for line in res.output.splitlines() if line.startswith("{")))
    assert record["randomized"] and 1000 <= record["draw"]["photons"] <= 2000
    assert record["attenuation"]["rule"] == "percentile"
    assert read_volume(tmp_path / "lr.mha").shape == (2, 48, 48)
    res = runner.invoke(app, ["simulate", str(src), str(tmp_path / "lr2.mha"), "--filter",
                              "hann", "--psf-sigma", "0.5", "--shift", "0,0.5,0",
                              "--ring-strength", "0.001", "--reference-value", "200"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert '"explicit"' in res.output


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--reference-value", "bone"], "--reference-value"),
        (["--shift", "1,2"], "--shift"),
        (["--psf-sigma", "-1"], "psf_sigma_bins"),
        (["--filter", "box"], "filter_name"),
        (["--ranges", "r.json"], "--randomize"),
        (["--randomize", "--ranges", "{missing}"], "cannot read"),
    ],
)
def test_cli_simulate_bad_options_are_one_message(tmp_path, extra, match):
    from typer.testing import CliRunner

    from microsr.cli import app
    from microsr.io import write_volume

    src = write_volume(Volume(np.full((2, 16, 16), 5, np.uint8), (0.01,) * 3), tmp_path / "c.mha")
    extra = [e.replace("{missing}", str(tmp_path / "none.json")) for e in extra]
    res = CliRunner().invoke(app, ["simulate", str(src), str(tmp_path / "o.mha"), *extra])
    assert res.exit_code == 2 and match in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["simulate", str(src), str(tmp_path / "o.mha")])
    assert res.exit_code == 2 and "constant" in res.output
