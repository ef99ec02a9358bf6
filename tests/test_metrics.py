"""Tests for microsr.metrics.image.

Outside reference: scikit-image (``skimage.metrics.structural_similarity`` with
``gaussian_weights=True, sigma=1.5, use_sample_covariance=False`` — the settings that
reproduce Wang et al. 2004, doi:10.1109/TIP.2003.819861 — and
``skimage.metrics.peak_signal_noise_ratio``), version installed in the test environment.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from microsr.metrics import psnr, psnr_batch, ssim, ssim_batch, ssim_map


def _skimage_ssim(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    return structural_similarity(
        x,
        y,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=data_range,
    )


def _pair(shape: tuple[int, ...], seed: int, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A random slice and a noisy, clipped copy, both in [0, scale]."""
    rng = np.random.default_rng(seed)
    x = rng.random(shape)
    y = np.clip(x + 0.15 * rng.standard_normal(shape), 0.0, 1.0)
    return x * scale, y * scale


@pytest.mark.parametrize("shape", [(37, 23), (64, 64), (11, 11), (12, 50)])
def test_matches_skimage_on_odd_shapes(shape):
    x, y = _pair(shape, seed=sum(shape))
    assert ssim(x, y, data_range=1.0) == pytest.approx(_skimage_ssim(x, y, 1.0), abs=1e-6)
    assert psnr(x, y, data_range=1.0) == pytest.approx(
        peak_signal_noise_ratio(x, y, data_range=1.0), abs=1e-6
    )


def test_matches_skimage_on_uint8_like_data():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (41, 29)).astype(np.uint8)
    y = np.clip(x.astype(int) + rng.integers(-20, 21, x.shape), 0, 255).astype(np.uint8)
    assert ssim(x, y, data_range=255) == pytest.approx(_skimage_ssim(x, y, 255), abs=1e-6)
    assert psnr(x, y, data_range=255) == pytest.approx(
        peak_signal_noise_ratio(x, y, data_range=255), abs=1e-6
    )


def test_return_types_fixed_by_rank():
    x, y = _pair((3, 20, 17), seed=1)
    assert type(ssim(x[0], y[0], data_range=1.0)) is float
    assert type(psnr(x[0], y[0], data_range=1.0)) is float
    for values in (ssim(x, y, data_range=1.0), psnr(x, y, data_range=1.0)):
        assert isinstance(values, np.ndarray)
        assert values.shape == (3,) and values.dtype == np.float64


def test_ssim_of_identical_images_is_one():
    x, _ = _pair((37, 23), seed=2)
    assert ssim(x, x, data_range=1.0) == 1.0  # exactly: numerator and denominator agree


def test_psnr_analytic_constant_offset():
    # MSE = 0.1**2 = 0.01 on data_range 1 -> 10 log10(1 / 0.01) = 20 dB exactly
    x = np.zeros((13, 9))
    assert psnr(x, x + 0.1, data_range=1.0) == pytest.approx(20.0, abs=1e-9)


def test_psnr_of_identical_images_is_inf():
    x, _ = _pair((16, 16), seed=4)
    assert psnr(x, x, data_range=1.0) == np.inf


def test_batched_equals_per_slice_loop():
    x, y = _pair((4, 37, 23), seed=5)
    expected_ssim = [ssim(a, b, data_range=1.0) for a, b in zip(x, y)]
    expected_psnr = [psnr(a, b, data_range=1.0) for a, b in zip(x, y)]
    np.testing.assert_allclose(ssim(x, y, data_range=1.0), expected_ssim, rtol=0, atol=1e-12)
    np.testing.assert_allclose(psnr(x, y, data_range=1.0), expected_psnr, rtol=0, atol=1e-12)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    for shape in [(4, 37, 23), (4, 1, 37, 23)]:
        got_ssim = ssim_batch(tx.reshape(shape), ty.reshape(shape), data_range=1.0)
        got_psnr = psnr_batch(tx.reshape(shape), ty.reshape(shape), data_range=1.0)
        np.testing.assert_allclose(got_ssim.numpy(), expected_ssim, rtol=0, atol=1e-12)
        np.testing.assert_allclose(got_psnr.numpy(), expected_psnr, rtol=0, atol=1e-12)


