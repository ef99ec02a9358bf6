"""Residual U-Net, RCAN, 2.5D input and test-time augmentation."""

import json

import numpy as np
import pytest
import torch
from conftest import loaded_model
from pydantic import ValidationError

from microsr.data.dataset import PatchDataset, SliceDataset, SlicePairs
from microsr.inference.augment import DIHEDRAL, tta_images
from microsr.inference.runner import PredictOptions, image_fn
from microsr.models.factory import ModelConfig, build_model
from microsr.models.rcan import ChannelAttention
from microsr.models.residual import EPS, centre_logit

CONFIGS = [
    ModelConfig(name="unet", width=4, depth=2),
    ModelConfig(name="unet_residual", width=4, depth=2, in_channels=3),
    ModelConfig(name="rcan", width=4, depth=1, blocks=1, in_channels=5),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.name}-{c.in_channels}")
def test_every_model_maps_any_shape_to_one_logit_channel(config):
    model = build_model(config).eval()
    out = model(torch.rand(2, config.in_channels, 13, 19))
    assert out.shape == (2, 1, 13, 19)


@pytest.mark.parametrize("config", CONFIGS[1:], ids=lambda c: c.name)
def test_untrained_residual_models_return_the_centre_input_slice(config):
    # The residual head starts at zero, so the model starts at bilinear interpolation.
    x = torch.rand(3, config.in_channels, 17, 11)
    image = torch.sigmoid(build_model(config).eval()(x))
    centre = x[:, config.in_channels // 2 : config.in_channels // 2 + 1]
    torch.testing.assert_close(image, centre.clamp(EPS, 1 - EPS), atol=1e-6, rtol=0)


@pytest.mark.parametrize("config", CONFIGS[1:], ids=lambda c: c.name)
def test_zero_initialised_head_still_learns(config):
    model = build_model(config)
    x = torch.rand(2, config.in_channels, 16, 16)
    torch.sigmoid(model(x)).mean().backward()
    head = model.body.head if config.name == "unet_residual" else model.head
    assert head.weight.grad.abs().sum() > 0


def test_centre_logit_reads_the_middle_channel():
    x = torch.stack([torch.full((4, 4), v) for v in (0.1, 0.5, 0.9)])[None]
    assert torch.allclose(centre_logit(x), torch.zeros(1, 1, 4, 4), atol=1e-6)


def test_channel_attention_only_rescales():
    h = torch.randn(2, 8, 5, 5)
    ratio = ChannelAttention(8, reduction=4)(h) / h
    # one gate in (0, 1) per (sample, channel), the same at every pixel
    assert (ratio > 0).all() and (ratio < 1).all()
    assert torch.allclose(ratio, ratio[..., :1, :1].expand_as(ratio), atol=1e-5)


def test_model_config_names_and_context():
    assert ModelConfig(in_channels=5).context_slices == 2
    assert ModelConfig().context_slices == 0
    with pytest.raises(ValidationError):
        ModelConfig(name="srgan")


def test_tta_of_identity_is_identity_and_averages_a_ramp():
    x = torch.rand(2, 3, 6, 6)
    torch.testing.assert_close(tta_images(lambda t: t, x), x)
    # fn adds a ramp along X; the 8 back-transformed ramps are j, n-1-j, i, n-1-i (twice
    # each), whose mean is the constant (n - 1) / 2.
    ramp = torch.arange(6.0).expand(6, 6)
    torch.testing.assert_close(tta_images(lambda t: t + ramp, x), x + 2.5)
    assert len(set(DIHEDRAL)) == 8


def test_model_images_with_tta_keeps_the_contract():
    model = build_model(CONFIGS[2]).eval()
    loaded = loaded_model(model, in_channels=5)
    x = torch.rand(2, 5, 12, 12)
    with torch.inference_mode():
        out = image_fn(loaded, PredictOptions(tta=True, precision="32"))(x)
    torch.testing.assert_close(out, x[:, 2:3].clamp(EPS, 1 - EPS), atol=1e-6, rtol=0)


def _stack_dataset(tmp_path, n=5, hw=(20, 18)):
    """One specimen whose LR slice i is the constant i / 10 (HR: 1 - i / 10), HR grid = LR's."""
    root = tmp_path / "specimens" / "a"
    root.mkdir(parents=True)
    lr = np.stack([np.full(hw, i / 10, np.float32) for i in range(n)])
    np.save(root / "lr.npy", lr)
    np.save(root / "hr.npy", 1 - lr)
    meta = {"n_slices": n, "n_lr_slices": n, "crop_yxhw": [0, 0, *hw], "lr_t": list(range(n)),
            "hr_slices": list(range(n)), "hr_spacing_mm": [0.01] * 3}  # fmt: skip
    norm = {"mode": "window", "low": 0.0, "high": 1.0}
    info = {"factor": 1, "specimens": {"a": meta}, "normalization": norm}
    (tmp_path / "dataset.json").write_text(json.dumps(info))
    return info


def test_context_stacks_neighbours_clamped_at_the_ends(tmp_path):
    info = _stack_dataset(tmp_path)
    pairs = SlicePairs(tmp_path, info, ["a"], context=1)
    assert [float(v) for v in pairs.pair(0)[0][:, 0, 0]] == pytest.approx([0.0, 0.0, 0.1])
    assert [float(v) for v in pairs.pair(2)[0][:, 0, 0]] == pytest.approx([0.1, 0.2, 0.3])
    assert [float(v) for v in pairs.pair(4)[0][:, 0, 0]] == pytest.approx([0.3, 0.4, 0.4])
    assert pairs.pair(2)[1].shape == (20, 18)
    assert SlicePairs(tmp_path, info, ["a"]).pair(2)[0].shape == (1, 20, 18)  # one channel


def test_2p5d_datasets_return_channel_stacks(tmp_path):
    info = _stack_dataset(tmp_path)
    pairs = SlicePairs(tmp_path, info, ["a"], context=2)
    lr, hr = PatchDataset(pairs, patch=16, augment=True)[1]
    assert lr.shape == (5, 16, 16) and hr.shape == (1, 16, 16)
    torch.testing.assert_close(lr[:, 0, 0], torch.tensor([0.0, 0.0, 0.1, 0.2, 0.3]))
    lr, hr = SliceDataset(pairs)[4]
    assert lr.shape == (5, 20, 18) and hr.shape == (1, 20, 18)


def test_patches_come_from_the_datasets_own_seeded_generator(tmp_path):
    info = _stack_dataset(tmp_path, hw=(40, 40))
    (tmp_path / "specimens/a/lr.npy").unlink()
    np.save(
        tmp_path / "specimens/a/lr.npy", np.random.default_rng(0).random((5, 40, 40), np.float32)
    )
    pairs = SlicePairs(tmp_path, info, ["a"])
    a = [PatchDataset(pairs, patch=8, seed=3)[i][0] for i in range(5)]
    torch.manual_seed(123)  # the global generator must not matter
    b = [PatchDataset(pairs, patch=8, seed=3)[i][0] for i in range(5)]
    c = [PatchDataset(pairs, patch=8, seed=4)[i][0] for i in range(5)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_cli_train_rejects_an_unknown_model(tmp_path):
    from typer.testing import CliRunner

    from microsr.cli import app

    args = ["train", str(tmp_path / "ds"), str(tmp_path / "run"), "--model", "srgan"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "model" in result.output
