"""``microsr export``: a bioimage.io model package that bioimageio.core's own test accepts."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
from conftest import make_pair, save_model
from typer.testing import CliRunner

from microsr.cli import app
from microsr.data.normalize import NormalizationConfig
from microsr.models.factory import ModelConfig

runner = CliRunner()
pytest.importorskip("bioimageio.core")


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """A 2.5D U-Net of depth 2 with an LR window other than the HR window, exported."""
    w = tmp_path_factory.mktemp("export")
    norm = NormalizationConfig(mode="window", low=0, high=1000, lr_low=-50, lr_high=1100)
    ckpt = save_model(w / "m.ckpt", ModelConfig(width=4, depth=2, in_channels=3),
                      normalization=norm)  # fmt: skip
    res = runner.invoke(app, ["export", str(ckpt), str(w / "m.zip")])
    assert res.exit_code == 0, res.output
    return ckpt, w / "m.zip"


def test_bioimageio_core_test_model_passes(package):
    from bioimageio.core import test_model

    from microsr.inference.bioimageio_compat import patch_bioimageio_serializers

    patch_bioimageio_serializers()  # bioimageio.spec 0.5.12 under pydantic 2.14 (see module)
    summary = test_model(package[1])
    assert summary.status == "passed", summary.format()
    names = {zipfile.Path(package[1], n).name for n in zipfile.ZipFile(package[1]).namelist()}
    assert {"rdf.yaml", "weights.pt", "test_lr.npy", "test_sr.npy", "README.md"} <= names
    card = zipfile.ZipFile(package[1]).read("README.md").decode()
    assert "cannot do" in card and "LR window (-50.0, 1100.0)" in card


def test_package_equals_predict_on_the_lr_grid(package, tmp_path):
    """The traced module is `predict --z-grid lr` (fp32, BatchNorm unfolded): same numbers up
    to float rounding, the 2.5D context at the stack's ends included."""
    from microsr.inference.checkpoint import load_checkpoint
    from microsr.inference.predict import predict_volume
    from microsr.inference.runner import PredictOptions

    ckpt, zpath = package
    zipfile.ZipFile(zpath).extract("weights.pt", tmp_path)
    traced = torch.jit.load(str(tmp_path / "weights.pt"))
    lr, _ = make_pair(3, shape=(10, 32, 48))  # LR (5, 16, 24): y, x multiples of 4
    with torch.no_grad():
        sr = traced(torch.from_numpy(lr.array[None, None]))[0, 0].numpy()
    opts = PredictOptions(z_grid="lr", precision="32", fuse_bn=False, channels_last=False)
    ref = predict_volume(load_checkpoint(ckpt), lr, options=opts, progress=False).array
    assert sr.shape == ref.shape == (5, 32, 48)
    np.testing.assert_allclose(sr, ref, atol=1e-3)  # HR units (window 0..1000)


def test_untraceable_model_is_one_message_and_nothing_written(package, tmp_path, monkeypatch):
    import microsr.inference.export as export

    class Untraceable(torch.nn.Module):  # a Python branch on the size: baked in by the trace
        def forward(self, x):
            return x[:, :1] * 2 - 1 if x.shape[-1] > 70 else x[:, :1]

    real = export.load_checkpoint

    def load(path, device="cpu"):
        loaded = real(path, device=device)
        object.__setattr__(loaded, "model", Untraceable())
        return loaded

    monkeypatch.setattr(export, "load_checkpoint", load)
    res = runner.invoke(app, ["export", str(package[0]), str(tmp_path / "x.zip")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "does not reproduce the model on another input size" in res.output
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_a_non_zip_output(package, tmp_path):
    res = runner.invoke(app, ["export", str(package[0]), str(tmp_path / "x.yaml")])
    assert res.exit_code == 2 and ".zip" in res.output