def test_float32_batch_is_close_and_keeps_dtype():
    x, y = _pair((2, 37, 23), seed=6)
    values = ssim_batch(torch.from_numpy(x).float(), torch.from_numpy(y).float(), data_range=1.0)
    assert values.dtype == torch.float32
    np.testing.assert_allclose(values.numpy(), ssim(x, y, data_range=1.0), atol=1e-5)


def test_gradients_flow_through_ssim_batch_in_float32():
    x, y = _pair((2, 1, 24, 19), seed=7)
    prediction = torch.from_numpy(x).float().requires_grad_(True)
    target = torch.from_numpy(y).float()
    loss = 1 - ssim_batch(prediction, target, data_range=1.0, reduction="mean")
    loss.backward()
    assert prediction.grad is not None and prediction.grad.shape == prediction.shape
    assert torch.isfinite(prediction.grad).all() and prediction.grad.abs().sum() > 0
    # a small step against the gradient raises SSIM
    with torch.no_grad():
        stepped = prediction - 1e-2 * prediction.grad / prediction.grad.abs().max()
    assert ssim_batch(stepped, target, data_range=1.0).mean() > 1 - loss.item()


def test_ssim_gradient_matches_finite_differences():
    x, y = _pair((1, 1, 13, 12), seed=8)
    prediction = torch.from_numpy(x).requires_grad_(True)
    target = torch.from_numpy(y)
    assert torch.autograd.gradcheck(
        lambda p: ssim_batch(p, target, data_range=1.0), (prediction,), eps=1e-6, atol=1e-5
    )


def test_ssim_map_shape_is_valid_region():
    x, y = _pair((2, 37, 23), seed=9)
    assert ssim_map(torch.from_numpy(x), torch.from_numpy(y), data_range=1.0).shape == (
        2,
        1,
        27,
        13,
    )


def test_too_small_image_names_its_shape():
    x = np.zeros((10, 30))
    with pytest.raises(ValueError, match=r"\(10, 30\)"):
        ssim(x, x, data_range=1.0)
    with pytest.raises(ValueError, match=r"\(2, 1, 30, 10\)"):
        ssim_batch(torch.zeros(2, 1, 30, 10), torch.zeros(2, 1, 30, 10), data_range=1.0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_rejected(bad):
    x, y = _pair((16, 16), seed=10)
    y[3, 4] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        ssim(x, y, data_range=1.0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        psnr(y, x, data_range=1.0)


@pytest.mark.parametrize("data_range", [0.0, -1.0, np.nan, np.inf])
def test_bad_data_range_rejected(data_range):
    x, y = _pair((16, 16), seed=11)
    with pytest.raises(ValueError, match="data_range"):
        ssim(x, y, data_range=data_range)
    with pytest.raises(ValueError, match="data_range"):
        psnr(x, y, data_range=data_range)


def test_data_range_is_keyword_only_and_required():
    x, y = _pair((16, 16), seed=12)
    with pytest.raises(TypeError):
        ssim(x, y, 1.0)  # type: ignore[misc]
    with pytest.raises(TypeError):
        psnr(x, y)  # type: ignore[call-arg]


def test_shape_errors():
    with pytest.raises(ValueError, match="differ"):
        ssim(np.zeros((16, 16)), np.zeros((16, 17)), data_range=1.0)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        psnr(np.zeros(16), np.zeros(16), data_range=1.0)
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        psnr_batch(torch.zeros(2, 3, 16, 16), torch.zeros(2, 3, 16, 16), data_range=1.0)
    with pytest.raises(ValueError, match="reduction"):
        ssim_batch(torch.zeros(1, 16, 16), torch.zeros(1, 16, 16), data_range=1.0, reduction="sum")


def test_ssim_under_bf16_autocast_and_of_bf16_input_is_computed_in_float32():
    torch.manual_seed(0)
    target = torch.rand(3, 1, 40, 40)
    pred = (target + 0.05 * torch.randn_like(target)).clamp(0, 1)
    ref = ssim_batch(pred, target, data_range=1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = ssim_batch(pred, target, data_range=1.0)
    assert auto.dtype == torch.float32
    torch.testing.assert_close(auto, ref, rtol=1e-6, atol=1e-7)
    low = ssim_batch(pred.bfloat16(), target.bfloat16(), data_range=1.0)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, ref, rtol=0, atol=5e-3)  # only the input rounding
