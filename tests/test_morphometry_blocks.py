"""Block-wise 3D morphometry equals the whole-volume computation.

The reference for local thickness is the whole-volume algorithm microsr used before the
block-wise one (commit 9595713, ``morphometry/structure.py``), kept here verbatim as
:func:`reference_thickness`: one distance transform of the whole volume per radius level.
The block-wise maps must be identical to it, voxel for voxel, whatever the block size; the
Euler characteristic must equal scikit-image's; the itk features the filter's on the
whole volume (to float rounding).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED_DATA
from skimage.measure import euler_number

from microsr.morphometry import bone_features_3d, local_thickness, structure_features
from microsr.morphometry.blocks import array_reader, blocks, n_blocks
from microsr.morphometry.structure import euler_delta, euler_number_blocks
from microsr.morphometry.thickness import _distance, _levels, max_radius, thickness_sum

DIDSR = SHARED_DATA.parent / "didsr_vertebra_rois"


def reference_thickness(mask, spacing_mm, *, step_vox=0.25, rel_step=0.02, eps_steps=1e-4):
    """microsr's whole-volume local thickness before blocks (commit 9595713), verbatim but
    for the tie tolerance ``eps_steps`` (1e-6 there: see thickness.EPS_STEPS)."""
    mask = np.asarray(mask, bool)
    out = np.zeros(mask.shape, np.float32)
    if mask.all():
        return np.full(mask.shape, np.inf, np.float32)
    if not mask.any():
        return out
    radius = _distance(mask, spacing_mm)
    step = step_vox * min(spacing_mm)
    eps = eps_steps * step
    for r in _levels(radius[mask], step, rel_step)[::-1]:
        if r <= 0 or (out[mask] > 0).all():
            break
        todo = mask & (out == 0)
        covered = todo & (_distance(radius < r - eps, spacing_mm) <= r + eps)
        out[covered] = 2.0 * r
    return out


def plates(t: int, shape=(23, 61, 29), period: int = 20) -> np.ndarray:
    """Plates ``t`` voxels thick along y, one every ``period`` voxels."""
    bone = np.zeros(shape, bool)
    y = np.arange(shape[1]) % period
    bone[:, (y >= 3) & (y < 3 + t), :] = True
    return bone


def blobs(shape=(30, 41, 37), seed: int = 0) -> np.ndarray:
    """Smooth random structure (thresholded smoothed noise): many radii and shapes."""
    from scipy.ndimage import gaussian_filter

    noise = gaussian_filter(np.random.default_rng(seed).random(shape), 2.0)
    return noise > np.median(noise)


@pytest.mark.parametrize("t", [4, 6, 10])
def test_plates_of_known_thickness_blockwise(t):
    bone = plates(t)
    ref = reference_thickness(bone, (1.0, 1.0, 1.0))
    for block in (7, 16, 64):
        got = local_thickness(bone, (1.0, 1.0, 1.0), block=block)
        np.testing.assert_array_equal(got, ref)
    assert got[bone].mean() == t  # even widths: exact
    marrow = local_thickness(~bone, (1.0, 1.0, 1.0), block=9)
    np.testing.assert_array_equal(marrow, reference_thickness(~bone, (1.0, 1.0, 1.0)))
    assert (marrow[:, 3 + t : 23] == 20 - t).all()  # between two plates (the box border is no wall)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.02, 0.005, 0.01), (0.05, 0.05, 0.05)])
def test_blockwise_equals_whole_volume_on_random_structures(spacing):
    bone = blobs()
    for mask in (bone, ~bone):
        ref = reference_thickness(mask, spacing)
        for block in (8, 13, 64):
            np.testing.assert_array_equal(local_thickness(mask, spacing, block=block), ref)


def test_blocks_tile_the_volume_once():
    shape = (10, 7, 5)
    count = np.zeros(shape, int)
    for b in blocks(shape, 4, (2, 2, 2)):
        count[b.core] += 1
        ext = np.zeros(shape, bool)
        ext[b.extended] = True
        assert ext[b.core].all()
    assert (count == 1).all() and n_blocks(shape, 4) == 3 * 2 * 2


def test_largest_radius_is_exact_and_a_stated_bound_gives_the_same_map():
    bone = blobs(seed=1)
    radius = _distance(bone, (1.0, 1.0, 1.0))
    assert max_radius(array_reader(bone), bone.shape, (1.0, 1.0, 1.0), block=6) == radius.max()
    ref = reference_thickness(bone, (1.0, 1.0, 1.0))
    out = np.zeros(bone.shape, np.float32)
    total, n = thickness_sum(
        array_reader(bone), bone.shape, (1.0, 1.0, 1.0), block=10, max_radius_mm=20.0, out=out
    )
    np.testing.assert_array_equal(out, ref)
    assert n == bone.sum() and total == pytest.approx(ref[bone].sum(dtype=np.float64))
    with pytest.raises(ValueError, match="exceeds the bound"):
        thickness_sum(array_reader(bone), bone.shape, (1.0, 1.0, 1.0), max_radius_mm=1.5)


def test_full_and_empty_structures():
    full = np.ones((5, 6, 7), bool)
    assert np.isinf(local_thickness(full, (1.0, 1.0, 1.0), block=3)).all()
    assert (local_thickness(~full, (1.0, 1.0, 1.0), block=3) == 0).all()


def test_euler_number_blockwise_equals_skimage():
    rng = np.random.default_rng(2)
    for shape in ((13, 17, 11), (20, 9, 30), (1, 5, 6)):
        bone = rng.random(shape) > 0.6
        for block in (1, 4, 7, 64):
            got = euler_number_blocks(array_reader(bone), shape, block=block)
            assert got == euler_number(bone, connectivity=3)
        assert euler_delta(bone, block=4) == euler_delta(bone, block=64)


def test_features_do_not_depend_on_the_block_size():
    bone = blobs(shape=(20, 27, 25), seed=3)
    ta = np.zeros(bone.shape, bool)
    ta[:, 3:24, 2:22] = True
    spacing = (0.03, 0.02, 0.02)
    whole = bone_features_3d(bone, spacing, mask=ta, block=64)
    small = bone_features_3d(bone, spacing, mask=ta, block=6)
    for key, value in whole.items():
        assert small[key] == pytest.approx(value, rel=1e-12, abs=0), key
    for key in ("tb_th_lt_mm", "tb_sp_lt_mm", "conn"):
        assert small[key] == whole[key], key  # exact: same sums of the same voxels


def test_itk_blocks_equal_the_whole_volume_filter():
    import itk

    bone = blobs(shape=(15, 22, 19), seed=4)
    ta = np.ones(bone.shape, bool)
    ta[:, :2] = False
    spacing = (0.03, 0.02, 0.01)
    image = itk.image_from_array(bone.astype(np.float32))
    image.SetSpacing([float(s) for s in reversed(spacing)])
    mask = itk.image_from_array(ta.astype(np.uint8))
    mask.SetSpacing([float(s) for s in reversed(spacing)])
    filt = itk.BoneMorphometryFeaturesFilter.New(image)
    filt.SetThreshold(0.5)
    filt.SetMaskImage(mask)
    filt.Update()
    f = bone_features_3d(bone, spacing, mask=ta, block=5, direct=False)
    assert f["bv_tv"] == pytest.approx(filt.GetBVTV(), rel=1e-12)
    assert f["tb_n_per_mm"] == pytest.approx(filt.GetTbN(), rel=1e-12)
    assert f["bs_bv_per_mm"] == pytest.approx(filt.GetBSBV(), rel=1e-12)


@pytest.mark.slow
@pytest.mark.skipif(not DIDSR.is_dir(), reason="shared DIDSR data (../shared/data) absent")
def test_real_vertebra_mask_blockwise_equals_whole_volume():
    from microsr.io import read_volume

    path = sorted(DIDSR.glob("*.nrrd"))[0]
    bone = read_volume(path, spacing_mm=0.0513).array[110:174, 100:180, 90:166] != 0
    spacing = (0.0513,) * 3  # the producers' voxel size (the header has none)
    means = []
    for mask in (bone, ~bone):
        ref = reference_thickness(mask, spacing)
        np.testing.assert_array_equal(local_thickness(mask, spacing, block=40), ref)
        means.append(ref[mask].mean(dtype=np.float64))
    f = structure_features(bone, spacing, block=40)
    assert (f["tb_th_lt_mm"], f["tb_sp_lt_mm"]) == pytest.approx(means, rel=1e-12)
    assert f["conn"] == 1.0 - euler_delta(bone, block=1000)
