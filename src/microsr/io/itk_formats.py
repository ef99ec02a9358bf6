"""NIfTI, MetaImage, NRRD and DICOM-series volumes via SimpleITK.

Axis order
----------
SimpleITK indexes images ``(x, y, z)``: ``GetSpacing()`` and ``GetOrigin()`` are
``(x, y, z)`` while ``GetArrayFromImage`` returns ``(Z, Y, X)``. Everything leaving
this module is ``(z, y, x)``, the order of :class:`~microsr.volume.Volume`.

What is stored
--------------
- MetaImage (``.mha``/``.mhd``) and NRRD (``.nrrd``/``.nhdr``): spacing, origin,
  direction, dtype, and the calibration as JSON under the header key
  ``microsr_calibration``.
- NIfTI (``.nii``/``.nii.gz``): spacing, origin and direction as float32 (values
  are rounded back to their shortest decimal on reading, so 0.01 stays 0.01), and
  the calibration only on a best-effort basis, as a compact JSON in the 80-byte
  ``descrip`` field; if it does not fit it is not kept (a warning is logged).
- DICOM series (reading only): spacing, origin and direction from the headers;
  the density calibration is not mapped (GDCM applies the rescale slope/intercept).

Detached-header formats (``.mhd``, ``.nhdr``) write a data file named after the
header with ``.raw`` (or ``.zraw``/``.raw.gz``) next to it; the two files are
moved into place together at the end of the write. ITK names that data file after
the header's stem, so ``scan.mhd`` and ``scan.nhdr`` in one folder would share
``scan.raw``: give them different names.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import struct
import tempfile
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from microsr.errors import InputFileError
from microsr.io.atomic import TEMP_PREFIX, atomic_path
from microsr.volume import Calibration, Volume

logger = logging.getLogger(__name__)

ITK_FORMATS = {
    ".nii": "NIfTI",
    ".nii.gz": "NIfTI",
    ".mha": "MetaImage",
    ".mhd": "MetaImage",
    ".nrrd": "NRRD",
    ".nhdr": "NRRD",
}
_DETACHED = {".mhd", ".nhdr"}
CALIBRATION_KEY = "microsr_calibration"
_NIFTI_NOTES_PREFIX = "microsr_cal:"
_NIFTI_NOTES_MAX = 79  # descrip is char[80], NUL-terminated


def read_itk_file(path: Path, suffix: str) -> tuple[np.ndarray, dict]:
    """Read a NIfTI, MetaImage or NRRD file.

    Parameters
    ----------
    path
        The file; ``suffix`` (a key of :data:`ITK_FORMATS`) names its format.

    Returns
    -------
    array
        Voxel values, shape ``(Z, Y, X)``; a 2D image gives ``Z = 1``.
    header
        ``spacing_mm`` and ``origin_mm`` (``(z, y, x)``, mm), ``calibration``
        (or ``None``) and ``metadata`` (``"direction"`` if not identity).

    Raises
    ------
    InputFileError
        Unreadable, corrupt or truncated files; vector/RGB or 4D images.
    """
    fmt = ITK_FORMATS[suffix]
    if fmt == "NIfTI":
        check_nifti_complete(path)
    if suffix == ".mha":
        check_metaimage_complete(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputFileError(
            path, f"cannot read {fmt} file (corrupt or truncated?): {_itk_message(exc)}"
        ) from exc
    array, header = from_image(path, image)
    if fmt == "NIfTI":
        nifti_header(header, image)
    return array, header


def dicom_series_ids(folder: Path) -> tuple[str, ...]:
    """Series instance UIDs of the DICOM files GDCM finds directly in ``folder``."""
    return tuple(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))


def read_dicom_folder(folder: Path, series_ids: tuple[str, ...]) -> tuple[np.ndarray, dict]:
    """Read the single DICOM series in ``folder`` (slices ordered by position).

    Parameters
    ----------
    folder
        Folder of DICOM files.
    series_ids
        Its series UIDs, from :func:`dicom_series_ids`; exactly one is accepted.

    Returns
    -------
    array, header
        As :func:`read_itk_file`; spacing and origin come from the DICOM headers.

    Raises
    ------
    InputFileError
        No series, more than one series, or unreadable files.
    """
    if len(series_ids) != 1:
        raise InputFileError(
            folder,
            f"holds {len(series_ids)} DICOM series; put each series in its own folder",
        )
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_ids[0])
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputFileError(folder, f"cannot read DICOM series: {_itk_message(exc)}") from exc
    array, header = from_image(folder, image)
    header["metadata"].update(dicom_series_uid=series_ids[0], source_files=len(files))
    logger.info("read DICOM series of %d files from %s", len(files), folder)
    return array, header


def itk_image(volume: Volume, array: np.ndarray, suffix: str) -> sitk.Image:
    """A SimpleITK image of ``array`` (``(Z, Y, X)``) with ``volume``'s geometry and calibration."""
    array = np.asarray(array)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in volume.spacing_mm[::-1]))
    image.SetOrigin(tuple(float(o) for o in volume.origin_mm[::-1]))
    direction = volume.metadata.get("direction")
    if direction is not None and len(direction) == 9:
        image.SetDirection(tuple(float(d) for d in direction))
    if volume.calibration is not None and ITK_FORMATS[suffix] == "NIfTI":
        _set_nifti_calibration(image, volume.calibration)
    elif volume.calibration is not None:
        image.SetMetaData(CALIBRATION_KEY, json.dumps(asdict(volume.calibration)))
    return image


