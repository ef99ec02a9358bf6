"""Tests for microsr.io: round trips, axis order, bad input, atomic writes, DICOM."""

from __future__ import annotations

import gzip
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import tifffile

import microsr.io.tiff as tiff_io
from microsr.errors import InputFileError, MicrosrError
from microsr.io import SUPPORTED_FORMATS, itk_formats, read_volume, write_volume
from microsr.io.atomic import atomic_path
from microsr.io.tiff import natural_key
from microsr.volume import Calibration, Volume

SHAPE = (5, 7, 9)  # (Z, Y, X): all different so a transposition cannot pass
SPACING = (0.03, 0.02, 0.01)  # (z, y, x) mm, anisotropic
ORIGIN = (1.5, -2.0, 3.25)  # (z, y, x) mm
CAL = Calibration(slope=0.5, intercept=-100.0, units="mg HA/cm3")
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "lhdl_3155_D_4_bc"

TARGETS = [
    "vol.tif",
    "slices",
    "vol.nii",
    "vol.nii.gz",
    "vol.mha",
    "vol.mhd",
    "vol.nrrd",
    "vol.nhdr",
]
DTYPES = ["uint8", "uint16", "int16", "float32"]


def make_volume(dtype: str = "int16", *, calibration: Calibration | None = CAL) -> Volume:
    """A (5, 7, 9) volume whose values are unique per voxel (within the dtype)."""
    rng = np.random.default_rng(42)
    info = np.finfo(dtype) if dtype.startswith("float") else np.iinfo(dtype)
    low, high = max(info.min, -1000), min(info.max, 1000)
    array = rng.uniform(low, high, SHAPE).astype(dtype)
    return Volume(array, SPACING, ORIGIN, calibration, {"note": "test"})


def folder_listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- round trips -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target", TARGETS)
def test_round_trip(tmp_path, target, dtype):
    volume = make_volume(dtype)
    out = write_volume(volume, tmp_path / "out" / target)
    assert out == tmp_path / "out" / target
    back = read_volume(out)
    assert back.array.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.array, volume.array)
    assert back.spacing_mm == SPACING
    assert back.origin_mm == ORIGIN
    assert back.calibration == CAL


@pytest.mark.parametrize("dtype", ["int32", "uint32", "int8"])
def test_tiff_round_trip_non_imagej_dtypes(tmp_path, dtype):
    volume = make_volume(dtype)
    back = read_volume(write_volume(volume, tmp_path / "vol.tif"))
    assert back.array.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.array, volume.array)
    assert (back.spacing_mm, back.origin_mm, back.calibration) == (SPACING, ORIGIN, CAL)
    assert back.metadata["note"] == "test"


@pytest.mark.parametrize("dtype", [*DTYPES, "int32"])
@pytest.mark.parametrize("n_slices", [1, 3, 4])
@pytest.mark.parametrize("target", ["vol.tif", "slices"])
def test_tiff_round_trip_few_slices(tmp_path, target, n_slices, dtype):
    # tifffile's defaults would store (3 or 4, Y, X) as one RGB(A) page
    volume = make_volume(dtype)
    volume = volume.with_array(volume.array[:n_slices])
    back = read_volume(write_volume(volume, tmp_path / target))
    assert back.array.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.array, volume.array)
    assert back.spacing_mm == SPACING


def test_plain_tiff_with_planar_samples_reads_as_slices(tmp_path):
    array = np.arange(4 * 16 * 16, dtype=np.uint16).reshape(4, 16, 16)
    tifffile.imwrite(tmp_path / "four.tif", array)  # stored as one planar RGBA page
    np.testing.assert_array_equal(read_volume(tmp_path / "four.tif", spacing_mm=0.1).array, array)


def test_tiff_float64_written_as_float32(tmp_path, caplog):
    volume = make_volume("float32").with_array(make_volume("float32").array.astype(np.float64))
    with caplog.at_level(logging.INFO, logger="microsr.io"):
        back = read_volume(write_volume(volume, tmp_path / "vol.tif"))
    assert back.array.dtype == np.float32
    np.testing.assert_array_equal(back.array, volume.array.astype(np.float32))
    assert "float64" in caplog.text


