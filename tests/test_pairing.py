import numpy as np
import pytest
from conftest import make_pair

from microsr.errors import MicrosrError
from microsr.pairing.geometry import check_pair, hr_grid, nearest_slices
from microsr.volume import Volume


def test_block_averaged_pair_maps_lr_slice_k_to_hr_slice_2k():
    lr, hr = make_pair(0, shape=(10, 20, 22))
    geo = check_pair(lr, hr, name="s0")
    assert geo.factor == 2
    # LR centre k sits between HR 2k and 2k+1; ties go to the lower index.
    np.testing.assert_array_equal(geo.hr_index, 2 * np.arange(5))
    np.testing.assert_allclose(geo.extent_diff_mm, 0, atol=1e-12)


def test_factor_three_and_odd_shape():
    hr = Volume(np.zeros((9, 15, 21), np.float32), (0.01, 0.01, 0.01))
    lr = Volume(np.zeros((3, 5, 7), np.float32), (0.03, 0.03, 0.03), (0.01, 0.01, 0.01))
    geo = check_pair(lr, hr, name="odd")
    assert geo.factor == 3
    np.testing.assert_array_equal(geo.hr_index, [1, 4, 7])  # centres coincide exactly


def test_extent_mismatch_names_specimen_and_numbers():
    hr = Volume(np.zeros((8, 40, 40), np.float32), (0.01,) * 3)
    lr = Volume(np.zeros((4, 16, 20), np.float32), (0.02,) * 3)
    with pytest.raises(
        MicrosrError, match=r"femur07.*extents disagree along y.*0\.3200 mm.*0\.4000 mm"
    ):
        check_pair(lr, hr, name="femur07")


def test_non_integer_factor_is_rejected():
    hr = Volume(np.zeros((8, 30, 30), np.float32), (0.01,) * 3)
    lr = Volume(np.zeros((5, 20, 20), np.float32), (0.015,) * 3)
    with pytest.raises(MicrosrError, match="ratio must be an integer"):
        check_pair(lr, hr, name="x")


def test_offset_box_is_rejected():
    hr = Volume(np.zeros((8, 40, 40), np.float32), (0.01,) * 3)
    lr = Volume(np.zeros((4, 20, 20), np.float32), (0.02,) * 3, (0.0, 0.1, 0.0))
    with pytest.raises(MicrosrError, match="offset by"):
        check_pair(lr, hr, name="moved")


def test_nearest_slices_and_hr_grid_origin():
    a = Volume(np.zeros((3, 2, 2), np.float32), (0.02, 0.02, 0.02), (0.005, 0, 0))
    b = Volume(np.zeros((6, 4, 4), np.float32), (0.01, 0.01, 0.01))
    np.testing.assert_array_equal(nearest_slices(a, b), [0, 2, 4])  # 0.5 -> 0 (round half down)
    lr = Volume(np.zeros((2, 2, 2), np.float32), (0.02,) * 3, (0.005, 0.005, 0.005))
    np.testing.assert_allclose(
        hr_grid(lr.shape, lr.spacing_mm, lr.origin_mm, 2)[2], (0.0, 0.0, 0.0)
    )


def test_hr_extent_not_divisible_by_the_factor():
    """HR 9 slices, LR 4 at 2x: HR slices 0..7 are paired, the 9th has no LR partner."""
    from microsr.pairing.geometry import hr_grid

    hr = Volume(np.zeros((9, 16, 16), np.float32), (0.01,) * 3)
    lr = Volume(np.zeros((4, 8, 8), np.float32), (0.02,) * 3, (0.005, 0.005, 0.005))
    geo = check_pair(lr, hr, name="odd")
    np.testing.assert_array_equal(geo.hr_slices, np.arange(8))
    np.testing.assert_allclose(geo.lr_t, (np.arange(8) + 0.5) / 2 - 0.5)
    shape, spacing, origin = hr_grid(lr.shape, lr.spacing_mm, lr.origin_mm, 2, z_factor=2)
    assert shape == (8, 16, 16) and spacing == pytest.approx((0.01,) * 3)
    assert origin == pytest.approx(hr.origin_mm)  # the SR grid starts where HR does
