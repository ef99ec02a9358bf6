import os

import numpy as np
import pytest
import torch

from microsr.data.upsample import upsample_bilinear
from microsr.errors import InputFileError
from microsr.inference.checkpoint import LoadedModel, load_checkpoint
from microsr.inference.predict import predict_volume
from microsr.inference.tiling import predict_tiled
from microsr.models.factory import ModelConfig, build_model
from microsr.volume import Volume


@pytest.mark.parametrize("tile,overlap", [(8, 3), (16, 0), (7, 6), (64, 8)])
def test_identity_model_through_tiler_is_exact(tile, overlap):
    x = torch.rand(2, 1, 37, 23)
    np.testing.assert_array_equal(
        predict_tiled(lambda t: t, x, tile=tile, overlap=overlap).numpy(), x.numpy()
    )


def test_tiled_convolution_matches_whole_image_inside():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 2, 3, padding=1)
    x = torch.rand(1, 1, 40, 33)
    with torch.no_grad():
        whole = conv(x)
        tiled = predict_tiled(conv, x, tile=16, overlap=6)
    # Windows overlap by 6 > receptive-field margin 1, tent weights vanish nowhere:
    # away from the image border, the blend equals the whole-image result closely.
    assert torch.allclose(whole[..., 2:-2, 2:-2], tiled[..., 2:-2, 2:-2], atol=0.15)
    assert tiled.shape == whole.shape


class _Identityish(torch.nn.Module):
    """Returns logit(x): sigmoid(model(x)) == x, so predict maps LR back to bilinear LR."""

    def forward(self, x):
        return torch.logit(x.clamp(1e-6, 1 - 1e-6))


def test_predict_volume_geometry_and_identity_values():
    lr = Volume(
        np.random.default_rng(0).random((5, 9, 7)).astype(np.float32) * 1000,
        (0.02, 0.02, 0.02),
        (1.0, 2.0, 3.0),
    )
    loaded = LoadedModel(_Identityish(), {"factor": 2, "normalization": {"mode": "minmax"}}, "x")
    sr = predict_volume(loaded, lr, batch_size=2, progress=False)
    assert sr.shape == (5, 18, 14)
    assert sr.spacing_mm == (0.02, 0.01, 0.01)
    np.testing.assert_allclose(sr.origin_mm, (1.0, 1.995, 2.995))
    np.testing.assert_allclose(
        sr.array, upsample_bilinear(lr.array, factor=2), rtol=1e-3, atol=1e-2
    )


def test_predict_constant_slice_stays_constant():
    lr = Volume(np.full((2, 6, 6), 42.0, np.float32), (0.02,) * 3)
    loaded = LoadedModel(_Identityish(), {"factor": 2, "normalization": {"mode": "minmax"}}, "x")
    sr = predict_volume(loaded, lr, progress=False)
    assert np.all(sr.array == 42.0)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned_marker",))


def test_checkpoint_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "microsr": {}, "payload": _Evil()}, path)
    with pytest.raises(InputFileError, match="evil.ckpt.*refused to load"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned_marker").exists()


def test_checkpoint_from_another_model_or_not_a_checkpoint(tmp_path):
    other = build_model(ModelConfig(width=4, depth=1))
    meta = {
        "factor": 2,
        "normalization": {"mode": "minmax"},
        "model_config": ModelConfig(width=8, depth=2).model_dump(),
    }
    path = tmp_path / "other.ckpt"
    torch.save(
        {"state_dict": {f"model.{k}": v for k, v in other.state_dict().items()}, "microsr": meta},
        path,
    )
    with pytest.raises(InputFileError, match="weights do not match the UNet"):
        load_checkpoint(path)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": other.state_dict()}, foreign)
    with pytest.raises(InputFileError, match="not a microsr checkpoint"):
        load_checkpoint(foreign)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(InputFileError, match="junk.ckpt: not a readable PyTorch checkpoint"):
        load_checkpoint(junk)
    with pytest.raises(InputFileError, match="not found"):
        load_checkpoint(tmp_path / "missing.ckpt")
