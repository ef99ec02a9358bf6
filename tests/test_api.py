"""The Python facade (``import microsr``): lazy, documented, and the same rules as the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import loaded_model, make_pair, save_model
from pydantic import ValidationError
from typer.testing import CliRunner

import microsr
from microsr import api
from microsr.cli import app
from microsr.errors import MicrosrError
from microsr.models.config import ModelConfig
from microsr.training.config import DEFAULT_MODEL, TrainConfig

SRC = str(Path(__file__).resolve().parents[1] / "src")
#: A model trained on 0.02 mm isotropic LR voxels for a 0.01 mm isotropic HR target.
TRAINED = ((0.02, 0.02, 0.02), (0.01, 0.01, 0.01))


class Centre(torch.nn.Module):
    """Identity on the centre channel (logits of the [0, 1] image): SR = the upsampled LR."""

    def forward(self, x):
        c = x[:, x.shape[1] // 2 : x.shape[1] // 2 + 1].clamp(1e-4, 1 - 1e-4)
        return torch.log(c / (1 - c))


def test_import_microsr_loads_no_torch_and_no_itk():
    code = (
        "import sys, microsr\n"
        "print(*(m in sys.modules for m in ('torch', 'itk', 'SimpleITK', 'microsr.api')))"
    )
    env = {"PYTHONPATH": SRC, "PATH": ""}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False"] * 4


def test_the_package_exports_the_api_and_every_function_is_documented():
    assert set(microsr._API) == {*api.__all__, *api.CONFIGS}
    assert set(microsr._API) <= set(dir(microsr))
    for name in microsr._API:
        obj = getattr(microsr, name)
        assert obj is getattr(api, name) and obj.__doc__, name
        if callable(obj) and not isinstance(obj, type):  # the facade's own functions
            assert len(obj.__doc__) > 200 and obj.__module__ == "microsr.api", name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        microsr.nope  # noqa: B018


@pytest.mark.parametrize("suffix", [".mha", ".tif", ".nii.gz"])
def test_write_then_read_keeps_spacing_origin_and_calibration(tmp_path, suffix):
    rng = np.random.default_rng(0)
    cal = microsr.Calibration(slope=2.0, intercept=-100.0)
    vol = microsr.Volume(
        rng.random((3, 5, 7)).astype(np.float32), (0.03, 0.02, 0.01), (1.0, 2.0, 3.0), cal
    )
    back = microsr.read_volume(microsr.write_volume(vol, tmp_path / f"v{suffix}"))
    np.testing.assert_array_equal(back.array, vol.array)
    assert back.spacing_mm == pytest.approx(vol.spacing_mm)
    assert back.origin_mm == pytest.approx(vol.origin_mm)
    if suffix != ".nii.gz":  # NIfTI has no calibration field
        assert (back.calibration.slope, back.calibration.intercept) == (2.0, -100.0)


def test_simulate_gives_the_lr_grid_and_takes_an_acquisition_file(tmp_path):
    from microsr.simulate import AcquisitionConfig
    from microsr.simulate.acquisition_file import write_acquisition_file

    hr = microsr.make_phantom((8, 32, 32), spacing_mm=0.01, seed=2)
    lr = microsr.simulate_acquisition(hr, seed=1)
    assert lr.shape == (4, 16, 16) and lr.spacing_mm == pytest.approx((0.02,) * 3)
    assert lr.origin_mm == pytest.approx((0.005,) * 3)  # LR centre = centre of its 2^3 HR voxels
    assert lr.calibration == hr.calibration
    file = write_acquisition_file(
        AcquisitionConfig(factor=2, quick=True, seed=9), tmp_path / "a.json"
    )
    quick = microsr.simulate_acquisition(hr, file, seed=3)
    assert quick.metadata["acquisition"]["quick"] and quick.metadata["acquisition"]["seed"] == 3
    np.testing.assert_array_equal(quick.array, microsr.simulate_acquisition(hr, file, seed=3).array)


def test_fit_acquisition_reads_files_passes_the_reference_and_writes(tmp_path, monkeypatch):
    """The wrapper only (the fit itself simulates for minutes: tests/test_fit_acquisition.py)."""
    from microsr.report import fit_figure
    from microsr.simulate import fit

    seen = {}
    monkeypatch.setattr(fit, "fit_acquisition", lambda scan, **k: seen.update(k, scan=scan) or "F")
    monkeypatch.setattr(fit_figure, "write_fit", lambda f, out, **k: seen.update(out=out, **k))
    lr, hr = make_pair(3, shape=(4, 24, 24))
    lr_path = microsr.write_volume(lr, tmp_path / "lr.tif")
    assert microsr.fit_acquisition(lr_path, hr, factor=3, seed=4, out=tmp_path / "a.json") == "F"
    assert seen["reference"] is hr and (seen["factor"], seen["seed"]) == (3, 4)
    assert seen["scan"].spacing_mm == pytest.approx(lr.spacing_mm)  # the TIFF stores it
    assert seen["out"] == tmp_path / "a.json" and seen["scan_path"] == str(lr_path)


def test_train_config_from_yaml_json_and_overrides(tmp_path):
    yaml_file = tmp_path / "t.yaml"
    yaml_file.write_text("epochs: 3\naugment: false\nval_max_slices: 2\nmodel:\n  width: 8\n")
    cfg = microsr.train_config(yaml_file, epochs=5, structure_tau=0.05)
    assert (cfg.epochs, cfg.augment, cfg.val_max_slices, cfg.structure_tau) == (5, False, 2, 0.05)
    # a partial network completes the default one, not ModelConfig's own defaults
    assert cfg.model == DEFAULT_MODEL.model_copy(update={"width": 8})
    assert microsr.train_config(yaml_file, model={"depth": 2}).model.width == 8
    assert microsr.train_config(model=ModelConfig(name="rcan")).model.name == "rcan"
    saved = tmp_path / "train_config.json"  # a run's record is a config file
    saved.write_text(cfg.model_dump_json())
    assert microsr.train_config(saved) == cfg
    with pytest.raises(ValidationError, match="structure_sigm"):
        microsr.train_config(structure_sigm=1.0)
    (tmp_path / "bad.yml").write_text("epochs: [3\n")
    with pytest.raises(MicrosrError, match="bad.yml: not valid"):
        microsr.train_config(tmp_path / "bad.yml")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(MicrosrError, match="a mapping"):
        microsr.train_config(tmp_path / "list.json")


def test_predict_keeps_the_hr_geometry_and_identity_returns_the_trilinear_lr():
    from microsr.inference.runner import PredictOptions

    rng = np.random.default_rng(0)  # inside the checkpoint's window 0..1000: no clamping
    lr = microsr.Volume((rng.random((4, 9, 11)) * 900 + 50).astype(np.float32), (0.02,) * 3,
                        (0.005,) * 3)  # fmt: skip
    fp32 = PredictOptions(precision="32")
    sr = microsr.predict(loaded_model(Centre(), spacings=TRAINED), lr, options=fp32,
                         progress=False)  # fmt: skip
    assert sr.shape == (8, 18, 22) and sr.array.dtype == np.float32
    assert sr.spacing_mm == pytest.approx((0.01,) * 3)
    assert sr.origin_mm == pytest.approx((0.0,) * 3)  # the HR voxels the LR voxel (0,0,0) covers
    # the identity network returns the LR volume interpolated onto the HR grid (trilinear)
    grid = torch.from_numpy(lr.array)[None, None]
    up = F.interpolate(grid, scale_factor=2, mode="trilinear", align_corners=False)[0, 0]
    np.testing.assert_allclose(sr.array, up.numpy(), atol=0.01)


def test_predict_file_equals_predict_and_routes_dask(tmp_path, monkeypatch):
    from microsr.inference import distributed
    from microsr.inference.runner import PredictOptions

    lr, _ = make_pair(1, shape=(6, 20, 20))
    lr_path = microsr.write_volume(lr, tmp_path / "lr.mha")
    ckpt = save_model(tmp_path / "m.ckpt", ModelConfig(width=4, depth=2))
    fp32 = PredictOptions(precision="32")
    out = microsr.predict_file(ckpt, lr_path, tmp_path / "sr.mha", device="cpu", options=fp32,
                               progress=False)  # fmt: skip
    in_memory = microsr.predict(ckpt, lr, device="cpu", options=fp32, progress=False)
    written = microsr.read_volume(out)
    np.testing.assert_allclose(written.array, in_memory.array, rtol=0, atol=1e-4)
    assert written.spacing_mm == pytest.approx(in_memory.spacing_mm)
    assert written.origin_mm == pytest.approx(in_memory.origin_mm)

    calls = []
    monkeypatch.setattr(distributed, "predict_dask", lambda *a, **k: calls.append(k) or a[2])
    zarr = tmp_path / "sr.zarr"
    assert microsr.predict_file(ckpt, lr_path, zarr, dask="local:1", device="cpu") == zarr
    assert calls[0]["config"] == distributed.DaskConfig(scheduler="local:1")
    assert calls[0]["device"] == "cpu"


def test_evaluate_sr_equal_to_hr_is_perfect():
    lr, hr = make_pair(2, shape=(8, 36, 36))
    scores = microsr.evaluate(hr, lr, hr)  # uncalibrated: bone at Otsu's threshold of HR
    slices = scores.slices
    assert np.isinf(slices["psnr_sr"]).all()
    assert slices["ssim_sr"].to_numpy() == pytest.approx(1.0)
    assert (slices["ba_ta_sr"] == slices["ba_ta_hr"]).all()
    assert np.isfinite(slices["psnr_lr"]).all()


def test_morphometry_of_a_half_bone_slab_has_ba_ta_one_half():
    from microsr.morphometry import MorphometryConfig

    arr = np.zeros((3, 20, 32), np.float32)
    arr[:, :, :16] = 1000.0  # mg HA/cm3: bone in the left half
    vol = microsr.Volume(arr, (0.01,) * 3, calibration=microsr.Calibration(1.0, 0.0))
    result = microsr.compute_morphometry(vol, MorphometryConfig(ta="roi"), features_3d=False)
    assert result.slices["ba_ta"].to_numpy() == pytest.approx(0.5)


def test_run_study_reads_a_config_file(tmp_path, monkeypatch):
    from microsr import study
    from microsr.study import demo_config

    seen = {}
    monkeypatch.setattr(study, "run_study", lambda m, o, c, **k: seen.setdefault("cfg", c))
    path = tmp_path / "study.json"
    path.write_text(demo_config(minutes=0.5).model_dump_json())
    assert microsr.run_study("m.csv", tmp_path / "out", path) == demo_config(minutes=0.5)


# -- the CLI is a layer over the same functions


def test_cli_train_takes_a_config_file_and_options_override_it(tmp_path):
    cfg = tmp_path / "t.yaml"
    cfg.write_text("epochs: 4\n")
    res = CliRunner().invoke(
        app, ["train", str(tmp_path / "ds"), str(tmp_path / "run"), "--config", str(cfg),
              "--epochs", "0"]
    )  # fmt: skip
    assert (
        res.exit_code == 2
        and "--epochs 0: Input should be greater than or equal to 1" in res.output
    )
    cfg.write_text("epochs: 0\n")
    res = CliRunner().invoke(app, ["train", "ds", str(tmp_path / "run"), "--config", str(cfg)])
    assert res.exit_code == 2 and "--epochs 0" in res.output


def test_every_train_config_field_is_an_option_with_its_description():
    from microsr.cli import pipeline

    res = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "300"})
    params = pipeline.train.__signature__.parameters
    for name, field in TrainConfig.model_fields.items():
        assert field.description, f"TrainConfig.{name} has no description (it is the --help)"
        if name not in ("model", "init"):
            assert params[name].annotation.__metadata__[0].help == field.description, name
    for option in ("--augment", "--no-augment", "--structure-tau", "--structure-sigma",
                   "--val-max-slices", "--config", "--learning-rate", "--workers"):  # fmt: skip
        assert option in res.output, option


@pytest.mark.slow
def test_cli_train_records_the_config_file_fields(tmp_path, pair_manifest):
    """``augment``, ``structure_tau``, ``structure_sigma``, ``val_max_slices``: settable now."""
    assert CliRunner().invoke(app, ["prepare", str(pair_manifest), str(tmp_path / "ds"),
                                    "--roi", "24"]).exit_code == 0  # fmt: skip
    cfg = tmp_path / "t.yaml"
    cfg.write_text(
        "epochs: 1\naugment: false\nstructure_tau: 0.05\nstructure_sigma: 0.8\n"
        "val_max_slices: 2\npatch: 16\nbatch_size: 4\ndevice: cpu\nseed: 1\n"
        "model: {width: 4, depth: 2}\n"
    )
    res = CliRunner().invoke(app, ["train", str(tmp_path / "ds"), str(tmp_path / "run"),
                                   "--config", str(cfg), "--context", "0"])  # fmt: skip
    assert res.exit_code == 0, res.output
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert {k: saved[k] for k in ("augment", "structure_tau", "structure_sigma")} == {
        "augment": False, "structure_tau": 0.05, "structure_sigma": 0.8
    }  # fmt: skip
    assert saved["val_max_slices"] == 2
    assert saved["model"] == DEFAULT_MODEL.model_copy(
        update={"width": 4, "depth": 2, "in_channels": 1}
    ).model_dump(mode="json")
