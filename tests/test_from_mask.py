"""Grey-level HR scans from binary masks (microsr.simulate.from_mask)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED_DATA
from typer.testing import CliRunner

from microsr.cli import app
from microsr.errors import InputFileError
from microsr.io import read_volume, write_volume
from microsr.morphometry.structure import mean_local_thickness
from microsr.simulate import MaskGreyConfig, grey_from_mask, read_mask
from microsr.simulate.from_mask import bone_fraction, check_mask
from microsr.volume import Volume

SPACING = (0.05, 0.05, 0.05)


def _plate(thickness: int, shape=(40, 21, 19)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    start = (shape[0] - thickness) // 2
    mask[start : start + thickness] = 1
    return mask


@pytest.mark.parametrize("thickness", [3, 6])
def test_plate_thickness_and_bv_tv_come_back_within_a_voxel(thickness):
    mask = _plate(thickness)
    config = MaskGreyConfig()
    grey = grey_from_mask(mask, SPACING, config, seed=3)
    bone = grey.array > config.midpoint_mgha
    # BV/TV of a plate across Z: thickness / Z, within one voxel of thickness
    assert abs(bone.mean() - thickness / mask.shape[0]) <= 1.0 / mask.shape[0]
    # every XY column crosses the plate once: its bone count is the measured thickness
    per_column = bone.sum(axis=0)
    assert np.all(np.abs(per_column - thickness) <= 1)
    th = mean_local_thickness(bone, SPACING)
    assert abs(th - thickness * SPACING[0]) <= SPACING[0] * (1 + 1e-5)  # odd t reads t + 1


def test_intensities_in_mgha_with_tissue_and_marrow_levels():
    mask = _plate(8)
    config = MaskGreyConfig()
    grey = grey_from_mask(mask, SPACING, config, seed=0)
    assert grey.calibration.units == "mg HA/cm3" and grey.array.dtype == np.float32
    assert grey.metadata["from_mask"]["note"].startswith("synthetic intensities")
    core = grey.array[18:22]  # plate centre, away from the surface
    far = grey.array[:8]
    assert abs(core.mean() - config.tissue_mgha) < 3 * config.tissue_sd_mgha
    assert abs(far.mean() - config.marrow_mgha) < 3 * config.marrow_sd_mgha


def test_partial_volume_is_sub_voxel_and_keeps_each_voxel_on_its_side():
    rng = np.random.default_rng(0)
    mask = rng.random((16, 17, 18)) < 0.3
    frac = bone_fraction(mask, 0.7)
    assert np.all(frac[mask] > 0.5) and np.all(frac[~mask] < 0.5)
    assert ((frac > 0.05) & (frac < 0.95)).any()  # not just 0/1: partial volume exists


def test_same_seed_same_volume_other_seed_other_volume():
    mask = _plate(4, shape=(16, 16, 16))
    a = grey_from_mask(mask, SPACING, seed=5).array
    b = grey_from_mask(mask, SPACING, seed=5).array
    c = grey_from_mask(mask, SPACING, seed=6).array
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.array([0, 1, 2]), "not a binary mask"),
        (np.array([0, 0]), "empty mask"),
        (np.array([255, 255]), "all bone"),
    ],
)
def test_bad_masks(values, message):
    array = np.resize(values, (4, 4, 4))
    with pytest.raises(InputFileError, match=message):
        check_mask(array, name="m.nrrd")


def test_0_255_masks_are_binary():
    assert check_mask(np.resize(np.array([0, 255]), (4, 4, 4))).sum() == 32


def test_mask_without_spacing_needs_spacing(tmp_path):
    path = write_volume(Volume(_plate(4, (8, 8, 8)), (1.0, 1.0, 1.0)), tmp_path / "m.nrrd")
    with pytest.raises(InputFileError, match="--spacing"):
        read_mask(path)
    mask, spacing = read_mask(path, spacing_mm=0.05)
    assert spacing == SPACING and mask.dtype == bool


def test_cli_from_mask_writes_grey_scan(tmp_path):
    path = write_volume(Volume(_plate(4, (12, 12, 12)), (1.0,) * 3), tmp_path / "m.nrrd")
    out = tmp_path / "grey.mha"
    args = ["phantom", "--from-mask", str(path), str(out), "--spacing", "0.05", "--seed", "1"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    grey = read_volume(out)
    assert grey.shape == (12, 12, 12) and grey.spacing_mm == SPACING


@pytest.mark.skipif(
    not (SHARED_DATA.parent / "didsr_vertebra_rois").is_dir(), reason="shared DIDSR data absent"
)
def test_didsr_roi_keeps_its_bv_tv():
    path = sorted((SHARED_DATA.parent / "didsr_vertebra_rois").glob("*.nrrd"))[0]
    mask, spacing = read_mask(path, spacing_mm=0.0513)
    mask = mask[:48, :48, :48]
    config = MaskGreyConfig()
    grey = grey_from_mask(mask, spacing, config, seed=0)
    bv_tv = (grey.array > config.midpoint_mgha).mean()
    assert abs(bv_tv - mask.mean()) < 0.03


def test_mask_folder_becomes_a_manifest_with_subjects_and_truth(tmp_path):
    from microsr.data.manifest import read_manifest
    from microsr.study.masks import mask_manifest

    masks = tmp_path / "masks"
    masks.mkdir()
    rng = np.random.default_rng(0)
    for name in ("roi_1_d1", "roi_5_d1", "roi_2_d2"):
        blob = ndimage_blobs(rng)
        write_volume(Volume(blob, (1.0,) * 3), masks / f"{name}.nrrd")
    manifest = mask_manifest(masks, tmp_path / "data", spacing_mm=0.05, crop=16)
    rows = read_manifest(manifest)
    assert [r.specimen for r in rows] == ["roi_1_d1", "roi_2_d2", "roi_5_d1"]
    assert [r.extra["subject"] for r in rows] == ["d1", "d2", "d1"]
    truth = read_volume(rows[0].truth_path)
    assert truth.shape == (16, 16, 16) and truth.spacing_mm == SPACING
    hr = read_volume(rows[0].hr_path)
    assert hr.shape == (16, 16, 16) and hr.calibration.units == "mg HA/cm3"
    assert read_volume(rows[0].lr_path).shape == (8, 8, 8)


def test_mask_specimens_are_seeded_by_id_not_by_position(tmp_path):
    """A mask's grey HR and LR scan depend on the seed and its id only
    (:mod:`microsr.data.simulated`): the same mask alone in a folder, or after another,
    gives the same volumes; another id gives other ones."""
    from microsr.data.manifest import read_manifest
    from microsr.study.masks import mask_manifest

    blob = ndimage_blobs(np.random.default_rng(0))
    scans = {}
    for folder, names in (("alone", ["roi_2_d2"]), ("after", ["roi_1_d1", "roi_2_d2"])):
        (tmp_path / folder).mkdir()
        for name in names:
            write_volume(Volume(blob, (1.0,) * 3), tmp_path / folder / f"{name}.nrrd")
        manifest = mask_manifest(
            tmp_path / folder, tmp_path / f"{folder}_data", spacing_mm=0.05, crop=16
        )
        scans[folder] = {
            r.specimen: (read_volume(r.hr_path).array, read_volume(r.lr_path).array)
            for r in read_manifest(manifest)
        }
    for alone, after in zip(scans["alone"]["roi_2_d2"], scans["after"]["roi_2_d2"], strict=True):
        np.testing.assert_array_equal(alone, after)
    # the same mask under another id is painted and scanned with other noise
    assert not np.array_equal(scans["after"]["roi_1_d1"][1], scans["after"]["roi_2_d2"][1])


def ndimage_blobs(rng: np.random.Generator, shape=(20, 20, 20)) -> np.ndarray:
    """A random bone-like binary mask (smoothed noise above its 70th percentile)."""
    from scipy import ndimage

    field = ndimage.gaussian_filter(rng.standard_normal(shape), 1.5)
    return (field > np.quantile(field, 0.7)).astype(np.uint8)
