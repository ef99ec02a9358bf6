"""predict acts on each input's voxel size (issue 19): per-axis factors, warnings, refusals."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from conftest import loaded_model, make_pair

from microsr.checkpoint import new_meta, parse_checkpoint, save_checkpoint
from microsr.data.normalize import NormalizationConfig
from microsr.errors import MicrosrError
from microsr.evaluation.stacks import volume_stacks
from microsr.inference.predict import predict_volume
from microsr.inference.runner import PredictOptions
from microsr.inference.scale import plan_scale
from microsr.models.factory import ModelConfig, build_model
from microsr.pairing.upsample import upsample_bilinear
from microsr.volume import Volume

#: A model trained on 0.02 mm isotropic LR voxels for a 0.01 mm isotropic HR target.
TRAINED = ((0.02, 0.02, 0.02), (0.01, 0.01, 0.01))


class Centre(torch.nn.Module):
    """Identity on the centre channel (logits of the [0, 1] image): SR = the upsampled LR."""

    def forward(self, x):
        c = x[:, x.shape[1] // 2 : x.shape[1] // 2 + 1].clamp(1e-4, 1 - 1e-4)
        return torch.log(c / (1 - c))


def _hr(shape=(6, 18, 22)) -> Volume:
    rng = np.random.default_rng(0)
    return Volume((rng.random(shape) * 900 + 50).astype(np.float32), (0.01,) * 3)


def _anisotropic_lr(hr: Volume) -> Volume:
    """HR averaged 2 x 2 in-plane only: 0.02 mm pixels, slices already at HR's 0.01 mm."""
    z, y, x = hr.shape
    arr = hr.array.reshape(z, y // 2, 2, x // 2, 2).mean(axis=(2, 4)).astype(np.float32)
    return Volume(arr, (0.01, 0.02, 0.02), (0.0, 0.005, 0.005))


@pytest.mark.parametrize("spacings", [TRAINED, None], ids=["recorded", "old checkpoint"])
def test_anisotropic_lr_gives_sr_on_the_hr_grid(spacings, caplog):
    hr = _hr()
    lr = _anisotropic_lr(hr)
    loaded = loaded_model(Centre(), spacings=spacings)
    with caplog.at_level(logging.INFO, logger="microsr"):
        sr = predict_volume(loaded, lr, progress=False)
    assert sr.shape == hr.shape  # z keeps its slices: 6, not 12
    assert sr.spacing_mm == pytest.approx(hr.spacing_mm)
    assert sr.origin_mm == pytest.approx(hr.origin_mm)
    if spacings is None:
        assert "records no training voxel size; assumed" in caplog.text
    else:  # the z voxel is half the training LR's: the model's scale differs, with numbers
        assert "z 0.01 vs 0.02 mm (-50 %)" in caplog.text
    # the identity model returns each LR slice upsampled in-plane only (no z mixing)
    np.testing.assert_allclose(sr.array, upsample_bilinear(lr.array, factor=2), atol=0.5)


def test_isotropic_lr_is_upsampled_on_every_axis():
    lr, hr = make_pair(0, shape=(8, 36, 36))
    sr = predict_volume(loaded_model(Centre(), spacings=TRAINED), lr, progress=False)
    assert sr.shape == hr.shape and sr.spacing_mm == pytest.approx(hr.spacing_mm)
    assert sr.origin_mm == pytest.approx(hr.origin_mm)


def test_hr_scan_given_as_lr_is_refused_unless_forced():
    _, hr = make_pair(0, shape=(4, 12, 12))
    loaded = loaded_model(Centre(), spacings=TRAINED)
    with pytest.raises(MicrosrError, match=r"already at or finer than the model's HR target"):
        predict_volume(loaded, hr, progress=False)
    sr = predict_volume(loaded, hr, options=PredictOptions(force=True), progress=False)
    assert sr.shape == (8, 24, 24)  # the trained factors, as asked


def test_refusal_names_keep_factors():
    _, hr = make_pair(0, shape=(4, 12, 12))
    with pytest.raises(MicrosrError, match="--keep-factors"):
        predict_volume(loaded_model(Centre(), spacings=TRAINED), hr, progress=False)


@pytest.mark.parametrize("scale", [3.0, 0.5], ids=["3x coarser", "finer than HR target"])
def test_keep_factors_upsamples_by_the_trained_factors_on_the_input_grid(scale, caplog):
    # trained 0.02 -> 0.01 mm (factor 2); an input at scale x the training LR voxel
    spacing = 0.02 * scale
    lr = Volume(np.full((4, 10, 10), 500, np.float32), (spacing,) * 3)
    loaded = loaded_model(Centre(), spacings=TRAINED)
    with caplog.at_level(logging.WARNING, logger="microsr"):
        sr = predict_volume(loaded, lr, options=PredictOptions(keep_factors=True), progress=False)
    assert sr.shape == (8, 20, 20)
    assert sr.spacing_mm == pytest.approx((spacing / 2,) * 3)  # input spacing / factor
    assert "physical scale differs from training" in caplog.text
    assert f"SR voxel ({spacing / 2:.4g}, " in caplog.text
    np.testing.assert_allclose(sr.array, 500, atol=0.5)  # the identity model, unchanged


def test_without_keep_factors_the_hr_target_rule_holds():
    meta = loaded_model(Centre(), spacings=TRAINED).meta
    coarse = (0.06, 0.06, 0.06)  # 3x the training LR voxel
    assert plan_scale(coarse, meta, z_grid="hr").factors == (6, 6, 6)  # -> 0.01 mm
    assert plan_scale(coarse, meta, z_grid="hr", keep_factors=True).factors == (2, 2, 2)
    assert plan_scale(coarse, meta, z_grid="lr", keep_factors=True).factors == (1, 2, 2)


def test_keep_factors_at_the_training_scale_does_not_warn_about_transfer(caplog):
    meta = loaded_model(Centre(), spacings=TRAINED).meta
    with caplog.at_level(logging.WARNING, logger="microsr"):
        plan = plan_scale((0.02, 0.02, 0.02), meta, z_grid="hr", keep_factors=True)
    assert plan.factors == (2, 2, 2) and caplog.text == ""


def test_voxel_more_than_10_percent_off_warns_with_numbers(caplog):
    meta = loaded_model(Centre(), spacings=TRAINED).meta
    with caplog.at_level(logging.WARNING, logger="microsr"):
        plan = plan_scale((0.0215, 0.0215, 0.0215), meta, z_grid="hr")  # +7.5 %: quiet
    assert plan.factors == (2, 2, 2) and caplog.text == ""
    with caplog.at_level(logging.WARNING, logger="microsr"):
        plan = plan_scale((0.023, 0.023, 0.023), meta, z_grid="hr")  # +15 %
    assert plan.factors == (2, 2, 2)
    assert "x 0.023 vs 0.02 mm (+15 %)" in caplog.text
    # a coarser scan gets the factor that reaches the HR target: 0.04 / 0.01 = 4
    assert plan_scale((0.04, 0.04, 0.04), meta, z_grid="hr").factors == (4, 4, 4)
    assert plan_scale((0.04, 0.02, 0.02), meta, z_grid="lr").factors == (1, 2, 2)


def test_in_plane_factors_that_differ_are_refused():
    meta = loaded_model(Centre(), spacings=TRAINED).meta
    with pytest.raises(MicrosrError, match="square pixels"):
        plan_scale((0.02, 0.02, 0.03), meta, z_grid="hr")


def test_checkpoint_records_training_voxel_sizes(tmp_path):
    cfg = ModelConfig(width=4, depth=1)
    norm = NormalizationConfig(mode="window", low=0, high=1000)
    meta = new_meta(
        cfg, factor=2, normalization=norm, lr_spacing_mm=TRAINED[0], hr_spacing_mm=TRAINED[1]
    )
    back, _ = parse_checkpoint(save_checkpoint(tmp_path / "m.ckpt", build_model(cfg), meta))
    assert back.lr_spacing_mm == TRAINED[0] and back.hr_spacing_mm == TRAINED[1]


def test_training_spacings_are_the_median_of_the_specimens():
    from microsr.data.prepare import training_spacings

    info = {
        "specimens": {
            "a": {"lr_spacing_mm": [0.02, 0.02, 0.02], "hr_spacing_mm": [0.01] * 3},
            "b": {"lr_spacing_mm": [0.04, 0.02, 0.02], "hr_spacing_mm": [0.01] * 3},
            "c": {"lr_spacing_mm": [0.02, 0.02, 0.02], "hr_spacing_mm": [0.01] * 3},
        }
    }
    assert training_spacings(info) == {
        "lr_spacing_mm": [0.02, 0.02, 0.02],
        "hr_spacing_mm": [0.01, 0.01, 0.01],
    }
    assert training_spacings({"specimens": {"a": {}}}) == {}
    # pooled sources at two physical scales (e.g. 19.5 and 51.3 um HR): no one HR target
    info["specimens"]["c"]["hr_spacing_mm"] = [0.0255] * 3
    assert training_spacings(info) == {}
    # a checkpoint counts its training specimens only: a held-out test specimen of another
    # scale does not erase the HR target
    assert training_spacings(info, ["a", "b"])["hr_spacing_mm"] == [0.01] * 3
    assert training_spacings(info, ["b"])["lr_spacing_mm"] == [0.04, 0.02, 0.02]
    assert training_spacings(info, ["not-in-the-dataset"]) == {}  # not every specimen instead


def test_evaluate_checks_that_sr_covers_the_hr_box():
    lr, hr = make_pair(0, shape=(8, 36, 36))
    sr_ok = Volume(hr.array.copy(), hr.spacing_mm, hr.origin_mm)
    assert volume_stacks(hr, lr, sr_ok, name="s").has_sr
    sr_small = Volume(hr.array[:, :30, :].copy(), hr.spacing_mm, hr.origin_mm)
    with pytest.raises(MicrosrError, match="SR and HR extents disagree along y"):
        volume_stacks(hr, lr, sr_small, name="s")


def test_a_pair_whose_lr_is_not_coarser_is_refused():
    _, hr = make_pair(0, shape=(8, 36, 36))
    with pytest.raises(MicrosrError, match="not coarser than the HR voxel"):
        volume_stacks(hr, hr, name="s")
    # an anisotropic LR (z already at HR spacing) is a valid pair
    stacks = volume_stacks(hr, _anisotropic_lr(_hr((8, 36, 36))), name="s")
    assert len(stacks.hr_slice) == 8


def test_cli_predict_keep_factors_transfers_across_scales(tmp_path):
    """``predict --keep-factors``: an input at 3x the training LR voxel -> input voxel / 2."""
    from conftest import save_model
    from typer.testing import CliRunner

    from microsr.cli import app
    from microsr.io import read_volume, write_volume

    path = save_model(tmp_path / "m.ckpt", ModelConfig(width=4, depth=1))
    meta, _ = parse_checkpoint(path)
    meta = meta.model_copy(update={"lr_spacing_mm": TRAINED[0], "hr_spacing_mm": TRAINED[1]})
    ckpt = save_checkpoint(tmp_path / "spaced.ckpt", build_model(meta.network), meta)
    lr = write_volume(
        Volume(np.full((4, 10, 10), 500, np.float32), (0.06,) * 3), tmp_path / "lr.mha"
    )
    runner = CliRunner()
    for flags, shape, spacing in (
        ([], (24, 60, 60), 0.01),
        (["--keep-factors"], (8, 20, 20), 0.03),
    ):
        out = tmp_path / f"sr{len(flags)}.mha"
        res = runner.invoke(app, ["predict", str(ckpt), str(lr), str(out), *flags])
        assert res.exit_code == 0, res.output
        sr = read_volume(out)
        assert sr.shape == shape and sr.spacing_mm == pytest.approx((spacing,) * 3)


@pytest.mark.parametrize("keep", [None, True])
def test_study_passes_keep_factors_to_predict(keep, monkeypatch, tmp_path):
    from microsr.data.manifest import SpecimenRow
    from microsr.study import StudyConfig
    from microsr.study import evaluate as study_evaluate

    seen = {}
    monkeypatch.setattr(study_evaluate, "predict_file", lambda *a, **k: seen.update(k))
    row = SpecimenRow("s0", "femur", tmp_path / "lr.mha", tmp_path / "hr.mha")
    config = StudyConfig(keep_factors=keep)
    study_evaluate.predict_specimen(tmp_path / "m.ckpt", row, tmp_path / "sr.mha", config)
    assert seen["options"].keep_factors is bool(keep)
    assert seen["options"].precision == "32"  # still the scoring options
    assert "keep_factors" in config.model_dump()  # recorded in study.json