def test_tiff_written_is_imagej_compatible(tmp_path):
    write_volume(make_volume("uint16"), tmp_path / "vol.tif")
    with tifffile.TiffFile(tmp_path / "vol.tif") as tif:
        meta = tif.imagej_metadata
        xres = tif.pages[0].tags["XResolution"].value
    assert meta["unit"] == "mm" and meta["spacing"] == pytest.approx(0.03)
    assert xres[1] / xres[0] == pytest.approx(0.01)


def test_volume_without_calibration_round_trips_none(tmp_path):
    for target in ("vol.tif", "vol.nii.gz", "vol.mha"):
        back = read_volume(write_volume(make_volume(calibration=None), tmp_path / target))
        assert back.calibration is None


# --- (x, y, z) <-> (z, y, x) -------------------------------------------------------


def test_itk_file_we_write_has_xyz_geometry(tmp_path):
    volume = make_volume("int16")
    write_volume(volume, tmp_path / "vol.mha")
    image = sitk.ReadImage(str(tmp_path / "vol.mha"))
    assert image.GetSize() == (9, 7, 5)
    assert image.GetSpacing() == pytest.approx((0.01, 0.02, 0.03))
    assert image.GetOrigin() == pytest.approx((3.25, -2.0, 1.5))
    assert image.GetPixel(3, 2, 1) == volume.array[1, 2, 3]  # ITK index (x, y, z)


def test_itk_file_written_by_simpleitk_reads_as_zyx(tmp_path):
    array = np.arange(np.prod(SHAPE), dtype=np.uint16).reshape(SHAPE)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.01, 0.02, 0.03))
    image.SetOrigin((10.0, 20.0, 30.0))
    sitk.WriteImage(image, str(tmp_path / "ext.nrrd"))
    volume = read_volume(tmp_path / "ext.nrrd")
    assert volume.shape == SHAPE
    assert volume.spacing_mm == (0.03, 0.02, 0.01)
    assert volume.origin_mm == (30.0, 20.0, 10.0)
    np.testing.assert_array_equal(volume.array, array)


def test_non_identity_direction_kept_with_warning(tmp_path, caplog):
    image = sitk.GetImageFromArray(np.zeros(SHAPE, np.uint8))
    image.SetSpacing((0.01, 0.02, 0.03))
    direction = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    image.SetDirection(direction)
    sitk.WriteImage(image, str(tmp_path / "rot.mha"))
    with caplog.at_level(logging.WARNING):
        volume = read_volume(tmp_path / "rot.mha")
    assert volume.metadata["direction"] == pytest.approx(direction)
    assert "direction" in caplog.text
    again = sitk.ReadImage(str(write_volume(volume, tmp_path / "again.mha")))
    assert again.GetDirection() == pytest.approx(direction)


def test_2d_file_is_one_slice_volume(tmp_path):
    image = sitk.GetImageFromArray(np.ones((7, 9), np.float32))
    image.SetSpacing((0.01, 0.02))
    sitk.WriteImage(image, str(tmp_path / "plane.mha"))
    volume = read_volume(tmp_path / "plane.mha")
    assert volume.shape == (1, 7, 9)
    assert volume.spacing_mm[1:] == (0.02, 0.01)


# --- TIFF spacing and slice order ---------------------------------------------------


def test_natural_sort_order_of_slices(tmp_path):
    folder = tmp_path / "stack"
    folder.mkdir()
    for index in (10, 2, 1, 0, 11):
        tifffile.imwrite(folder / f"scan_{index}.tif", np.full((7, 9), index, np.uint8))
    volume = read_volume(folder, spacing_mm=0.02)
    assert volume.array[:, 0, 0].tolist() == [0, 1, 2, 10, 11]
    assert sorted(["s_10", "s_2", "S_1"], key=natural_key) == ["S_1", "s_2", "s_10"]


def test_plain_tiff_needs_spacing(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros(SHAPE, np.uint16))
    with pytest.raises(InputFileError, match="plain.tif.*no voxel spacing.*--spacing"):
        read_volume(tmp_path / "plain.tif")
    assert read_volume(tmp_path / "plain.tif", spacing_mm=0.05).spacing_mm == (0.05,) * 3
    given = read_volume(tmp_path / "plain.tif", spacing_mm=[0.03, 0.02, 0.01])
    assert given.spacing_mm == SPACING and given.shape == SHAPE


