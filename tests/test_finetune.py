"""``train --init CKPT``: fine-tuning starts from a checkpoint and keeps what must not change."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import save_model
from typer.testing import CliRunner

from microsr.calibration import WindowUnits
from microsr.checkpoint import parse_checkpoint, read_checkpoint
from microsr.cli import app
from microsr.data.normalize import NormalizationConfig
from microsr.data.prepare import PrepareConfig, prepare_dataset
from microsr.errors import MicrosrError
from microsr.inference.checkpoint import load_checkpoint
from microsr.models.factory import ModelConfig
from microsr.training.config import TrainConfig
from microsr.training.finetune import sha256_file
from microsr.training.train import train

runner = CliRunner()
SOURCE = TrainConfig(
    model=ModelConfig(name="unet_residual", width=4, depth=2, in_channels=3),
    epochs=1,
    batch_size=4,
    patch=16,
    seed=3,
    device="cpu",
    val_max_slices=2,
)


@pytest.fixture
def trained(pair_manifest, tmp_path):
    """A dataset and a model trained on it for one epoch (BatchNorm statistics updated)."""
    ds = prepare_dataset(pair_manifest, tmp_path / "ds", PrepareConfig(roi=24), progress=False)
    result = train(ds, tmp_path / "src", SOURCE, progress=False)
    return ds, result.best


def test_zero_learning_rate_leaves_the_model_exactly_unchanged(trained, tmp_path):
    ds, source = trained
    args = ["train", str(ds), str(tmp_path / "ft"), "--init", str(source), "--learning-rate",
            "0", "--epochs", "2", "--batch-size", "4", "--patch", "16", "--device", "cpu",
            "--seed", "9"]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    meta0, state0 = parse_checkpoint(source)
    for name in ("best.ckpt", "last.ckpt"):
        meta1, state1 = parse_checkpoint(tmp_path / "ft" / name)
        assert state0.keys() == state1.keys()
        assert all(torch.equal(state0[k], state1[k]) for k in state0), name
    assert meta1.network == meta0.network and meta1.normalization == meta0.normalization
    assert meta1.provenance["init"] == {
        "path": str(source.resolve()),
        "sha256": sha256_file(source),
    }
    assert meta1.train_config["init"] == str(source) and meta1.train_config["lr"] == 0
    ckpt = read_checkpoint(tmp_path / "ft" / "last.ckpt")
    assert ckpt["epoch"] == 1  # the epoch counter started at 0: two epochs run
    x = torch.rand(2, 3, 24, 24)
    with torch.no_grad():
        a = load_checkpoint(source).model(x)
        b = load_checkpoint(tmp_path / "ft" / "best.ckpt").model(x)
    assert torch.equal(a, b)


def test_finetuning_learns_and_keeps_the_checkpoint_normalisation(trained, pair_manifest, tmp_path):
    _, source = trained
    window = PrepareConfig(roi=24, window=(50.0, 1050.0))  # refitted windows would differ
    other = prepare_dataset(pair_manifest, tmp_path / "ds2", window, progress=False)
    cfg = SOURCE.model_copy(update={"init": str(source), "epochs": 1, "lr": 1e-2})
    result = train(other, tmp_path / "ft", cfg, progress=False)
    meta0, state0 = parse_checkpoint(source)
    meta1, state1 = parse_checkpoint(result.last)
    assert meta1.normalization == meta0.normalization  # not the dataset's 50..1050
    changed = [k for k in state0 if not torch.equal(state0[k], state1[k])]
    assert changed and all("running" not in k and "num_batches" not in k for k in changed)


def test_a_network_that_is_not_the_checkpoints_is_refused(trained, tmp_path):
    ds, source = trained
    wider = SOURCE.model_copy(
        update={"init": str(source), "model": SOURCE.model.model_copy(update={"width": 8})}
    )
    with pytest.raises(MicrosrError, match=r"width 4.*builds a unet_residual \(width 8"):
        train(ds, tmp_path / "ft", wider, progress=False)
    assert not (tmp_path / "ft").exists()
    res = runner.invoke(app, ["train", str(ds), str(tmp_path / "ft"), "--init", str(source),
                              "--width", "4", "--context", "1", "--epochs", "1", "--patch", "16",
                              "--device", "cpu"])  # fmt: skip
    assert res.exit_code == 0, res.output  # explicit options that agree are accepted


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"factor": 3}, "scale factors"),
        ({"normalization": {"mode": "window", "low": 5000.0, "high": 9000.0}}, "intensities"),
        ({"normalization": {"mode": "minmax"}}, "normalised by window"),
        ({"units": {"kind": "mgha"}}, "trained on mg HA/cm3.*--units mgha"),
        # a checkpoint from before units had one record: the dataset's units in provenance
        ({"units": None, "provenance": {"units": "mgha"}}, "trained on mg HA/cm3.*--units mgha"),
    ],
)
def test_a_dataset_that_does_not_fit_the_checkpoint_is_refused(trained, tmp_path, change, match):
    ds, source = trained
    raw = torch.load(source, weights_only=True)
    raw["microsr"].update(change)
    torch.save(raw, tmp_path / "other.ckpt")
    cfg = SOURCE.model_copy(update={"init": str(tmp_path / "other.ckpt")})
    with pytest.raises(MicrosrError, match=match):
        train(ds, tmp_path / "ft", cfg, progress=False)
    assert not (tmp_path / "ft").exists()


def test_checkpoints_record_units_and_acquisition_file(trained):
    ds, source = trained
    meta, _ = parse_checkpoint(source)
    assert meta.provenance == {"acquisition_file": None, "init": None}  # units: one record
    assert meta.units == WindowUnits(kind="grey")  # the test scans carry no calibration
    info = json.loads((ds / "dataset.json").read_text())
    assert info["config"]["simulation"]["acquisition_file"] is None


def test_cli_refuses_conflicting_network_options(tmp_path, pair_manifest):
    ds = prepare_dataset(pair_manifest, tmp_path / "ds", PrepareConfig(roi=24), progress=False)
    norm = NormalizationConfig(mode="window", low=0, high=1000)
    ckpt = save_model(tmp_path / "m.ckpt", ModelConfig(width=4, depth=1), normalization=norm)
    for extra, match in ((["--model", "rcan"], "--model"), (["--context", "2"], "--context"),
                         (["--width", "8", "--depth", "1"], "--width")):  # fmt: skip
        res = runner.invoke(app, ["train", str(ds), str(tmp_path / "ft"), "--init", str(ckpt),
                                  *extra])  # fmt: skip
        assert res.exit_code == 2 and match in res.output and "unet (width 4" in res.output
        assert not (tmp_path / "ft").exists()
