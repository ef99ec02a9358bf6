"""Scanco ISQ/AIM through itk-ioscanco: native values, calibration, the library's traps."""

from __future__ import annotations

import logging

import itk  # a hard dependency (itk-ioscanco): an import failure must fail, not skip
import numpy as np
import pytest

from microsr.calibration import to_units
from microsr.errors import InputFileError
from microsr.io import read_volume, write_volume
from microsr.volume import Calibration, Volume

SHAPE = (5, 7, 9)  # (Z, Y, X)
SPACING = (0.03, 0.02, 0.01)  # whole micrometres per axis extent: ISQ keeps them exactly
# a uCT50-like header: MuScaling 4096, MuWater 0.2409 1/cm, HA slope/intercept
CAL = Calibration(1603.51904 / 4096, -391.209015, "mg HA/cm3", 4096.0, 0.2409)


def scanco_volume(*, calibration=CAL, dtype="int16", origin=(0.0, 0.0, 0.0)) -> Volume:
    rng = np.random.default_rng(3)
    array = rng.integers(-1500, 12000, SHAPE).astype(dtype)
    return Volume(array, SPACING, origin, calibration)


@pytest.mark.parametrize("suffix", [".isq", ".aim"])
def test_round_trip_keeps_native_values_spacing_and_calibration(tmp_path, suffix):
    volume = scanco_volume(origin=(0.0, 0.0, 0.0) if suffix == ".isq" else (0.3, 0.2, 0.1))
    back = read_volume(write_volume(volume, tmp_path / f"scan{suffix}"))
    assert back.array.dtype == np.int16
    np.testing.assert_array_equal(back.array, volume.array)  # exact, no HU truncation
    assert back.spacing_mm == pytest.approx(SPACING, rel=1e-6)
    assert back.origin_mm == pytest.approx(volume.origin_mm, abs=1e-6)
    assert back.calibration.slope == pytest.approx(CAL.slope, rel=1e-9)
    assert back.calibration.intercept == pytest.approx(CAL.intercept, rel=1e-9)
    assert back.calibration.mu_scaling == CAL.mu_scaling
    assert back.calibration.mu_water == pytest.approx(CAL.mu_water, rel=1e-6)
    assert back.calibration.units == "mg HA/cm3"
    assert back.metadata["scanco"]["RescaleSlope"] == pytest.approx(1603.51904)


def test_library_alone_returns_truncated_hu_we_return_native(tmp_path):
    """The trap: with a calibration, itk.imread gives int16 HU, not the stored values."""
    volume = scanco_volume()
    path = write_volume(volume, tmp_path / "scan.isq")
    library = itk.array_from_image(itk.imread(str(path), imageio=itk.ScancoImageIO.New()))
    ours = read_volume(path)
    assert not np.array_equal(library, volume.array)
    hu = to_units(ours, "hu").array  # 1000 * (v / MuScaling - MuWater) / MuWater
    assert library.dtype == np.int16
    assert np.max(np.abs(library - hu)) < 1.0  # the library truncates to integers


def test_python_float_metadata_is_silently_dropped_by_the_library(tmp_path):
    """Why the writer sets MetaDataObject[double]: a plain float is ignored."""
    image = itk.image_from_array(np.zeros(SHAPE, np.int16))
    meta = image.GetMetaDataDictionary()
    meta["CreationDate"] = meta["ModificationDate"] = "1-JAN-2020 00:00:00.000"
    meta["MuScaling"] = 4096.0  # stored as a C++ float: ignored by ScancoImageIO
    itk.imwrite(image, str(tmp_path / "x.aim"), imageio=itk.ScancoImageIO.New())
    assert read_volume(tmp_path / "x.aim").metadata["scanco"]["MuScaling"] == 1.0