def write_itk_file(volume: Volume, path: Path, suffix: str) -> None:
    """Write ``volume`` atomically as NIfTI, MetaImage or NRRD (by ``suffix``), whole."""
    image = itk_image(volume, volume.array, suffix)
    if suffix in _DETACHED:
        _write_detached(image, path)
        return
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp))


def from_image(path: Path, image: sitk.Image) -> tuple[np.ndarray, dict]:
    """(Z, Y, X) array and (z, y, x) header of a SimpleITK image."""
    dim = image.GetDimension()
    components = image.GetNumberOfComponentsPerPixel()
    if dim not in (2, 3) or components != 1:
        raise InputFileError(
            path,
            f"image is {dim}D with {components} component(s) per voxel, size "
            f"{image.GetSize()} (x, y, ...); expected a 2D or 3D grey-value image",
        )
    array = sitk.GetArrayFromImage(image)
    spacing, origin = image.GetSpacing()[::-1], image.GetOrigin()[::-1]
    if dim == 2:  # one slice: its thickness is unknown, use the in-plane x spacing
        array, spacing, origin = array[np.newaxis], (spacing[1], *spacing), (0.0, *origin)
    metadata: dict = {}
    direction = image.GetDirection()
    if not np.allclose(np.reshape(direction, (dim, dim)), np.eye(dim)):
        logger.warning(
            "%s: non-identity direction matrix %s; it is kept in metadata['direction'] "
            "but not applied to the (Z, Y, X) array",
            path,
            tuple(round(d, 6) for d in direction),
        )
        metadata["direction"] = tuple(direction)  # ITK order: row-major (x, y, z)
    calibration = None
    if image.HasMetaDataKey(CALIBRATION_KEY):
        calibration = _parse_calibration(path, image.GetMetaData(CALIBRATION_KEY))
    header = {"spacing_mm": tuple(spacing), "origin_mm": tuple(origin)}
    return array, {**header, "calibration": calibration, "metadata": metadata}


def _parse_calibration(path: Path, text: str) -> Calibration | None:
    try:
        return Calibration(**json.loads(text))
    except (ValueError, TypeError) as exc:
        logger.warning("%s: ignoring unreadable calibration %r (%s)", path, text, exc)
        return None


def _set_nifti_calibration(image: sitk.Image, cal: Calibration) -> None:
    fields = {k: v for k, v in asdict(cal).items() if v is not None}
    text = _NIFTI_NOTES_PREFIX + json.dumps(fields, separators=(",", ":"))
    if len(text.encode()) > _NIFTI_NOTES_MAX:
        logger.warning("NIfTI output: calibration too long for the descrip field; not kept")
        return
    image.SetMetaData("ITK_FileNotes", text)  # ITK writes this into NIfTI descrip


def nifti_header(header: dict, image: sitk.Image) -> dict:
    """Fix up ``header`` (from :func:`from_image`) of a NIfTI ``image`` in place.

    NIfTI stores geometry as float32: spacing and origin become the shortest decimals
    that round to it; the calibration comes from the notes/descrip field.
    """
    header["spacing_mm"] = tuple(_float32_decimal(v) for v in header["spacing_mm"])
    header["origin_mm"] = tuple(_float32_decimal(v) for v in header["origin_mm"])
    header["calibration"] = _nifti_calibration(image)
    return header


