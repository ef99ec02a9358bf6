"""Morphometry: analytic bone fractions, thresholds, envelope, itk BV/TV, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from microsr.cli import app
from microsr.errors import MicrosrError
from microsr.io import write_volume
from microsr.morphometry import (
    MorphometryConfig,
    bone_area_fraction,
    bone_features_3d,
    morphometry_volume,
    periosteal_envelope,
    resolve_threshold,
    segment,
)
from microsr.volume import Calibration, Volume

MGHA = Calibration(1.0, 0.0, "mg HA/cm3")


def stripes(shape=(3, 41, 37), period=5, width=2, *, bone=1000.0, marrow=100.0):
    """Vertical stripes: ``width`` of every ``period`` columns are bone (known fraction)."""
    arr = np.full(shape, marrow, np.float32)
    cols = np.arange(shape[2]) % period < width
    arr[:, :, cols] = bone
    return arr, cols.mean()


def test_known_bone_fraction_without_smoothing():
    arr, frac = stripes()
    vol = Volume(arr, (0.01,) * 3, calibration=MGHA)
    res = morphometry_volume(vol, MorphometryConfig(sigma_vox=0, ta="roi"), features_3d=False)
    assert list(res.slices.columns[:4]) == ["slice", "ba", "ta", "ba_ta"]
    np.testing.assert_allclose(res.slices["ba_ta"], frac)
    assert (res.slices["ta"] == 41 * 37).all()


def test_smoothing_keeps_fraction_of_symmetric_stripes():
    # A stripe pattern 0/1 with 50 % duty and threshold at the midpoint: a symmetric
    # blur moves no edge, so the fraction is exactly the duty cycle.
    arr, frac = stripes((2, 21, 40), period=8, width=4, bone=900.0, marrow=100.0)
    bone = segment(arr, resolve_threshold(arr, MorphometryConfig()), calibration=MGHA)
    # the end columns are replicated ("nearest"), not wrapped: compare the interior
    np.testing.assert_allclose(bone[:, :, 4:-4].mean(), frac)


def test_mgha_threshold_needs_calibration():
    arr, _ = stripes()
    with pytest.raises(MicrosrError, match="mg HA/cm3 needs density-calibrated"):
        morphometry_volume(Volume(arr, (0.01,) * 3), features_3d=False, name="scan.tif")


def test_calibration_is_applied():
    arr, frac = stripes()
    # stored grey values g, density = 2 g - 100: bone 1000 -> 1900, marrow 100 -> 100
    vol = Volume(arr, (0.01,) * 3, calibration=Calibration(2.0, -100.0))
    cfg = MorphometryConfig(threshold_value=1500, sigma_vox=0, ta="roi")
    res = morphometry_volume(vol, cfg, features_3d=False)
    np.testing.assert_allclose(res.slices["ba_ta"], frac)  # 1000 would be below 1500 uncalibrated


def test_other_thresholds():
    arr, frac = stripes()
    for cfg in (
        MorphometryConfig(threshold="value", threshold_value=550, sigma_vox=0, ta="roi"),
        MorphometryConfig(threshold="fraction", threshold_value=0.5, sigma_vox=0, ta="roi"),
        MorphometryConfig(threshold="otsu", sigma_vox=0, ta="roi"),
    ):
        res = morphometry_volume(Volume(arr, (0.01,) * 3), cfg, features_3d=False)
        np.testing.assert_allclose(res.slices["ba_ta"], frac)
    with pytest.raises(ValueError):
        MorphometryConfig(threshold="fraction", threshold_value=3)


def test_envelope_of_a_ring_is_the_disk():
    yy, xx = np.mgrid[:51, :45]
    r = np.hypot(yy - 25, xx - 22)
    ring = ((r <= 18) & (r > 15))[None]
    env = periosteal_envelope(ring, closing_vox=2)
    np.testing.assert_array_equal(env[0], r <= 18)
    table = bone_area_fraction(ring, env)
    assert table["ba_ta"][0] == pytest.approx(ring.sum() / (r <= 18).sum())
    empty = bone_area_fraction(np.zeros((1, 5, 5), bool), np.zeros((1, 5, 5), bool))
    assert np.isnan(empty["ba_ta"][0])


@pytest.mark.slow  # the first `import itk` of a process takes 10 s or more
def test_slice_ba_ta_equals_itk_bv_tv_on_one_slice():
    rng = np.random.default_rng(0)
    arr = rng.normal(450, 200, (1, 27, 33)).astype(np.float32)
    vol = Volume(arr, (0.02, 0.01, 0.01), calibration=MGHA)
    cfg = MorphometryConfig(ta="roi")
    res = morphometry_volume(vol, cfg)
    assert 0.1 < res.slices["ba_ta"][0] < 0.9
    assert res.features["bv_tv"] == pytest.approx(res.slices["ba_ta"][0], abs=1e-12)
    # with a mask (the envelope): BV/TV is the fraction inside it, as BA/TA
    ring = np.zeros((1, 27, 33), bool)
    ring[:, 5:20, 4:30] = True
    res = morphometry_volume(vol, cfg, mask=ring)
    assert res.features["bv_tv"] == pytest.approx(res.slices["ba_ta"][0], abs=1e-12)


@pytest.mark.slow
def test_itk_plate_model_on_plates():
    # plates 3 voxels thick every 10 voxels along x, 10 um voxels: BV/TV 0.3, Tb.N ~ 100/mm
    bone = np.zeros((9, 20, 40), bool)
    bone[:, :, np.arange(40) % 10 < 3] = True
    f = bone_features_3d(bone, (0.01, 0.01, 0.01))
    assert f["bv_tv"] == pytest.approx(0.3)
    assert f["tb_th_mm"] == pytest.approx(f["bv_tv"] / f["tb_n_per_mm"])  # plate model
    assert f["tb_sp_mm"] == pytest.approx((1 - f["bv_tv"]) / f["tb_n_per_mm"])


def test_cli_morphometry(tmp_path):
    arr, frac = stripes()
    path = write_volume(Volume(arr, (0.01,) * 3, calibration=MGHA), tmp_path / "v.mha")
    out = tmp_path / "m"
    res = CliRunner().invoke(
        app, ["morphometry", str(path), str(out), "--ta", "roi", "--sigma", "0", "--no-3d"]
    )
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "slices.csv")
    np.testing.assert_allclose(table["ba_ta"], frac)
    assert "whole ROI" in json.loads((out / "volume.json").read_text())["ta"]


def test_cli_morphometry_uncalibrated_is_a_clear_error(tmp_path):
    arr, _ = stripes()
    path = write_volume(Volume(arr, (0.01,) * 3), tmp_path / "v.mha")
    out = tmp_path / "m"
    res = CliRunner().invoke(app, ["morphometry", str(path), str(out)])
    assert res.exit_code == 2
    assert "needs density-calibrated data" in res.output
    assert not out.exists()


def test_one_density_rule():
    """``Calibration.is_density`` is the one "calibrated" rule (units in mg, slope != 0)."""
    from dataclasses import asdict

    from microsr.volume import is_density

    assert MGHA.is_density and is_density(MGHA) and is_density(asdict(MGHA))
    assert not Calibration(1.0, 0.0, "HU").is_density
    assert not Calibration(0.0, 0.0, "mg HA/cm3").is_density
    assert not is_density(None) and not is_density({})
    with pytest.raises(MicrosrError, match="needs density-calibrated"):
        resolve_threshold(Volume(np.ones((1, 4, 4), np.float32), (1.0,) * 3,
                                 calibration=Calibration(1.0, 0.0, "HU")), MorphometryConfig())  # fmt: skip


def test_smoothed_otsu_pools_chunks_and_matches_skimage():
    """One Otsu kernel: chunks pooled = the whole stack; = skimage's Otsu of the smoothed voxels."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    from microsr.morphometry.segment import smoothed_otsu

    arr = np.random.default_rng(0).normal(size=(5, 17, 13)).astype(np.float32)
    arr[:, 5:12] += 4
    ref = threshold_otsu(ndimage.gaussian_filter(arr, (0, 1.2, 1.2), mode="nearest"))
    assert smoothed_otsu([arr], 1.2) == pytest.approx(ref, rel=1e-6)
    assert smoothed_otsu([arr[:2], arr[2:]], 1.2) == pytest.approx(ref, rel=1e-6)
    assert resolve_threshold(arr, MorphometryConfig(threshold="otsu")).value == pytest.approx(ref)
    with pytest.raises(MicrosrError, match="constant"):
        smoothed_otsu([np.ones((2, 4, 4))], 1.0)
    with pytest.raises(MicrosrError, match="empty"):
        smoothed_otsu([], 1.0)