def test_plain_tiff_folder_needs_spacing(tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    for index in range(3):
        tifffile.imwrite(folder / f"p{index}.tiff", np.zeros((7, 9), np.uint8))
    with pytest.raises(InputFileError, match="plain.*no voxel spacing"):
        read_volume(folder)
    assert read_volume(folder, spacing_mm=0.1).shape == (3, 7, 9)


@pytest.mark.parametrize("bad", [0.0, -1.0, (0.1, 0.2), "abc", float("nan")])
def test_bad_user_spacing(tmp_path, bad):
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros(SHAPE, np.uint16))
    with pytest.raises(MicrosrError, match="spacing"):
        read_volume(tmp_path / "plain.tif", spacing_mm=bad)


def test_user_spacing_overrides_stored_with_warning(tmp_path, caplog):
    path = write_volume(make_volume(), tmp_path / "vol.nrrd")
    with caplog.at_level(logging.WARNING):
        volume = read_volume(path, spacing_mm=(0.3, 0.2, 0.1))
    assert volume.spacing_mm == (0.3, 0.2, 0.1)
    assert "using the given" in caplog.text


def test_imagej_micron_unit_converted_to_mm(tmp_path):
    tifffile.imwrite(
        tmp_path / "ij.tif",
        np.zeros(SHAPE, np.uint8),
        imagej=True,
        resolution=(1 / 10.0, 1 / 20.0),  # pixels per micron
        metadata={"spacing": 30.0, "unit": "micron", "axes": "ZYX"},
    )
    assert read_volume(tmp_path / "ij.tif").spacing_mm == pytest.approx(SPACING)


def test_resolution_tags_used_only_with_unit(tmp_path):
    plane = np.zeros((7, 9), np.uint8)
    tifffile.imwrite(tmp_path / "cm.tif", plane, resolution=(1000.0, 500.0), resolutionunit=3)
    assert read_volume(tmp_path / "cm.tif").spacing_mm == pytest.approx((0.01, 0.02, 0.01))
    tifffile.imwrite(tmp_path / "none.tif", plane, resolution=(1000.0, 500.0), resolutionunit=1)
    with pytest.raises(InputFileError, match="no voxel spacing"):
        read_volume(tmp_path / "none.tif")


# --- bad input ------------------------------------------------------------------------


def test_missing_path(tmp_path):
    with pytest.raises(InputFileError, match="nothere.nii"):
        read_volume(tmp_path / "nothere.nii")


def test_unknown_extension_lists_formats(tmp_path):
    (tmp_path / "scan.xyz").write_bytes(b"data")
    with pytest.raises(InputFileError, match=r"scan\.xyz.*\.nii\.gz") as info:
        read_volume(tmp_path / "scan.xyz")
    assert ".tif" in str(info.value) and ".nrrd" in str(info.value)
    with pytest.raises(InputFileError, match="out.xyz"):
        write_volume(make_volume(), tmp_path / "out.xyz")
    assert ".mha" in SUPPORTED_FORMATS


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("target", ["vol.tif", "vol.nii", "vol.nii.gz", "vol.mha", "vol.nrrd"])
def test_truncated_file(tmp_path, target):
    path = write_volume(make_volume("float32"), tmp_path / target)
    _truncate(path)
    with pytest.raises(InputFileError, match=target.replace(".", r"\.")):
        read_volume(path)


@pytest.mark.parametrize("target", ["junk.tif", "junk.nii.gz", "junk.nii", "junk.mha"])
def test_garbage_file(tmp_path, target):
    path = tmp_path / target
    path.write_bytes(b"this is not an image\n" * 50)
    with pytest.raises(InputFileError, match=target.replace(".", r"\.")):
        read_volume(path)


def test_gzip_of_garbage_nifti(tmp_path):
    path = tmp_path / "gz.nii.gz"
    path.write_bytes(gzip.compress(b"\x01\x02garbage" * 100))
    with pytest.raises(InputFileError, match=r"gz\.nii\.gz"):
        read_volume(path)


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hi")
    with pytest.raises(InputFileError, match="empty.*no TIFF slices"):
        read_volume(tmp_path / "empty", spacing_mm=0.1)


