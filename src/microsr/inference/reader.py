"""Lazy slice readers: an LR volume read a few slices at a time, never whole if avoidable.

What streams (only the requested slices are read from disk):

- multi-page TIFF files (tifffile pages; ImageJ hyperstacks included) and folders of 2D
  TIFF slices (one file per slice);
- uncompressed MetaImage (``.mha``/``.mhd``) and uncompressed NIfTI (``.nii``), through
  SimpleITK's ``ImageFileReader`` region extraction (ITK streams these formats).

Everything else (``.nii.gz``, compressed MetaImage, NRRD, DICOM series, anything the fast
path does not recognise) is read whole with :func:`microsr.io.read_volume`: ITK cannot
seek in a gzip stream, so slice-wise extraction would decompress from the start every
time. An LR input is ``1 / f**2`` of the HR output's size, so for the memory peak the
output writer (:mod:`microsr.inference.writer`) matters most.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import tifffile

from microsr.errors import InputFileError
from microsr.io import as_spacing, choose_spacing, format_suffix, read_volume
from microsr.io.itk_formats import check_nifti_complete, from_image, nifti_header
from microsr.io.tiff import TIFF_SUFFIXES, list_slices, load_tiff, parse_header, raw_metadata
from microsr.volume import Calibration, Volume

log = logging.getLogger(__name__)


@dataclass
class SliceSource:
    """An LR volume whose slices are read on demand.

    Attributes
    ----------
    path
        The file or folder.
    shape
        ``(Z, Y, X)`` voxels.
    spacing_mm, origin_mm
        ``(z, y, x)`` in mm.
    streamed
        ``False`` when the whole volume was read into memory (see module notes).
    """

    path: Path
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    calibration: Calibration | None
    metadata: dict
    streamed: bool
    _read: object = field(repr=False, default=None)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Slices ``start .. stop - 1`` as a float32 ``(n, Y, X)`` array (NaN/Inf refused)."""
        block = np.asarray(self._read(start, stop), dtype=np.float32)  # type: ignore[operator]
        if block.shape[1:] != self.shape[1:] or len(block) != stop - start:
            raise InputFileError(
                self.path, f"slices {start}..{stop - 1} have shape {block.shape}, not {self.shape}"
            )
        if not np.isfinite(block).all():
            raise InputFileError(self.path, f"NaN or Inf voxels in slices {start}..{stop - 1}")
        return block


def volume_source(volume: Volume, *, name: str = "volume") -> SliceSource:
    """An in-memory (or memory-mapped) :class:`Volume` as a :class:`SliceSource`."""
    return SliceSource(
        path=Path(name),
        shape=volume.shape,
        spacing_mm=volume.spacing_mm,
        origin_mm=volume.origin_mm,
        calibration=volume.calibration,
        metadata=dict(volume.metadata),
        streamed=isinstance(volume.array, np.memmap),
        _read=lambda start, stop: volume.array[start:stop],
    )


def open_slices(
    path: str | Path, *, spacing_mm: float | Sequence[float] | None = None
) -> SliceSource:
    """Open an LR volume for slice-wise reading (see the module notes for what streams).

    Parameters
    ----------
    path
        Any input :func:`microsr.io.read_volume` accepts.
    spacing_mm
        As in :func:`microsr.io.read_volume` (required when the file stores none).

    Raises
    ------
    InputFileError
        The same errors as :func:`microsr.io.read_volume`; a slice found unreadable,
        misshapen or non-finite while streaming is reported when it is reached.
    """
    path = Path(path)
    user = as_spacing(spacing_mm)
    suffix = format_suffix(path) if path.is_file() else ""
    opened = None
    if path.is_dir() and list_slices(path):
        opened = _tiff_folder(path)
    elif suffix in TIFF_SUFFIXES:
        opened = _tiff_file(path)
    elif suffix in (".mha", ".mhd", ".nii"):
        opened = _itk_file(path, suffix)
    if opened is None:
        vol = read_volume(path, spacing_mm=spacing_mm)
        return SliceSource(
            path, vol.shape, vol.spacing_mm, vol.origin_mm, vol.calibration, vol.metadata,
            False, lambda a, b: vol.array[a:b],
        )  # fmt: skip
    shape, header, read = opened
    spacing = choose_spacing(path, header["spacing_mm"], user)
    metadata = {**header["metadata"], "source": str(path)}
    metadata.pop("_shape", None)
    log.info("streaming %s: shape %s, spacing %s mm", path, shape, spacing)
    return SliceSource(
        path, shape, spacing, tuple(header["origin_mm"]), header["calibration"], metadata, True,
        read,
    )  # fmt: skip


def _tiff_file(path: Path):
    """Pages of a multi-page TIFF, or ``None`` (read whole) if it is anything unusual."""
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            if series.axes not in ("ZYX", "IYX", "QYX") or len(series.shape) != 3:
                return None
            raw = raw_metadata(tif)
            shape = tuple(int(n) for n in series.shape)
    except Exception:  # noqa: BLE001 - let read_volume produce the one clear error
        return None
    header = parse_header(raw, single_slice=shape[0] == 1)
    expected = header["metadata"].get("_shape")
    if expected is not None and tuple(expected) != shape:
        return None  # truncated or odd: read_volume names the problem

    def read(start: int, stop: int) -> np.ndarray:
        try:
            with tifffile.TiffFile(path) as tif:
                return tif.series[0].asarray(key=range(start, stop)).reshape(-1, *shape[1:])
        except Exception as exc:
            raise InputFileError(
                path, f"cannot read TIFF slices {start}..{stop - 1}: {exc}"
            ) from exc

    return shape, header, read


def _tiff_folder(folder: Path):
    files = list_slices(folder)
    first, raw = load_tiff(files[0])
    if first.shape[0] != 1:
        return None
    header = parse_header(raw, single_slice=len(files) == 1)
    header["metadata"]["source_files"] = len(files)
    shape = (len(files), *first.shape[1:])

    def read(start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, *shape[1:]), first.dtype)
        for i in range(start, stop):
            plane, _ = load_tiff(files[i])
            if plane.shape != (1, *shape[1:]) or plane.dtype != first.dtype:
                raise InputFileError(
                    files[i],
                    f"slice has shape {plane.shape[1:]} and dtype {plane.dtype}, but the first "
                    f"slice {files[0].name} has shape {shape[1:]} and dtype {first.dtype}",
                )
            out[i - start] = plane[0]
        return out

    return shape, header, read


def _itk_uncompressed(path: Path, suffix: str) -> bool:
    if suffix == ".nii":
        check_nifti_complete(path)  # ITK zero-fills truncated NIfTI silently
        return True
    with open(path, "rb") as f:  # MetaIO header: "key = value" text lines
        head = f.read(4096).decode("latin-1").lower().replace(" ", "")
    return "compresseddata=true" not in head


def _itk_file(path: Path, suffix: str):
    if not _itk_uncompressed(path, suffix):
        return None
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        size = reader.GetSize()
        if len(size) != 3 or reader.GetNumberOfComponents() != 1:
            return None
        reader.SetExtractIndex((0, 0, 0))
        reader.SetExtractSize((size[0], size[1], 1))
        first = reader.Execute()
        _, header = from_image(path, first)
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

    return (size[2], size[1], size[0]), header, read
