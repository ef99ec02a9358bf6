"""Streaming MetaImage and NIfTI: read a few slices at a time, write slice batch by batch.

Reading (:func:`open_itk_file`): uncompressed MetaImage (``.mha``/``.mhd``) and NIfTI
(``.nii``) through SimpleITK's ``ImageFileReader`` region extraction (ITK streams these
formats). Compressed files are read whole by :func:`microsr.io.read_volume`: ITK cannot seek
in a gzip stream.

Writing (:func:`write_metaimage`, :func:`write_nifti`): the header is the one SimpleITK
writes for a one-slice image of the same geometry, dtype and calibration, with the slice
count patched to the full depth (MetaImage ``DimSize``; NIfTI ``dim[3]``), followed by the
voxels, written slice batch by slice batch (``.nii.gz`` through a gzip stream). Peak memory
is one batch whatever the depth, and the files read back with the same geometry as a whole
SimpleITK write. The output appears only when complete (:mod:`microsr.io.atomic`).
"""

from __future__ import annotations

import gzip
import re
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import SimpleITK as sitk

from microsr.errors import InputFileError
from microsr.io.atomic import TEMP_PREFIX, atomic_path
from microsr.io.itk_formats import check_nifti_complete, from_image, itk_image, nifti_header
from microsr.volume import Volume

_NIFTI_HEADER_BYTES = 352  # 348-byte NIfTI-1 header + 4-byte extension flag
_NIFTI_DIM3 = 46  # byte offset of dim[3] (int16)


def _uncompressed(path: Path, suffix: str) -> bool:
    if suffix == ".nii":
        check_nifti_complete(path)  # ITK zero-fills truncated NIfTI silently
        return True
    with open(path, "rb") as f:  # MetaIO header: "key = value" text lines
        head = f.read(4096).decode("latin-1").lower().replace(" ", "")
    return "compresseddata=true" not in head


def open_itk_file(path: Path, suffix: str):
    """``(shape, dtype, header, read)`` to stream an uncompressed ``.mha``/``.mhd``/``.nii``.

    ``None`` when the file is compressed or anything is unusual: it is then read whole,
    which reports the problem.
    """
    if not _uncompressed(path, suffix):
        return None
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        size = reader.GetSize()
        if len(size) != 3 or reader.GetNumberOfComponents() != 1 or 0 in size:
            return None
        reader.SetExtractIndex((0, 0, 0))
        reader.SetExtractSize((size[0], size[1], 1))
        first = reader.Execute()
        array, header = from_image(path, first)
    except (RuntimeError, InputFileError):
        return None  # read_volume gives the canonical error
    if suffix == ".nii":
        nifti_header(header, first)

    def read(start: int, stop: int) -> np.ndarray:
        r = sitk.ImageFileReader()
        r.SetFileName(str(path))
        r.SetExtractIndex((0, 0, start))
        r.SetExtractSize((size[0], size[1], stop - start))
        try:
            return sitk.GetArrayFromImage(r.Execute())
        except RuntimeError as exc:
            raise InputFileError(path, f"cannot read slices {start}..{stop - 1}: {exc}") from exc

    return (size[2], size[1], size[0]), array.dtype, header, read


def _probe(target: Volume, suffix: str, dtype: np.dtype) -> bytes:
    """The bytes SimpleITK writes for a one-slice image of ``target``'s geometry."""
    one = np.zeros((1, *target.shape[1:]), dtype)
    with tempfile.TemporaryDirectory(prefix=TEMP_PREFIX) as tmpdir:
        probe = Path(tmpdir) / f"h{suffix}"
        sitk.WriteImage(itk_image(target, one, suffix), str(probe))
        return probe.read_bytes()


def _voxels(batches: Iterator[np.ndarray], dtype: np.dtype) -> Iterator[bytes]:
    little = dtype.newbyteorder("<")
    for batch in batches:
        yield np.ascontiguousarray(batch, dtype=little).tobytes()


def write_metaimage(target: Volume, batches: Iterator[np.ndarray], path: Path, suffix: str) -> None:
    """Write a ``.mha`` (one file) or ``.mhd`` + ``.raw`` (data first, header last)."""
    dtype = _dtype(target)
    text = _probe(target, suffix, dtype)
    end = text.index(b"\n", text.index(b"ElementDataFile = ")) + 1
    header = text[:end].decode("latin-1")
    z, y, x = target.shape
    header, n = re.subn(r"(?m)^DimSize = .*$", f"DimSize = {x} {y} {z}", header)
    if n != 1:
        raise RuntimeError("unexpected MetaImage header from SimpleITK")
    raw_name = path.stem + ".raw"
    if suffix == ".mha":
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            f.write(header.encode("latin-1"))
            for chunk in _voxels(batches, dtype):
                f.write(chunk)
        return
    header = re.sub(r"(?m)^ElementDataFile = .*$", f"ElementDataFile = {raw_name}", header)
    # Data first, header last: the header (the output a rerun checks) never dangles.
    with atomic_path(path.parent / raw_name) as tmp_raw, open(tmp_raw, "wb") as f:
        for chunk in _voxels(batches, dtype):
            f.write(chunk)
    with atomic_path(path) as tmp_header:
        tmp_header.write_bytes(header.encode("latin-1"))


def write_nifti(target: Volume, batches: Iterator[np.ndarray], path: Path, suffix: str) -> None:
    """Write a ``.nii`` or ``.nii.gz`` (gzip-streamed), header patched to the full depth."""
    dtype = _dtype(target)
    header = bytearray(_probe(target, ".nii", dtype)[:_NIFTI_HEADER_BYTES])
    if struct.unpack("<i", header[:4])[0] != 348 or struct.unpack("<h", header[40:42])[0] != 3:
        raise RuntimeError("unexpected NIfTI header from SimpleITK")
    header[_NIFTI_DIM3 : _NIFTI_DIM3 + 2] = struct.pack("<h", target.shape[0])
    with atomic_path(path) as tmp, _open_binary(tmp, gzipped=suffix == ".nii.gz") as f:
        f.write(bytes(header))
        for chunk in _voxels(batches, dtype):
            f.write(chunk)


def _open_binary(path: Path, *, gzipped: bool) -> BinaryIO:
    """``path`` opened for binary writing, through a gzip stream if ``gzipped``."""
    return gzip.open(path, "wb", compresslevel=6) if gzipped else open(path, "wb")


def _dtype(target: Volume) -> np.dtype:
    dtype = np.dtype(target.array.dtype)
    return np.dtype(np.uint8) if dtype == np.bool_ else dtype