def test_folder_with_mismatched_slices(tmp_path):
    folder = tmp_path / "stack"
    folder.mkdir()
    tifffile.imwrite(folder / "s_1.tif", np.zeros((7, 9), np.uint8))
    tifffile.imwrite(folder / "s_2.tif", np.zeros((7, 9), np.uint8))
    tifffile.imwrite(folder / "s_10.tif", np.zeros((7, 8), np.uint8))
    with pytest.raises(InputFileError, match=r"s_10\.tif.*\(7, 8\).*s_1\.tif.*\(7, 9\)"):
        read_volume(folder, spacing_mm=0.1)


def test_rgb_tiff_is_an_error(tmp_path):
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((7, 9, 3), np.uint8), photometric="rgb")
    with pytest.raises(InputFileError, match=r"rgb\.tif.*RGB"):
        read_volume(tmp_path / "rgb.tif", spacing_mm=0.1)


def test_4d_files_are_errors(tmp_path):
    tifffile.imwrite(
        tmp_path / "hyper.tif", np.zeros((2, 3, 7, 9), np.uint8), imagej=True,
        metadata={"axes": "ZCYX"},
    )  # fmt: skip
    with pytest.raises(InputFileError, match=r"hyper\.tif"):
        read_volume(tmp_path / "hyper.tif", spacing_mm=0.1)
    vector = sitk.GetImageFromArray(np.zeros((*SHAPE, 3), np.float32), isVector=True)
    sitk.WriteImage(vector, str(tmp_path / "vec.mha"))
    with pytest.raises(InputFileError, match=r"vec\.mha.*3 component"):
        read_volume(tmp_path / "vec.mha")
    sitk.WriteImage(sitk.Image([3, 4, 5, 2], sitk.sitkUInt8), str(tmp_path / "four.nrrd"))
    with pytest.raises(InputFileError, match=r"four\.nrrd.*4D"):
        read_volume(tmp_path / "four.nrrd")


def test_nonfinite_voxels(tmp_path):
    volume = make_volume("float32")
    array = volume.array.copy()
    array[0, 0, :2] = np.nan
    array[4, 6, 8] = np.inf
    path = write_volume(volume.with_array(array), tmp_path / "nan.mha")
    with pytest.raises(InputFileError, match=r"nan\.mha.*3 of 315 voxels are NaN or Inf"):
        read_volume(path)
    assert np.isnan(read_volume(path, allow_nonfinite=True).array).sum() == 2


def test_reading_does_not_modify_inputs(tmp_path):
    paths = [write_volume(make_volume(), tmp_path / t) for t in ("a.tif", "a.mhd", "a.nii.gz")]
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir()}
    for path in paths:
        read_volume(path)
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir()}
    assert before == after


# --- atomic writes --------------------------------------------------------------------


def _failing(real):
    """A writer that creates its output (as the real one would) and then fails."""

    def writer(*args, **kwargs):
        real(*args, **kwargs)
        raise RuntimeError("disk full (simulated)")

    return writer


@pytest.mark.parametrize("target", ["vol.tif", "slices", "vol.nii.gz", "vol.mhd"])
def test_failed_write_leaves_nothing(tmp_path, monkeypatch, target):
    monkeypatch.setattr(tiff_io.tifffile, "imwrite", _failing(tifffile.imwrite))
    monkeypatch.setattr(itk_formats.sitk, "WriteImage", _failing(sitk.WriteImage))
    out = tmp_path / "out"
    with pytest.raises((InputFileError, RuntimeError), match="disk full"):
        write_volume(make_volume(), out / target)
    assert folder_listing(out) == []


def test_failed_write_keeps_existing_target(tmp_path, monkeypatch):
    old = make_volume("uint8")
    write_volume(old, tmp_path / "vol.tif")
    write_volume(old, tmp_path / "slices")
    monkeypatch.setattr(tiff_io.tifffile, "imwrite", _failing(tifffile.imwrite))
    for target in ("vol.tif", "slices"):
        with pytest.raises((InputFileError, RuntimeError), match="disk full"):
            write_volume(make_volume("uint16"), tmp_path / target, overwrite=True)
        assert read_volume(tmp_path / target).array.dtype == np.uint8
    assert folder_listing(tmp_path) == ["slices", "vol.tif"]


