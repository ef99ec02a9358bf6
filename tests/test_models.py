"""Tests for microsr.models: the U-Net and its factory."""

from __future__ import annotations

import pydantic
import pytest
import torch
import torch.nn.functional as F

from microsr.models import ModelConfig, UNet, build_model, count_parameters


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("height, width", [(37, 23), (32, 32), (17, 40)])
def test_output_shape_equals_input_shape(depth, height, width):
    model = UNet(width=4, depth=depth).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, height, width))
    assert out.shape == (2, 1, height, width)


def test_channels_and_tiny_inputs():
    # 2.5D input (3 neighbouring slices), 2 outputs; 5x7 is padded by 3 and 1 to 8x8, more
    # than reflect allows on the 5-pixel side, so padding falls back to replicate
    model = UNet(in_channels=3, out_channels=2, width=4, depth=2, norm="instance").eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 5, 7)).shape == (1, 2, 5, 7)
        assert model(torch.rand(1, 3, 37, 23)).shape == (1, 2, 37, 23)


def test_parameter_count_by_hand():
    # width=4, depth=1, batch norm (convs without bias; BatchNorm2d has weight + bias):
    # enc[0]: conv 1->4: 1*4*9 = 36, BN 2*4 = 8, conv 4->4: 4*4*9 = 144, BN 8   -> 196
    # enc[1]: conv 4->8: 4*8*9 = 288, BN 16, conv 8->8: 8*8*9 = 576, BN 16       -> 896
    # dec[0].up: ConvTranspose2d 8->4, 2x2, with bias: 8*4*4 + 4 = 132           -> 132
    # dec[0].conv: conv 8->4: 8*4*9 = 288, BN 8, conv 4->4: 144, BN 8           -> 448
    # head: conv1x1 4->1 with bias: 4 + 1 = 5                                    -> 5
    assert count_parameters(UNet(width=4, depth=1)) == 196 + 896 + 132 + 448 + 5 == 1677
    # norm="none": BN parameters (8 + 8 + 16 + 16 + 8 + 8 = 64) replaced by conv biases
    # (4 + 4 + 8 + 8 + 4 + 4 = 32)
    assert count_parameters(UNet(width=4, depth=1, norm="none")) == 1677 - 64 + 32


def test_overfits_one_tiny_pair():
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    target = (((yy - 14) ** 2 + (xx - 17) ** 2) < 81).float()[None, None]
    blurred = F.avg_pool2d(target, 5, stride=1, padding=2, count_include_pad=False)
    lr_input = blurred + 0.05 * torch.randn_like(blurred)
    model = UNet(width=8, depth=2)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(100):
        optimiser.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(lr_input), target)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_eval_mode_is_deterministic():
    torch.manual_seed(1)
    model = UNet(width=4, depth=2, dropout=0.5).eval()
    x = torch.rand(2, 1, 37, 23)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_build_model_round_trip():
    config = ModelConfig(width=4, depth=2, norm="instance", in_channels=3)
    model = build_model(config)
    assert type(model) is UNet
    restored = ModelConfig.model_validate(config.model_dump())
    assert restored == config
    rebuilt = build_model(restored)
    assert type(rebuilt) is UNet
    assert count_parameters(rebuilt) == count_parameters(model)
    with torch.no_grad():
        assert rebuilt.eval()(torch.rand(1, 3, 21, 19)).shape == (1, 1, 21, 19)


def test_model_config_defaults_and_validation():
    config = ModelConfig()
    assert (config.name, config.width, config.depth, config.norm) == ("unet", 16, 3, "batch")
    with pytest.raises(pydantic.ValidationError):
        ModelConfig(name="srgan")  # "rcan" and "unet_residual" are valid
    with pytest.raises(pydantic.ValidationError):
        ModelConfig(widht=8)  # extra fields forbidden
    with pytest.raises(pydantic.ValidationError):
        ModelConfig(depth=0)
    with pytest.raises(pydantic.ValidationError):
        config.width = 8  # frozen


def test_unet_rejects_bad_options():
    with pytest.raises(ValueError, match="norm"):
        UNet(norm="group")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dropout"):
        UNet(dropout=1.0)
    with pytest.raises(ValueError, match="depth"):
        UNet(depth=0)
