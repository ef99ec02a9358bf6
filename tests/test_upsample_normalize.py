import numpy as np
import pytest
import torch
from scipy.ndimage import zoom
from skimage.transform import resize

from microsr.data.normalize import NormalizationConfig, denormalize, normalize, slice_ranges
from microsr.data.upsample import upsample_bilinear


@pytest.mark.parametrize("factor", [2, 3])
@pytest.mark.parametrize("shape", [(7, 9), (13, 5)])
def test_bilinear_equals_skimage_resize_order1_edge(factor, shape):
    x = np.random.default_rng(0).random(shape).astype(np.float32)
    ref = resize(
        x, (shape[0] * factor, shape[1] * factor), order=1, mode="edge", anti_aliasing=False
    )
    np.testing.assert_allclose(upsample_bilinear(x, factor=factor), ref, atol=1e-6)


def test_scipy_zoom_default_differs():
    """The trap the interface warns about: scipy's zoom uses another grid."""
    x = np.random.default_rng(1).random((9, 11)).astype(np.float32)
    assert np.abs(upsample_bilinear(x, factor=2) - zoom(x, 2, order=1)).max() > 1e-2


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
    offset, scale = slice_ranges(x, cfg)
    assert scale[0] == 0
    np.testing.assert_allclose(denormalize(y, offset, scale), x, atol=1e-5)


def test_window_is_fixed_and_clipped():
    cfg = NormalizationConfig(mode="window", low=-200, high=1800)
    x = np.array([[[-1000.0, -200.0, 800.0, 1800.0, 3000.0]]])
    np.testing.assert_allclose(normalize(x, cfg), [[[0, 0, 0.5, 1, 1]]])


def test_window_needs_low_below_high():
    with pytest.raises(ValueError):
        NormalizationConfig(mode="window", low=5, high=5)
    with pytest.raises(ValueError):
        NormalizationConfig(mode="window")
