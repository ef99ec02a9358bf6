import numpy as np
import pytest
import torch
from scipy.ndimage import zoom
from skimage.transform import resize

from microsr.data.normalize import (
    NormalizationConfig,
    fit_minmax_inverse,
    fit_window,
    from_unit,
    input_range,
    lr_in_hr_units,
    lr_slice_stats,
    normalize,
    output_range,
    slice_minmax,
    target_range,
    to_unit,
)
from microsr.errors import MicrosrError
from microsr.pairing.geometry import output_positions
from microsr.pairing.upsample import sample_z, upsample_bilinear, z_span


@pytest.mark.parametrize("factor", [2, 3])
@pytest.mark.parametrize("shape", [(7, 9), (13, 5)])
def test_bilinear_equals_skimage_resize_order1_edge(factor, shape):
    x = np.random.default_rng(0).random(shape).astype(np.float32)
    ref = resize(
        x, (shape[0] * factor, shape[1] * factor), order=1, mode="edge", anti_aliasing=False
    )
    np.testing.assert_allclose(upsample_bilinear(x, factor=factor), ref, atol=1e-6)


def test_scipy_zoom_default_differs():
    """The trap the interface warns about: scipy's zoom uses another grid.

    On a ramp ``x[j] = j`` the pixel-centre grid gives output ``i`` the value
    ``clip((i + 0.5) / f - 0.5, 0, n - 1)``; scipy's corner-aligned grid gives
    ``i (n - 1) / (n f - 1)``.
    """
    n, f = 11, 2
    x = np.broadcast_to(np.arange(n, dtype=np.float32), (9, n)).copy()
    i = np.arange(n * f)
    centres = np.clip((i + 0.5) / f - 0.5, 0, n - 1)
    corners = i * (n - 1) / (n * f - 1)
    ours = upsample_bilinear(x, factor=f)
    np.testing.assert_allclose(ours, np.broadcast_to(centres, ours.shape), atol=1e-5)
    np.testing.assert_allclose(zoom(x, f, order=1), np.broadcast_to(corners, ours.shape), atol=1e-5)
    assert np.abs(ours - zoom(x, f, order=1)).max() > 1e-2


def test_bilinear_batch_and_tensor_forms_agree():
    x = np.random.default_rng(2).random((3, 5, 7)).astype(np.float32)
    a = upsample_bilinear(x, factor=2)
    b = upsample_bilinear(torch.from_numpy(x)[:, None], factor=2)[:, 0].numpy()
    assert a.shape == (3, 10, 14)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[1], upsample_bilinear(x[1], factor=2))


def test_bilinear_of_constant_is_constant_and_factor1_identity():
    np.testing.assert_array_equal(
        upsample_bilinear(np.full((4, 5), 3.5, np.float32), factor=2), 3.5
    )
    x = np.random.default_rng(3).random((4, 5)).astype(np.float32)
    np.testing.assert_array_equal(upsample_bilinear(x, factor=1), x)


def test_minmax_maps_each_slice_to_unit_range():
    x = np.stack([np.linspace(-5, 5, 12).reshape(3, 4), np.linspace(100, 300, 12).reshape(3, 4)])
    y = normalize(x, NormalizationConfig())
    assert y.dtype == np.float32
    for s in y:
        assert s.min() == 0.0 and s.max() == 1.0
    np.testing.assert_allclose(y[0], y[1], atol=1e-7)  # same shape of ramp -> same result


def test_constant_slice_gives_zeros_and_inverts_to_constant():
    x = np.stack([np.full((4, 4), 7.0), np.arange(16.0).reshape(4, 4)])
    cfg = NormalizationConfig()
    y = normalize(x, cfg)
    assert np.all(y[0] == 0) and np.isfinite(y).all()
    low, high = slice_minmax(x)
    assert high[0] == low[0]
    np.testing.assert_allclose(from_unit(y, low, high), x, atol=1e-5)


def test_window_is_fixed_and_clipped():
    cfg = NormalizationConfig(mode="window", low=-200, high=1800)
    x = np.array([[[-1000.0, -200.0, 800.0, 1800.0, 3000.0]]])
    np.testing.assert_allclose(normalize(x, cfg), [[[0, 0, 0.5, 1, 1]]])


def test_window_needs_low_below_high():
    with pytest.raises(ValueError):
        NormalizationConfig(mode="window", low=5, high=5)
    with pytest.raises(ValueError):
        NormalizationConfig(mode="window")