def _nifti_calibration(image: sitk.Image) -> Calibration | None:
    """The calibration microsr wrote into a NIfTI's notes/descrip field, else None."""
    for key in ("ITK_FileNotes", "descrip"):
        if image.HasMetaDataKey(key):
            text = image.GetMetaData(key)
            if text.startswith(_NIFTI_NOTES_PREFIX):
                return _parse_calibration(Path("NIfTI descrip"), text[len(_NIFTI_NOTES_PREFIX) :])
    return None


def _float32_decimal(value: float) -> float:
    """Shortest decimal that rounds to the same float32 (0.009999999776 -> 0.01)."""
    return float(str(np.float32(value)))


def _write_detached(image: sitk.Image, path: Path) -> None:
    """Write header + data file in a temp folder, then move both into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=TEMP_PREFIX, dir=path.parent) as tmpdir:
        header = Path(tmpdir) / path.name
        sitk.WriteImage(image, str(header))
        for data_file in Path(tmpdir).iterdir():
            if data_file != header:  # data first, so the header never dangles
                os.replace(data_file, path.parent / data_file.name)
        os.replace(header, path)


def check_nifti_complete(path: Path) -> None:
    """Raise if a NIfTI-1 file holds fewer voxel bytes than its header declares.

    ITK zero-fills truncated NIfTI data silently, so this is checked here. For
    ``.nii.gz`` this decompresses the file once more (streaming, no extra memory).
    """
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            head = f.read(348)
            if len(head) < 348:
                raise InputFileError(path, "truncated NIfTI file (incomplete header)")
            endian = "<" if struct.unpack("<i", head[:4])[0] == 348 else ">"
            if struct.unpack(endian + "i", head[:4])[0] != 348:
                return  # NIfTI-2 or not NIfTI: left to ITK
            dims = struct.unpack(endian + "8h", head[40:56])
            bitpix = struct.unpack(endian + "h", head[72:74])[0]
            offset = struct.unpack(endian + "f", head[108:112])[0]
            n_voxels = int(np.prod([max(d, 1) for d in dims[1 : 1 + max(dims[0], 0)]]))
            expected = int(offset) + n_voxels * bitpix // 8
            if opener is open:
                size = path.stat().st_size
            else:
                size = 348
                while chunk := f.read(1 << 24):
                    size += len(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputFileError(
            path, f"cannot read NIfTI file (corrupt or truncated?): {exc}"
        ) from exc
    if size < expected:
        raise InputFileError(
            path, f"truncated NIfTI file: header declares {expected} bytes, found {size}"
        )


_MET_BYTES = {"CHAR": 1, "UCHAR": 1, "SHORT": 2, "USHORT": 2, "INT": 4, "UINT": 4,
              "LONG": 8, "ULONG": 8, "LONG_LONG": 8, "ULONG_LONG": 8, "FLOAT": 4, "DOUBLE": 8}  # fmt: skip


def check_metaimage_complete(path: Path) -> None:
    """Refuse a one-file MetaImage (``.mha``) whose uncompressed voxel data is cut short.

    ITK reports such a file as "No such file or directory"; this names the sizes.
    """
    fields: dict[str, str] = {}
    with open(path, "rb") as f:
        for _ in range(64):
            line = f.readline()
            key, _, value = line.decode("latin-1").partition("=")
            fields[key.strip()] = value.strip()
            if key.strip() == "ElementDataFile" or not line:
                break
        header_bytes = f.tell()
    if fields.get("ElementDataFile") != "LOCAL" or fields.get("CompressedData", "") == "True":
        return
    try:
        dims = [int(d) for d in fields["DimSize"].split()]
        per_voxel = _MET_BYTES[fields["ElementType"].removeprefix("MET_")]
        per_voxel *= int(fields.get("ElementNumberOfChannels", "1"))
    except (KeyError, ValueError):
        return  # left to ITK
    expected = header_bytes + int(np.prod(dims)) * per_voxel
    size = path.stat().st_size
    if size < expected:
        raise InputFileError(
            path, f"truncated MetaImage (expected {expected} bytes, the file has {size})"
        )


def _itk_message(exc: RuntimeError) -> str:
    """The useful lines of a SimpleITK exception (no C++ source locations)."""
    lines = []
    for line in str(exc).splitlines():
        line = line.strip()
        if not line or line.startswith("Exception thrown in SimpleITK"):
            continue
        line = re.sub(r"^(sitk::ERROR|ITK ERROR):\s*(\w+\(0x[0-9a-fA-F]+\):\s*)?", "", line)
        lines.append(line)
    return "; ".join(lines) or str(exc)
