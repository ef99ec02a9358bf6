"""A calibrated scan and a model in other units: convert, never relabel (issue 25)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from conftest import loaded_model

from microsr.calibration import WindowUnits, linear_map, units_of
from microsr.data.normalize import NormalizationConfig
from microsr.errors import MicrosrError
from microsr.inference.predict import predict_volume
from microsr.inference.runner import PredictOptions
from microsr.inference.units import plan_units
from microsr.io import read_volume, write_volume
from microsr.volume import Calibration, Volume

#: The issue's HR-pQCT header: MuScaling 8192, RescaleSlope 1662.524, intercept -398.609.
SCANCO = Calibration(1662.524 / 8192, -398.609, "mg HA/cm3", 8192.0, 0.2409)
MGHA = WindowUnits(kind="mgha")
NATIVE = units_of(SCANCO)
SPACINGS = ((0.02,) * 3, (0.01,) * 3)


class Centre(torch.nn.Module):
    """Identity on the centre channel (logits of the [0, 1] image): SR = the upsampled LR."""

    def forward(self, x):
        c = x[:, x.shape[1] // 2 : x.shape[1] // 2 + 1].clamp(1e-5, 1 - 1e-5)
        return torch.log(c / (1 - c))


def _model(units: WindowUnits | None, low: float, high: float):
    loaded = loaded_model(
        Centre(),
        normalization=NormalizationConfig(mode="window", low=low, high=high),
        spacings=SPACINGS,
    )
    return loaded.__class__(
        loaded.model, loaded.meta.model_copy(update={"units": units}), loaded.path
    )


def _trilinear(array: np.ndarray) -> np.ndarray:
    t = torch.from_numpy(np.asarray(array, np.float32))[None, None]
    return torch.nn.functional.interpolate(t, scale_factor=2, mode="trilinear")[0, 0].numpy()


def _native_scan(shape=(4, 6, 8)) -> Volume:
    """int16 native values 2000..5000: 7..616 mg HA/cm3 through SCANCO."""
    rng = np.random.default_rng(1)
    return Volume(rng.integers(2000, 5000, shape).astype(np.int16), (0.02,) * 3, (0, 0, 0), SCANCO)


def test_scanco_aim_round_trip_through_an_identity_model(tmp_path):
    lr = read_volume(write_volume(_native_scan(), tmp_path / "lr.aim"))
    density = SCANCO.apply(lr.array)
    model = _model(MGHA, -200.0, 1500.0)  # a demo-like model in mg HA/cm3
    sr = predict_volume(model, lr, progress=False)
    assert sr.calibration == lr.calibration  # the input's own units and calibration
    back = read_volume(write_volume(sr, tmp_path / "sr.aim"))
    assert back.calibration.slope == pytest.approx(SCANCO.slope, rel=1e-9)
    assert back.calibration.intercept == pytest.approx(SCANCO.intercept, rel=1e-9)
    # the densities Scanco tools (and `microsr info`) read: the input's, interpolated
    np.testing.assert_allclose(back.calibration.apply(back.array), _trilinear(density), atol=0.05)
    assert np.abs(back.array - _trilinear(lr.array)).max() < 0.5  # native values, not mg HA


def test_mgha_output_is_density_labelled_as_such(tmp_path):
    lr = _native_scan()
    opts = PredictOptions(output_units="mgha")
    sr = predict_volume(_model(MGHA, -200.0, 1500.0), lr, options=opts, progress=False)
    assert sr.calibration == Calibration(1.0, 0.0, "mg HA/cm3")
    assert sr.metadata["value_units"] == "mgha" and "scanco" not in sr.metadata
    np.testing.assert_allclose(sr.array, _trilinear(SCANCO.apply(lr.array)), atol=0.05)
    back = read_volume(write_volume(sr, tmp_path / "sr.nii.gz"))
    assert units_of(back.calibration, back.metadata) == MGHA


def test_mgha_nifti_into_a_native_scanco_model_is_converted(tmp_path):
    density = SCANCO.apply(_native_scan().array)
    lr = read_volume(
        write_volume(
            Volume(density, (0.02,) * 3, (0, 0, 0), Calibration(1.0, 0.0)), tmp_path / "lr.nii.gz"
        )
    )
    model = _model(NATIVE, 1500.0, 6000.0)  # window in native values: 0..600 lies far below
    sr = predict_volume(model, lr, progress=False)
    assert units_of(sr.calibration, sr.metadata) == MGHA  # written back in the input's units
    np.testing.assert_allclose(sr.array, _trilinear(density), atol=0.05)
    plan = plan_units(lr.calibration, lr.metadata, NATIVE)
    np.testing.assert_allclose(plan.to_model, (1 / SCANCO.slope, -SCANCO.intercept / SCANCO.slope))


def test_unreconcilable_units_are_refused_naming_both(caplog):
    grey = Volume(np.full((4, 6, 8), 300, np.float32), (0.02,) * 3)
    model = _model(MGHA, -200.0, 1500.0)
    with pytest.raises(MicrosrError, match=r"uncalibrated grey values.*mg HA/cm3.*--input-units"):
        predict_volume(model, grey, progress=False)
    for opts in (PredictOptions(input_units="mgha"), PredictOptions(input_units="model")):
        sr = predict_volume(model, grey, options=opts, progress=False)
        np.testing.assert_allclose(sr.array, 300.0, atol=0.05)
    with caplog.at_level(logging.WARNING, logger="microsr"):
        predict_volume(model, grey, options=PredictOptions(force=True), progress=False)
    assert "--force: its values are taken as the model's units" in caplog.text
    # the other way round: a calibrated scan into a grey-value model
    with pytest.raises(MicrosrError, match=r"native values .*uncalibrated grey values"):
        predict_volume(_model(WindowUnits(kind="grey"), 0, 5000), _native_scan(), progress=False)
    with pytest.raises(MicrosrError, match="--output-units mgha needs density units"):
        plan_units(None, {}, WindowUnits(kind="grey"), output_units="mgha")


def test_old_checkpoints_take_inputs_in_the_models_units(caplog):
    lr = _native_scan()
    with caplog.at_level(logging.INFO, logger="microsr"):
        sr = predict_volume(_model(None, 1500.0, 6000.0), lr, progress=False)
    assert "records no units" in caplog.text
    np.testing.assert_allclose(sr.array, _trilinear(lr.array), atol=0.2)
    assert sr.calibration == SCANCO


def test_linear_maps_between_units():
    a, b = linear_map(NATIVE, MGHA)
    assert (a, b) == pytest.approx((SCANCO.slope, SCANCO.intercept))
    assert linear_map(MGHA, MGHA) == (1.0, 0.0)
    assert linear_map(WindowUnits(kind="grey"), MGHA) is None
    assert linear_map(MGHA, WindowUnits(kind="mgha", units="mg/cm3")) is None
    other = units_of(Calibration(0.5, 10.0))  # another scanner: through density
    a, b = linear_map(NATIVE, other)
    v = np.array([2000.0, 4000.0])
    np.testing.assert_allclose(0.5 * (a * v + b) + 10.0, SCANCO.apply(v), rtol=1e-6)


def test_dataset_units_recorded_for_the_checkpoint():
    from dataclasses import asdict

    from microsr.data.prepare import dataset_units

    def info(cal, units="native"):
        record = {"calibration": asdict(cal) if cal else None, "units": units}
        return {"specimens": {"a": record, "b": record}}

    assert dataset_units(info(None)) == WindowUnits(kind="grey")
    assert dataset_units(info(Calibration(1.0, 0.0))).kind == "mgha"
    assert dataset_units(info(Calibration(1.0, 0.0), "mgha")).kind == "mgha"
    assert dataset_units(info(SCANCO)) == NATIVE
    mixed = {"specimens": {"a": info(None)["specimens"]["a"], "b": info(SCANCO)["specimens"]["b"]}}
    assert dataset_units(mixed) is None


def test_evaluate_converts_lr_and_sr_into_hr_units():
    from conftest import make_pair

    from microsr.evaluation.stacks import volume_stacks

    lr, hr = make_pair(0, shape=(8, 36, 36))  # grey values 100..1000, taken as mg HA/cm3
    hr = hr.with_array(hr.array, calibration=Calibration(1.0, 0.0))
    lr_mgha = lr.with_array(lr.array, calibration=Calibration(1.0, 0.0))
    lr_native = lr.with_array(SCANCO.invert(lr.array), calibration=SCANCO)  # same densities
    sr_native = hr.with_array(SCANCO.invert(hr.array), calibration=SCANCO)
    ref = volume_stacks(hr, lr_mgha, hr, name="s").read(0, 8, ("lr", "sr", "hr"))
    got = volume_stacks(hr, lr_native, sr_native, name="s").read(0, 8, ("lr", "sr", "hr"))
    for key in ("lr", "sr", "hr"):
        np.testing.assert_allclose(got[key], ref[key], atol=0.05)
    other = lr.with_array(lr.array, calibration=Calibration(1.0, 0.0, "mg/cm3"))
    with pytest.raises(MicrosrError, match=r"LR holds mg/cm3 and HR mg HA/cm3; these cannot"):
        volume_stacks(hr, other, name="s")


def test_cli_predict_of_a_scanco_aim_keeps_its_calibration(tmp_path):
    """The issue's command: a real checkpoint in mg HA/cm3 and a native AIM, then `info`."""
    import json

    from conftest import save_model
    from typer.testing import CliRunner

    from microsr.checkpoint import parse_checkpoint, save_checkpoint
    from microsr.cli import app
    from microsr.models.factory import ModelConfig, build_model

    path = save_model(tmp_path / "m.ckpt", ModelConfig(width=4, depth=1))
    meta, _ = parse_checkpoint(path)
    meta = meta.model_copy(update={"units": MGHA, "lr_spacing_mm": SPACINGS[0]})
    meta = meta.model_copy(update={"hr_spacing_mm": SPACINGS[1]})
    ckpt = save_checkpoint(tmp_path / "mgha.ckpt", build_model(meta.network), meta)
    lr = write_volume(_native_scan(), tmp_path / "lr.aim")
    runner = CliRunner()
    res = runner.invoke(app, ["predict", str(ckpt), str(lr), str(tmp_path / "sr.aim")])
    assert res.exit_code == 0, res.output
    info = json.loads(runner.invoke(app, ["info", str(tmp_path / "sr.aim"), "--json"]).output)
    assert info["scanco_header"]["RescaleSlope"] == pytest.approx(1662.524)
    low, high = info["density_range_mgha"]  # within the model's window 0..1000 mg HA/cm3
    assert -1.0 <= low < high <= 1001.0  # relabelled native values would read -399..-196


def test_declared_mgha_into_a_grey_model_is_still_refused():
    grey = WindowUnits(kind="grey")
    with pytest.raises(MicrosrError, match="input holds mg HA/cm3 and the model was trained on"):
        plan_units(None, {}, grey, input_units="mgha")
    assert plan_units(None, {}, grey, input_units="model").to_model == (1.0, 0.0)