def test_window_round_trip_is_exact_inside_the_window():
    cfg = NormalizationConfig(mode="window", low=-12.5, high=267.5)
    x = np.random.default_rng(4).uniform(-12.5, 267.5, (3, 6, 7)).astype(np.float32)
    low, high = target_range(x, cfg)
    back = from_unit(to_unit(x, low, high), low, high)
    np.testing.assert_allclose(back, x, rtol=0, atol=1e-4)  # float32 rounding of 280 units
    # the output range of window mode is the HR window, whatever the LR slice
    lo, hi = output_range(x * 3 + 50, cfg)
    assert np.allclose(lo.numpy(), -12.5) and np.allclose(hi.numpy(), 267.5)


def test_separate_lr_window_maps_lr_into_hr_units():
    cfg = NormalizationConfig(mode="window", low=0, high=1000, lr_low=10, lr_high=20)
    lo, hi = input_range(np.zeros((2, 3, 3)), cfg)
    assert lo.tolist() == [10, 10] and hi.tolist() == [20, 20]
    np.testing.assert_allclose(lr_in_hr_units(np.array([10.0, 15.0, 25.0]), cfg), [0, 500, 1500])
    shared = NormalizationConfig(mode="window", low=0, high=1000)
    assert lr_in_hr_units(7.0, shared) == 7.0  # same units: identity


def test_fit_window_is_robust_and_refuses_constant_data():
    values = np.concatenate([np.linspace(0, 100, 10_000), [1e6]])  # one outlier
    low, high = fit_window(values, percentiles=(0.1, 99.9), margin=0.05)
    assert -6 < low < 0 and 100 < high < 106  # the outlier does not stretch the window
    with pytest.raises(MicrosrError, match="constant"):
        fit_window(np.full(1000, 3.0))
    with pytest.raises(MicrosrError, match="no voxels"):
        fit_window(np.array([]))


def test_minmax_inverse_is_unbiased_on_its_training_pairs():
    rng = np.random.default_rng(5)
    lr = rng.normal(50, 20, (40, 16, 16)).astype(np.float32) + rng.uniform(0, 100, (40, 1, 1))
    stats = lr_slice_stats(lr).numpy()
    hr_ranges = np.stack([stats[:, 0] * 0.5 + 3, stats[:, 1] * 1.2 - 7], axis=1)  # exact model
    inv = fit_minmax_inverse(stats, hr_ranges + rng.normal(0, 1, hr_ranges.shape))
    cfg = NormalizationConfig(mode="minmax", inverse=inv)
    lo, hi = output_range(lr, cfg)
    residual = np.stack([lo.numpy(), hi.numpy()], 1) - hr_ranges
    assert np.abs(residual.mean(0)).max() < 0.5  # least squares with an intercept: mean ~ noise
    legacy = NormalizationConfig(mode="minmax")  # microsr 0.1: the LR slice's own range
    lo, hi = output_range(lr, legacy)
    np.testing.assert_allclose(lo.numpy(), lr.reshape(40, -1).min(1))


def test_sample_z_on_a_known_profile():
    """Linear in z is reproduced exactly inside the volume and clamped at its ends."""
    z = np.arange(5, dtype=np.float32)
    vol = np.broadcast_to((10 * z + 3)[:, None, None], (5, 2, 3)).copy()
    t = np.array([-0.25, 0.0, 0.25, 1.5, 3.75, 4.25])
    out = sample_z(vol, t, n=5)
    np.testing.assert_allclose(out[:, 0, 0], [3, 3, 5.5, 18, 40.5, 43])
    first, stop = z_span(t[3:4], 5)
    np.testing.assert_allclose(sample_z(vol[first:stop], t[3:4], n=5, first=first)[:, 0, 0], [18])
    np.testing.assert_allclose(output_positions(4, 2), [-0.25, 0.25, 0.75, 1.25])


@pytest.mark.parametrize("factor", [2, 3])
def test_bilinear_then_linear_z_equals_trilinear(factor):
    """The HR-grid input of every HR slice is trilinear interpolation of the LR volume."""
    lr = np.random.default_rng(6).random((4, 5, 6)).astype(np.float32)
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(lr)[None, None], scale_factor=factor, mode="trilinear", align_corners=False
    )[0, 0].numpy()
    t = output_positions(4 * factor, factor)
    ours = upsample_bilinear(sample_z(lr, t, n=4), factor=factor)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
