import os

import numpy as np
import pytest
import torch
from conftest import loaded_model, save_model

from microsr.checkpoint import new_meta, save_checkpoint
from microsr.data.normalize import NormalizationConfig
from microsr.errors import InputFileError, MicrosrError
from microsr.inference.checkpoint import load_checkpoint
from microsr.inference.predict import predict_volume
from microsr.inference.runner import PredictOptions
from microsr.inference.tiling import predict_tiled
from microsr.models.factory import ModelConfig, build_model
from microsr.pairing.upsample import upsample_bilinear
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


def _trilinear(array: np.ndarray, factor: int = 2) -> np.ndarray:
    t = torch.from_numpy(array)[None, None]
    up = torch.nn.functional.interpolate(t, scale_factor=factor, mode="trilinear")
    return up[0, 0].numpy()


def test_predict_volume_writes_the_hr_grid_in_hr_units():
    """An identity model on the HR grid gives back trilinear LR, on isotropic HR voxels."""
    lr = Volume(
        np.random.default_rng(0).random((5, 9, 7)).astype(np.float32) * 1000,
        (0.02, 0.02, 0.02),
        (1.0, 2.0, 3.0),
    )
    sr = predict_volume(loaded_model(_Identityish()), lr, progress=False)
    assert sr.shape == (10, 18, 14)
    assert sr.spacing_mm == (0.01, 0.01, 0.01)
    # LR voxel centre c covers HR voxels at c -+ 0.005 mm (the z convention of pairing)
    np.testing.assert_allclose(sr.origin_mm, (0.995, 1.995, 2.995))
    np.testing.assert_allclose(sr.array, _trilinear(lr.array), rtol=0, atol=1e-3)


def test_lr_grid_option_and_old_checkpoints_keep_the_lr_slices():
    lr = Volume(np.random.default_rng(1).random((4, 6, 5)).astype(np.float32) * 1000, (0.02,) * 3)
    opts = PredictOptions(z_grid="lr", batch_size=2)
    sr = predict_volume(loaded_model(_Identityish()), lr, options=opts, progress=False)
    assert sr.shape == (4, 12, 10) and sr.spacing_mm == (0.02, 0.01, 0.01)
    np.testing.assert_allclose(sr.array, upsample_bilinear(lr.array, factor=2), atol=1e-3)
    legacy = loaded_model(
        _Identityish(), normalization=NormalizationConfig(), z_grid="lr", version=1
    )
    old = predict_volume(legacy, lr, progress=False)  # auto: the grid it was trained for
    assert old.shape == (4, 12, 10)
    # minmax without a fitted inverse: mapped back through each LR slice's range (legacy)
    np.testing.assert_allclose(
        old.array, upsample_bilinear(lr.array, factor=2), rtol=1e-3, atol=1e-2
    )


def test_hr_grid_of_a_one_slice_volume_is_refused():
    lr = Volume(np.ones((1, 6, 6), np.float32), (0.02,) * 3)
    with pytest.raises(MicrosrError, match="1 LR slice.*--z-grid lr"):
        predict_volume(loaded_model(_Identityish()), lr, progress=False)


def test_predict_constant_slice_stays_constant():
    lr = Volume(np.full((2, 6, 6), 42.0, np.float32), (0.02,) * 3)
    legacy = loaded_model(_Identityish(), normalization=NormalizationConfig(), z_grid="lr")
    sr = predict_volume(legacy, lr, progress=False)
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
    meta = new_meta(ModelConfig(width=8, depth=2), factor=2, normalization=NormalizationConfig())
    path = save_checkpoint(tmp_path / "other.ckpt", other, meta)
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


def test_checkpoint_sanity_nan_weights_bad_factor_and_channels(tmp_path):
    cfg = ModelConfig(width=4, depth=1)
    good = save_model(tmp_path / "good.ckpt", cfg)
    assert load_checkpoint(good).factor == 2
    ckpt = torch.load(good, weights_only=True)
    name = next(k for k in ckpt["state_dict"] if k.endswith("weight"))
    ckpt["state_dict"][name] = torch.full_like(ckpt["state_dict"][name], float("nan"))
    torch.save(ckpt, tmp_path / "nan.ckpt")
    with pytest.raises(InputFileError, match="nan.ckpt: .*NaN or Inf"):
        load_checkpoint(tmp_path / "nan.ckpt")
    ckpt = torch.load(good, weights_only=True)
    ckpt["microsr"]["factor"] = 0
    torch.save(ckpt, tmp_path / "zero.ckpt")
    with pytest.raises(InputFileError, match="zero.ckpt: checkpoint metadata is invalid: factor"):
        load_checkpoint(tmp_path / "zero.ckpt")
    ckpt = torch.load(good, weights_only=True)
    ckpt["microsr"]["model_config"]["in_channels"] = 3
    torch.save(ckpt, tmp_path / "channels.ckpt")
    with pytest.raises(InputFileError, match="3 input channel"):
        load_checkpoint(tmp_path / "channels.ckpt")


@pytest.mark.parametrize("batch", [1, 3, 7])
def test_batched_super_resolve_is_the_centre_slice_through_an_identity(batch):
    """The one batched SR loop: an identity on the centre channel returns the LR slice in HR
    units (same window in and out), whatever the batch size."""
    from microsr.inference.engine import super_resolve_batched

    stacks = torch.rand((7, 3, 9, 11), generator=torch.Generator().manual_seed(0)) * 800 + 100
    norm = NormalizationConfig(mode="window", low=0, high=1000)
    sr = super_resolve_batched(
        lambda x: x[:, 1:2], stacks, norm, options=PredictOptions(),
        compute_device=torch.device("cpu"), batch=batch,
    )  # fmt: skip
    assert sr.shape == (7, 9, 11)
    torch.testing.assert_close(sr, stacks[:, 1], rtol=0, atol=1e-3)
