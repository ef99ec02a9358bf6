"""Training losses: analytic values."""

import pytest
import torch

from microsr.metrics import ssim_batch
from microsr.training.config import TrainConfig
from microsr.training.losses import LOSS_NAMES, SSIM_MIX, compute_loss, gradient_l1


@pytest.fixture
def target():
    g = torch.Generator().manual_seed(0)
    return 0.05 + 0.9 * torch.rand((2, 1, 24, 21), generator=g)


@pytest.mark.parametrize("name", ["l1", "mse", "ssim", "l1_ssim"])
def test_perfect_prediction_costs_nothing(target, name):
    assert compute_loss(torch.logit(target), target, name).item() == pytest.approx(0, abs=1e-5)


def test_bce_of_a_perfect_prediction_is_the_target_entropy(target):
    t = target.double()
    entropy = -(t * t.log() + (1 - t) * (1 - t).log()).mean()
    assert compute_loss(torch.logit(t), t, "bce").item() == pytest.approx(entropy.item())


def test_l1_ssim_is_the_zhao_mix(target):
    logits = torch.zeros_like(target)  # image 0.5 everywhere
    l1 = (0.5 - target).abs().mean()
    dssim = 1 - ssim_batch(torch.full_like(target, 0.5), target, data_range=1.0).mean()
    expected = (1 - SSIM_MIX) * l1 + SSIM_MIX * dssim
    assert compute_loss(logits, target, "l1_ssim").item() == pytest.approx(expected.item())
    assert compute_loss(logits, target, "ssim").item() == pytest.approx(dssim.item())


def test_gradient_term_sees_edges_not_offsets():
    x = torch.arange(10.0).expand(1, 1, 10, 10) / 10  # ramp along X, slope 0.1
    assert gradient_l1(x + 0.3, x).item() == pytest.approx(0.0, abs=1e-6)
    # d/dx differs by 0.1 everywhere, d/dy by 0: mean of the two = 0.05
    assert gradient_l1(x, torch.zeros_like(x)).item() == pytest.approx(0.05)


def test_grad_weight_adds_the_weighted_edge_term(target):
    logits = torch.randn(target.shape, generator=torch.Generator().manual_seed(1))
    base = compute_loss(logits, target, "l1")
    edge = gradient_l1(torch.sigmoid(logits), target)
    total = compute_loss(logits, target, "l1", grad_weight=0.5)
    assert total.item() == pytest.approx((base + 0.5 * edge).item())


def test_every_loss_is_differentiable_and_configurable(target):
    for name in LOSS_NAMES:
        logits = torch.zeros_like(target, requires_grad=True)
        compute_loss(logits, target, name, grad_weight=0.1).backward()
        assert logits.grad.abs().sum() > 0, name
        assert TrainConfig(loss=name).loss == name
    with pytest.raises(ValueError, match="unknown loss"):
        compute_loss(logits, target, "perceptual")


@pytest.mark.parametrize("name", ["bce", "l1", "mse", "ssim", "l1_ssim"])
def test_loss_under_bf16_autocast_is_the_float32_loss(name):
    # bf16-mixed training: the network runs in bf16, the loss must not (SSIM's
    # E[x^2] - E[x]^2 in bf16 was 4 % off before the loss left autocast)
    torch.manual_seed(0)
    target = torch.rand(4, 1, 32, 32)
    logits = torch.logit((target + 0.05 * torch.randn_like(target)).clamp(0.01, 0.99))
    ref = compute_loss(logits, target, name, grad_weight=0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = compute_loss(logits, target, name, grad_weight=0.1)
        from_bf16 = compute_loss(logits.bfloat16(), target, name, grad_weight=0.1)
    assert low.dtype == torch.float32 and from_bf16.dtype == torch.float32
    torch.testing.assert_close(low, ref, rtol=1e-6, atol=1e-7)
    # bf16 logits themselves carry ~3 digits: the loss on them stays within 1 %
    torch.testing.assert_close(from_bf16, ref, rtol=1e-2, atol=1e-4)
