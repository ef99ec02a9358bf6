"""Total area that fits the data: whole-bone section, trabecular VOI, zeros outside a VOI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from microsr.cli import app
from microsr.errors import MicrosrError
from microsr.io import write_volume
from microsr.morphometry import (
    MorphometryConfig,
    choose_total_area,
    morphometry_volume,
    periosteal_envelope,
)
from microsr.volume import Volume

N, SIZE = 4, 120
GREY = MorphometryConfig(threshold="value", threshold_value=550, sigma_vox=0)


def _radius() -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return np.hypot(yy - 59.5, xx - 59.5)


def section() -> tuple[np.ndarray, np.ndarray]:
    """Whole-bone section: cortical ring (r 40-48) and a trabecular grid inside; disk r <= 48."""
    r = _radius()
    grid = (np.arange(SIZE) % 12 < 2)[None, :] | (np.arange(SIZE) % 12 < 2)[:, None]
    bone = ((r <= 48) & (r > 40)) | ((r <= 40) & grid)
    return np.repeat(bone[None], N, axis=0), r <= 48


def grey(bone: np.ndarray) -> np.ndarray:
    return np.where(bone, 1000.0, 100.0).astype(np.float32)


def test_whole_bone_section_takes_the_envelope():
    bone, disk = section()
    res = morphometry_volume(Volume(grey(bone), (0.01,) * 3), GREY, features_3d=False)
    assert res.info["ta_rule"] == "envelope", res.info["ta_reason"]
    assert "cortical shell" in res.info["ta_reason"]
    np.testing.assert_allclose(res.slices["ba_ta"], bone[0].sum() / disk.sum())
    assert (res.slices["ta_rule"] == "envelope").all()


@pytest.mark.parametrize("sparse", [False, True])
def test_trabecular_voi_filling_the_field_takes_the_roi(sparse):
    rng = np.random.default_rng(1)
    if sparse:  # as the VOI: bone fraction ~0.015 in a few small pieces
        bone = np.zeros((N, SIZE, SIZE), bool)
        for y, x in rng.integers(5, SIZE - 8, (25, 2)):
            bone[:, y : y + 3, x : x + 3] = True
    else:  # a trabecular lattice through the whole field
        g = np.arange(SIZE) % 10 < 2
        bone = np.repeat((g[None, :] | g[:, None])[None], N, axis=0)
    res = morphometry_volume(Volume(grey(bone), (0.01,) * 3), GREY, features_3d=False)
    assert res.info["ta_rule"] == "roi", res.info["ta_reason"]
    np.testing.assert_allclose(res.slices["ba_ta"], bone[0].mean())
    if sparse:  # the old default, the hull of one piece: BA/TA far from the bone fraction
        env = periosteal_envelope(bone)
        assert (bone & env).sum() / env.sum() > 0.5 > 0.05 > bone[0].mean()


def test_zeros_outside_a_contour_take_the_nonzero_voxels():
    rng = np.random.default_rng(2)
    inside = _radius() <= 45
    image = rng.normal(400, 250, (N, SIZE, SIZE)).astype(np.float32)
    image[image == 0] = 1.0
    image[:, ~inside] = 0.0
    res = morphometry_volume(Volume(image, (0.01,) * 3), GREY, features_3d=False)
    assert res.info["ta_rule"] == "nonzero", res.info["ta_reason"]
    bone = image >= 550
    np.testing.assert_allclose(res.slices["ba_ta"], bone.sum((1, 2)) / inside.sum())


def test_a_given_mask_wins_and_shapes_are_checked():
    bone, _ = section()
    roi = np.zeros_like(bone)
    roi[:, 10:50, 10:50] = True
    ta = choose_total_area(bone, MorphometryConfig(), roi)
    assert ta.rule == "mask" and (ta.mask == roi).all()
    with pytest.raises(
        MicrosrError, match=r"\(4, 120, 120\).*\(4, 10, 10\)|\(4, 10, 10\).*\(4, 120, 120\)"
    ):
        choose_total_area(bone, MorphometryConfig(), np.ones((4, 10, 10), bool))
    with pytest.raises(MicrosrError, match="needs the image"):
        choose_total_area(bone, MorphometryConfig(ta="nonzero"))
    explicit = choose_total_area(bone, MorphometryConfig(ta="envelope"), roi)
    assert explicit.rule == "envelope" and not (explicit.mask & ~roi).any()


def test_cli_morphometry_records_the_ta_rule(tmp_path):
    bone, _ = section()
    path = write_volume(Volume(grey(bone), (0.01,) * 3), tmp_path / "v.mha")
    out = tmp_path / "m"
    res = CliRunner().invoke(
        app, ["morphometry", str(path), str(out), "--threshold", "550", "--sigma", "0", "--no-3d"]
    )
    assert res.exit_code == 0, res.output
    assert "TA: envelope" in res.output
    meta = json.loads((out / "volume.json").read_text())
    assert meta["ta_rule"] == "envelope" and meta["ta_reason"]
    assert (pd.read_csv(out / "slices.csv")["ta_rule"] == "envelope").all()
    bad = CliRunner().invoke(app, ["morphometry", str(path), str(tmp_path / "n"), "--ta", "hull"])
    assert bad.exit_code != 0 and "hull" in bad.output


def test_marrow_clipped_to_zero_is_not_a_voi_contour():
    # a display window that clipped marrow to 0: zeros everywhere, but no single contour
    bone = np.zeros((N, SIZE, SIZE), bool)
    for y, x in np.random.default_rng(3).integers(5, SIZE - 8, (25, 2)):
        bone[:, y : y + 3, x : x + 3] = True
    image = np.where(bone, 255.0, 0.0).astype(np.float32)
    ta = choose_total_area(bone, MorphometryConfig(), image=image)
    assert ta.rule == "roi" and "no zero-padded contour" in ta.reason


@pytest.mark.parametrize("site", ["femur", "spine"])
def test_phantom_sections_take_the_envelope_even_with_a_broken_thin_cortex(site):
    from microsr.simulate import make_phantom

    vol, mask = make_phantom((6, 160, 160), site=site, seed=0, return_mask=True)
    res = morphometry_volume(vol, MorphometryConfig(), features_3d=False)
    assert res.info["ta_rule"] == "envelope", res.info["ta_reason"]
    # the phantom's bone fraction inside its true envelope (cortex included)
    truth = np.mean([m.sum() / ndimage.binary_fill_holes(m).sum() for m in mask])
    assert res.slices["ba_ta"].mean() == pytest.approx(truth, abs=0.05)