def test_atomic_path_replaces_folder_only_on_success(tmp_path):
    target = tmp_path / "dir"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(FileExistsError), atomic_path(target, directory=True) as tmp:
        (tmp / "new.txt").write_text("new")  # a folder microsr does not own is never replaced
    assert folder_listing(target) == ["old.txt"]
    with atomic_path(target, directory=True, replace_folder=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert folder_listing(target) == ["new.txt"]
    with pytest.raises(ValueError), atomic_path(target, directory=True, replace_folder=True) as tmp:
        (tmp / "newer.txt").write_text("newer")
        raise ValueError("boom")
    assert folder_listing(target) == ["new.txt"]
    assert folder_listing(tmp_path) == ["dir"]


def test_rewriting_folder_drops_old_slices(tmp_path):
    write_volume(make_volume(), tmp_path / "slices")
    small = Volume(np.zeros((2, 3, 4), np.uint8), SPACING)
    write_volume(small, tmp_path / "slices", overwrite=True)
    assert folder_listing(tmp_path / "slices") == ["slice_0000.tif", "slice_0001.tif"]
    assert read_volume(tmp_path / "slices").shape == (2, 3, 4)


# --- DICOM ----------------------------------------------------------------------------


def write_dicom_series(
    folder: Path, array: np.ndarray, *, series_uid: str, spacing=SPACING, origin=ORIGIN
) -> None:
    """Write ``array`` (Z, Y, X) as one DICOM file per slice, file names reversed."""
    folder.mkdir(parents=True, exist_ok=True)
    sz, sy, sx = spacing
    oz, oy, ox = origin
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for index in range(array.shape[0]):
        image = sitk.GetImageFromArray(array[index])
        position = (ox, oy, oz + index * sz)
        tags = {
            "0008|0060": "CT",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
            "0020|000e": series_uid,
            "0008|0018": f"{series_uid}.{index + 1}",
            "0020|0013": str(index + 1),
            "0020|0032": "\\".join(f"{v:.6f}" for v in position),
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0028|0030": f"{sy:.6f}\\{sx:.6f}",
            "0018|0050": f"{sz:.6f}",
        }
        for key, value in tags.items():
            image.SetMetaData(key, value)
        image.SetSpacing((sx, sy))
        writer.SetFileName(str(folder / f"img{array.shape[0] - index:03d}.dcm"))
        writer.Execute(image)


def test_dicom_series_round_trip(tmp_path):
    array = make_volume("int16").array
    write_dicom_series(tmp_path / "dicom", array, series_uid="1.2.826.0.1.3680043.2.1125.2")
    volume = read_volume(tmp_path / "dicom")
    assert volume.shape == SHAPE
    np.testing.assert_array_equal(volume.array, array)  # slice order from positions
    assert volume.spacing_mm == pytest.approx(SPACING)
    assert volume.origin_mm == pytest.approx(ORIGIN)


def test_dicom_folder_with_two_series(tmp_path):
    array = make_volume("int16").array
    write_dicom_series(tmp_path / "mixed", array, series_uid="1.2.826.0.1.3680043.2.1125.3")
    write_dicom_series(tmp_path / "other", array[:3], series_uid="1.2.826.0.1.3680043.2.1125.4")
    for path in (tmp_path / "other").iterdir():
        path.rename(tmp_path / "mixed" / f"b_{path.name}")
    with pytest.raises(InputFileError, match=r"mixed.*2 DICOM series"):
        read_volume(tmp_path / "mixed")


def test_unreadable_dcm_files(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.dcm").write_bytes(b"not dicom")
    with pytest.raises(InputFileError, match="bad.*dcm"):
        read_volume(tmp_path / "bad")


# --- real data (shared, optional) ---------------------------------------------------------


@pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"shared sample data not present at {SHARED_DATA}"
)
def test_shared_lhdl_slices():
    volume = read_volume(SHARED_DATA, spacing_mm=0.0195)
    assert volume.shape == (200, 200, 200)
    assert volume.array.dtype == np.uint8
    assert volume.spacing_mm == (0.0195,) * 3


def test_no_temp_files_left_after_success(tmp_path):
    for target in TARGETS:
        write_volume(make_volume(), tmp_path / target)
    leftovers = [name for name in os.listdir(tmp_path) if name.startswith(".")]
    assert leftovers == []
