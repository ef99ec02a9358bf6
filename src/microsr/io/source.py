"""Slice sources: an LR volume read a few slices at a time, never whole if avoidable.

What streams (only the requested slices are read from disk): multi-page TIFF files (ImageJ
hyperstacks included) and folders of 2D TIFF slices (:mod:`microsr.io.tiff`), uncompressed
MetaImage (``.mha``/``.mhd``) and NIfTI (``.nii``) (:mod:`microsr.io.itk_stream`), OME-Zarr
stores (``.zarr``, level 0, :mod:`microsr.io.omezarr`).
Everything else (``.nii.gz``, compressed MetaImage, NRRD, DICOM series, Scanco files, anything
the fast path does not recognise) is read whole with :func:`microsr.io.read_volume`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from microsr.errors import InputFileError
from microsr.io.files import as_spacing, choose_spacing, read_volume
from microsr.io.itk_stream import open_itk_file
from microsr.io.omezarr import is_zarr_path, open_ome_zarr
from microsr.io.sink import format_suffix
from microsr.io.tiff import TIFF_SUFFIXES, list_slices, open_tiff_file, open_tiff_folder
from microsr.volume import Calibration, Volume

log = logging.getLogger(__name__)


@dataclass
class SliceSource:
    """A volume whose slices are read on demand.

    Attributes
    ----------
    path
        The file or folder.
    shape
        ``(Z, Y, X)`` voxels.
    spacing_mm, origin_mm
        ``(z, y, x)`` in mm.
    streamed
        ``False`` when the whole volume was read into memory (see the module notes).
    dtype
        The stored voxel type (what the raw reader returns; :meth:`read` gives float32).
    chunk_z
        Slices one read should span to be chunk-aligned (an OME-Zarr store's z chunk).
    """

    path: Path
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    calibration: Calibration | None
    metadata: dict
    streamed: bool
    _read: Callable[[int, int], np.ndarray] | None = field(repr=False, default=None)
    dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float32))
    chunk_z: int = 32

    def read(self, start: int, stop: int) -> np.ndarray:
        """Slices ``start .. stop - 1`` as a float32 ``(n, Y, X)`` array (NaN/Inf refused)."""
        block = np.asarray(self._read(start, stop), dtype=np.float32)  # type: ignore[misc]
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
        dtype=np.dtype(volume.array.dtype),
    )


def open_slices(
    path: str | Path, *, spacing_mm: float | Sequence[float] | None = None
) -> SliceSource:
    """Open a volume file or folder for slice-wise reading.

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
    if is_zarr_path(path) and path.exists():
        opened = open_ome_zarr(path)
    elif path.is_dir() and list_slices(path):
        opened = open_tiff_folder(path)
    elif suffix in TIFF_SUFFIXES:
        opened = open_tiff_file(path)
    elif suffix in (".mha", ".mhd", ".nii"):
        opened = open_itk_file(path, suffix)
    if opened is None or 0 in opened[0]:
        return volume_source(read_volume(path, spacing_mm=spacing_mm), name=str(path))
    shape, dtype, header, read = opened
    spacing = choose_spacing(path, header["spacing_mm"], user)
    metadata = {**header["metadata"], "source": str(path)}
    log.info("streaming %s: shape %s, spacing %s mm", path, shape, spacing)
    return SliceSource(
        path, shape, spacing, tuple(header["origin_mm"]), header["calibration"], metadata, True,
        read, np.dtype(dtype), int(header.get("chunk_z", 32)),
    )  # fmt: skip
