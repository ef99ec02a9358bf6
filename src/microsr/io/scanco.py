"""Scanco ISQ and AIM volumes through ``itk-ioscanco`` (``itk.ScancoImageIO``).

The header is decoded and the voxels are read by the library; this module only works
around its traps, each covered by a test in ``tests/test_scanco.py``:

- **HU on read.** When the header holds a calibration (slope/intercept not 1/0,
  ``MuScaling > 1``, ``MuWater > 0``) the library converts voxels to Hounsfield units
  and truncates them to the file's integer type, which loses the native values. We
  read the header first, then set ``MuScaling`` to 1 on the image IO before the voxels
  are read, so the array holds the native Scanco integers
  (``mu = value / MuScaling``, in 1/cm).
- **Scanco units on write.** Symmetrically the writer converts the buffer from HU to
  native values (truncating). The header is written by the library; the voxel block
  (the last ``nbytes`` of the uncompressed file) is then overwritten with the array's
  own little-endian bytes, so native values round-trip exactly.
- **Dates.** Writing needs ``CreationDate`` and ``ModificationDate``
  (``"1-JAN-2020 00:00:00.000"``); the ones read from a Scanco file are reused, else
  the current time is used. (The library's ISQ date encoding is off by a day or so.)
- **Float metadata** must be ``MetaDataObject[double]``: a Python float becomes a
  ``float`` object that the library silently ignores.
- **float32** does not round-trip through ISQ; it does through AIM. ISQ takes
  integer data only (stored as int16).

Geometry: the spacing (mm) is kept; ISQ stores the physical size in whole micrometres,
so its spacing can change slightly (a warning says so); ISQ stores no origin (reads as
0); AIM stores the origin as whole voxels. The density calibration
(``density = RescaleSlope * value / MuScaling + RescaleIntercept``) becomes a
:class:`~microsr.volume.Calibration` with ``slope = RescaleSlope / MuScaling``; all
scalar header fields are kept in ``metadata["scanco"]``.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from microsr.errors import InputFileError
from microsr.io.atomic import atomic_path
from microsr.io.spacing import SPACING_SAME_RTOL
from microsr.volume import Calibration, Volume

logger = logging.getLogger(__name__)

SCANCO_FORMATS = {".isq": "ISQ", ".aim": "AIM"}
_DATE_KEYS = ("CreationDate", "ModificationDate")
_DOUBLE_KEYS = ("MuScaling", "MuWater", "RescaleSlope", "RescaleIntercept")
_UNIT_NAMES = {"mg ha/ccm": "mg HA/cm3", "mg ha/cm3": "mg HA/cm3", "mg ha/cm^3": "mg HA/cm3"}


def read_scanco_file(path: Path, suffix: str) -> tuple[np.ndarray, dict]:
    """Read an ISQ or AIM file with its native (not HU-rescaled) voxel values.

    Parameters
    ----------
    path
        The file; ``suffix`` (``".isq"`` or ``".aim"``) names its format.

    Returns
    -------
    array
        Native Scanco values, shape ``(Z, Y, X)``, in the file's dtype.
    header
        ``spacing_mm``, ``origin_mm`` (``(z, y, x)``, mm), ``calibration`` (or
        ``None`` when the header holds none, or a zero slope) and ``metadata``
        (``metadata["scanco"]``: the scalar header fields).

    Raises
    ------
    InputFileError
        Not a Scanco file, a truncated file, or an unsupported voxel type.
    """
    import itk  # slow import: only when a Scanco file is read

    fmt = SCANCO_FORMATS[suffix]
    io = itk.ScancoImageIO.New()
    try:
        io.SetFileName(str(path))
        io.ReadImageInformation()
        pixel = _itk_pixel(itk, io, path)
        reader = itk.ImageFileReader[itk.Image[pixel, 3]].New(FileName=str(path), ImageIO=io)
        reader.UpdateOutputInformation()  # (re)reads the header into ``io``
        fields = _header_fields(io, reader.GetOutput().GetMetaDataDictionary())
        io.SetMuScaling(1.0)  # disables the library's HU rescaling of the voxels
        reader.Update()
        image = reader.GetOutput()
    except RuntimeError as exc:
        raise InputFileError(path, f"cannot read {fmt} file: {_message(exc)}") from exc
    array = np.array(itk.array_view_from_image(image))  # copy: the view dies with ``image``
    spacing = tuple(float(s) for s in image.GetSpacing())[::-1]
    origin = tuple(float(o) for o in image.GetOrigin())[::-1]
    calibration = scanco_calibration(path, fields)
    return array, {
        "spacing_mm": spacing,
        "origin_mm": origin,
        "calibration": calibration,
        "metadata": {"scanco": fields},
    }


def scanco_calibration(path: Path, fields: dict) -> Calibration | None:
    """Density calibration from Scanco header fields (``None`` if absent or zero).

    Scanco convention: ``density = RescaleSlope * value / MuScaling + RescaleIntercept``
    in ``RescaleUnits`` (usually mg HA/cm3).
    """
    slope, intercept = fields.get("RescaleSlope", 1.0), fields.get("RescaleIntercept", 0.0)
    mu_scaling, mu_water = fields.get("MuScaling", 1.0), fields.get("MuWater")
    if (slope, intercept) == (1.0, 0.0):
        return None
    if slope == 0 or not mu_scaling or mu_scaling <= 0:
        logger.warning(
            "%s: density calibration in the header is zero (RescaleSlope %s, MuScaling %s); "
            "treating the volume as uncalibrated",
            path,
            slope,
            mu_scaling,
        )
        return None
    units = str(fields.get("RescaleUnits") or "mg HA/cm3")
    return Calibration(
        slope=slope / mu_scaling,
        intercept=intercept,
        units=_UNIT_NAMES.get(units.strip().lower(), units.strip()),
        mu_scaling=mu_scaling,
        mu_water=mu_water if mu_water and mu_water > 0 else None,
    )


def write_scanco_file(volume: Volume, path: Path, suffix: str) -> None:
    """Write ``volume`` atomically as ISQ (integer data) or AIM (int16 or float32).

    Raises
    ------
    InputFileError
        Data the format cannot hold (float for ISQ, integers beyond int16).
    """
    import itk

    array = _scanco_array(volume, path, suffix)
    _warn_geometry(volume, path, suffix)
    image = itk.image_from_array(np.ascontiguousarray(array))
    image.SetSpacing([float(s) for s in volume.spacing_mm[::-1]])
    image.SetOrigin([float(o) for o in volume.origin_mm[::-1]])
    _set_header(itk, image.GetMetaDataDictionary(), volume)
    with atomic_path(path) as tmp:
        itk.imwrite(image, str(tmp), imageio=itk.ScancoImageIO.New())
        _overwrite_voxels(tmp, array)


def _itk_pixel(itk, io, path: Path):
    names = {"short": itk.SS, "unsigned_short": itk.US, "unsigned_char": itk.UC}
    names |= {"char": itk.UC, "int": itk.SI, "float": itk.F}
    kind = io.GetComponentTypeAsString(io.GetComponentType())
    if io.GetNumberOfComponents() != 1 or kind not in names:
        raise InputFileError(
            path, f"unsupported Scanco voxel type {kind} x {io.GetNumberOfComponents()}"
        )
    return names[kind]


def _header_fields(io, dictionary) -> dict:
    """Scalar header fields that Python can read (some vectors cannot be downcast)."""
    fields: dict = {}
    for key in dictionary.GetKeys():
        try:
            value = dictionary[key]
        except (RuntimeError, TypeError, KeyError):
            continue
        if isinstance(value, (str, int, float)):
            fields[key] = value.strip() if isinstance(value, str) else value
    # getters give the header values as decoded (the dictionary may lag behind)
    fields.update(
        MuScaling=float(io.GetMuScaling()),
        MuWater=float(io.GetMuWater()),
        RescaleSlope=float(io.GetRescaleSlope()),
        RescaleIntercept=float(io.GetRescaleIntercept()),
        RescaleUnits=str(io.GetRescaleUnits()).strip(),
    )
    return fields


def _scanco_array(volume: Volume, path: Path, suffix: str) -> np.ndarray:
    array = np.asarray(volume.array)
    if np.issubdtype(array.dtype, np.floating):
        if suffix == ".isq":
            raise InputFileError(
                path,
                "ISQ holds integer data only (float32 does not round-trip through "
                "itk-ioscanco); write .aim, .mha, .nii.gz or .tif, or convert to integers",
            )
        return array.astype("<f4", copy=False)
    if array.size and (array.min() < -32768 or array.max() > 32767):
        raise InputFileError(
            path,
            f"values {array.min()}..{array.max()} do not fit the int16 of Scanco files",
        )
    return array.astype("<i2", copy=False)


def _warn_geometry(volume: Volume, path: Path, suffix: str) -> None:
    spacing, origin = np.asarray(volume.spacing_mm), np.asarray(volume.origin_mm)
    if suffix == ".isq":
        um = np.round(np.asarray(volume.shape) * spacing * 1000) / 1000
        stored = um / np.asarray(volume.shape)
        if not np.allclose(stored, spacing, rtol=SPACING_SAME_RTOL, atol=0):
            logger.warning(
                "%s: ISQ stores the size in whole micrometres; spacing %s mm becomes %s mm",
                path,
                tuple(spacing),
                tuple(np.round(stored, 8)),
            )
        if np.any(origin != 0):
            logger.warning("%s: ISQ stores no origin; %s mm is not kept", path, tuple(origin))
    elif not np.allclose(origin / spacing, np.round(origin / spacing), atol=1e-3):
        logger.warning("%s: AIM stores the origin in whole voxels; %s mm is rounded", path, origin)


def _set_header(itk, dictionary, volume: Volume) -> None:
    """Calibration as double MetaDataObjects and the dates the writer needs."""
    old = volume.metadata.get("scanco", {}) if isinstance(volume.metadata, dict) else {}
    now = time.strftime("%d-%b-%Y %H:%M:%S.000").upper()
    for key in _DATE_KEYS:
        dictionary[key] = str(old.get(key) or now)
    cal = volume.calibration
    mu_scaling = (cal.mu_scaling if cal and cal.mu_scaling else None) or 1.0
    values = {"MuScaling": mu_scaling, "MuWater": old.get("MuWater", 0.0)}
    if cal is not None:
        values.update(RescaleSlope=cal.slope * mu_scaling, RescaleIntercept=cal.intercept)
        if cal.mu_water:
            values["MuWater"] = cal.mu_water
        dictionary["RescaleUnits"] = "mg HA/ccm" if cal.units == "mg HA/cm3" else cal.units
    for key, value in values.items():
        obj = itk.MetaDataObject[itk.D].New()  # a Python float would be silently dropped
        obj.SetMetaDataObjectValue(float(value))
        dictionary.Set(key, obj)


def _overwrite_voxels(path: Path, array: np.ndarray) -> None:
    """Replace the (HU-converted) voxel block at the end of the file by ``array``."""
    data = np.ascontiguousarray(array).tobytes()
    size = path.stat().st_size
    if size < len(data):
        raise InputFileError(path, f"itk-ioscanco wrote {size} bytes for {len(data)} of voxels")
    with open(path, "r+b") as f:
        f.seek(size - len(data))
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _message(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[-1] if lines else type(exc).__name__
    return text.split("): ", 1)[-1] if "ERROR" in text else text