def test_float32_round_trips_through_aim_but_isq_refuses(tmp_path):
    volume = scanco_volume(calibration=None, dtype="float32").with_array(
        np.linspace(-3.25, 1200.5, np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    )
    back = read_volume(write_volume(volume, tmp_path / "f.aim"))
    np.testing.assert_array_equal(back.array, volume.array)
    with pytest.raises(InputFileError, match=r"f\.isq.*integer"):
        write_volume(volume, tmp_path / "f.isq")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.aim"]


def test_uint8_written_as_int16_and_out_of_range_refused(tmp_path):
    volume = scanco_volume(calibration=None)
    u8 = volume.with_array(np.arange(np.prod(SHAPE), dtype=np.uint8).reshape(SHAPE))
    np.testing.assert_array_equal(read_volume(write_volume(u8, tmp_path / "u.aim")).array, u8.array)
    big = volume.with_array(np.full(SHAPE, 40000, np.int32))
    with pytest.raises(InputFileError, match="int16"):
        write_volume(big, tmp_path / "big.aim")


def test_isq_spacing_quantised_to_micrometres_with_warning(tmp_path, caplog):
    volume = Volume(np.zeros((3, 7, 9), np.int16), (0.0195, 0.0195, 0.0195))
    with caplog.at_level(logging.WARNING):
        back = read_volume(write_volume(volume, tmp_path / "q.isq"))
    assert "whole micrometres" in caplog.text
    assert back.spacing_mm[2] == pytest.approx(0.175 / 9)  # 9 * 19.5 um -> 175 um


def test_uncalibrated_file_has_no_calibration_and_refuses_density(tmp_path):
    back = read_volume(write_volume(scanco_volume(calibration=None), tmp_path / "u.aim"))
    assert back.calibration is None
    with pytest.raises(InputFileError, match=r"u\.aim.*no density calibration"):
        to_units(back, "mgha")
    with pytest.raises(InputFileError, match=r"u\.aim.*MuWater"):
        to_units(back, "hu")


def test_zero_calibration_slope_is_treated_as_absent(tmp_path, caplog):
    image = itk.image_from_array(np.ones(SHAPE, np.int16))
    meta = image.GetMetaDataDictionary()
    meta["CreationDate"] = meta["ModificationDate"] = "1-JAN-2020 00:00:00.000"
    for key, value in {"MuScaling": 4096.0, "MuWater": 0.24, "RescaleSlope": 0.0}.items():
        obj = itk.MetaDataObject[itk.D].New()
        obj.SetMetaDataObjectValue(value)
        meta.Set(key, obj)
    for key, value in {"RescaleIntercept": -391.0}.items():
        obj = itk.MetaDataObject[itk.D].New()
        obj.SetMetaDataObjectValue(value)
        meta.Set(key, obj)
    itk.imwrite(image, str(tmp_path / "z.aim"), imageio=itk.ScancoImageIO.New())
    with caplog.at_level(logging.WARNING):
        back = read_volume(tmp_path / "z.aim")
    assert back.metadata["scanco"]["RescaleSlope"] == 0.0
    assert back.calibration is None and "zero" in caplog.text
    with pytest.raises(InputFileError, match=r"z\.aim.*absent or zero"):
        to_units(back, "mgha")


@pytest.mark.parametrize("suffix", [".isq", ".aim"])
def test_truncated_and_garbage_files(tmp_path, suffix):
    path = write_volume(scanco_volume(), tmp_path / f"ok{suffix}")
    data = path.read_bytes()
    (tmp_path / f"cut{suffix}").write_bytes(data[:-11])
    with pytest.raises(InputFileError, match=rf"cut\{suffix}.*truncated"):
        read_volume(tmp_path / f"cut{suffix}")
    (tmp_path / f"junk{suffix}").write_bytes(b"not a scanco file" * 40)
    with pytest.raises(InputFileError, match=rf"junk\{suffix}.*cannot read"):
        read_volume(tmp_path / f"junk{suffix}")


@pytest.mark.parametrize("target", ["v.tif", "v.mha", "v.nrrd", "v.aim", "v.isq", "slices"])
def test_every_writer_keeps_array_spacing_and_calibration(tmp_path, target):
    volume = scanco_volume()
    back = read_volume(write_volume(volume, tmp_path / target))
    np.testing.assert_array_equal(back.array, volume.array)
    assert back.spacing_mm == pytest.approx(SPACING, rel=1e-6)
    density = CAL.apply(volume.array)
    np.testing.assert_allclose(back.calibration.apply(back.array), density, rtol=1e-5, atol=1e-3)


def test_nifti_keeps_array_and_slope_intercept_of_a_user_calibration(tmp_path, caplog):
    """NIfTI's 80-byte descrip cannot hold the Scanco fields: a warning says so."""
    with caplog.at_level(logging.WARNING):
        read_volume(write_volume(scanco_volume(), tmp_path / "s.nii.gz"))
    assert "not kept" in caplog.text
    user = scanco_volume(calibration=Calibration(0.391484, -391.209))
    back = read_volume(write_volume(user, tmp_path / "u.nii.gz"))
    np.testing.assert_array_equal(back.array, user.array)
    assert back.calibration == user.calibration
