"""Volumes whose voxels stay on disk until indexed: OME-Zarr inputs of ``convert``, ``simulate``
and ``evaluate``, read slab by slab.

:func:`open_volume` returns a :class:`~microsr.volume.Volume` whose ``array`` is a
:class:`LazySlices` when the input is an OME-Zarr store (``.zarr``): indexing it reads only the z
range the index needs (whole store chunks), so code that walks a volume slab by slab
(``volume.array[z0:z1]``, :func:`microsr.io.sink.slabs`, ``write_volume``) holds one slab, not
the volume. ``np.asarray(volume.array)`` still reads everything (logged). Other formats are read
whole with :func:`microsr.io.read_volume`, as before; their results are the same either way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from microsr.calibration import Units, to_units
from microsr.errors import InputFileError
from microsr.io.files import read_volume
from microsr.io.omezarr import is_zarr_path
from microsr.io.source import open_slices
from microsr.volume import Volume

log = logging.getLogger(__name__)


class LazySlices:
    """A ``(Z, Y, X)`` array-like read from disk on indexing, ``transform``-ed slab by slab.

    Parameters
    ----------
    read
        ``read(start, stop)`` -> slices ``start .. stop - 1`` as an ``(n, Y, X)`` array.
    shape, dtype
        Of the array as indexed (after ``transform``).
    slab
        Slices a slab-wise walk should take at once (the store's z chunk).
    path
        Named in errors (NaN/Inf voxels are refused, as :func:`microsr.io.read_volume` does).
    transform
        Applied to each block read (elementwise per voxel, e.g. a unit conversion).
    """

    ndim = 3

    def __init__(
        self,
        read: Callable[[int, int], np.ndarray],
        shape: tuple[int, int, int],
        dtype,
        *,
        slab: int = 32,
        path: str | Path = "volume",
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self._read, self.shape, self.dtype = read, tuple(int(n) for n in shape), np.dtype(dtype)
        self.slab, self.path, self._transform = max(1, int(slab)), Path(path), transform

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        index = index if isinstance(index, tuple) else (index,)
        z0, z1, local = _z_range(index[0], self.shape[0])
        return self.block(z0, z1)[(local, *index[1:])]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        log.info("%s: read whole (%s voxels)", self.path, "x".join(map(str, self.shape)))
        out = self.block(0, self.shape[0])
        return out.astype(dtype) if dtype is not None else out

    def block(self, start: int, stop: int) -> np.ndarray:
        """Slices ``start .. stop - 1``, transformed, as an ``(n, Y, X)`` array."""
        raw = np.asarray(self._read(start, stop))
        if np.issubdtype(raw.dtype, np.inexact) and not np.isfinite(raw).all():
            raise InputFileError(self.path, f"NaN or Inf voxels in slices {start}..{stop - 1}")
        out = self._transform(raw) if self._transform else raw
        return np.asarray(out, dtype=self.dtype)

    def map(self, fn: Callable[[np.ndarray], np.ndarray], dtype) -> LazySlices:
        """A lazy array of ``fn(block)`` (``fn`` must act voxel by voxel)."""
        inner = self._transform

        def both(block: np.ndarray) -> np.ndarray:
            return fn(inner(block) if inner else block)

        return LazySlices(
            self._read, self.shape, dtype, slab=self.slab, path=self.path, transform=both
        )


def _z_range(first, n: int) -> tuple[int, int, object]:
    """``(z0, z1, local)``: the z range an index along z needs, and the index within it."""
    if first is Ellipsis:
        return 0, n, Ellipsis
    if isinstance(first, slice):
        start, stop, step = first.indices(n)
        if step > 0:
            stop = max(stop, start)
            return start, stop, slice(0, stop - start, step)
        return 0, n, first
    arr = np.asarray(first)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        return 0, n, first
    arr = np.where(arr < 0, arr + n, arr)
    if arr.size == 0:
        return 0, 0, arr
    if arr.min() < 0 or arr.max() >= n:
        raise IndexError(f"slice index out of range 0..{n - 1}")
    z0 = int(arr.min())
    return z0, int(arr.max()) + 1, (int(arr) - z0 if arr.ndim == 0 else arr - z0)


def open_volume(path: str | Path, *, spacing_mm=None, any_format: bool = False) -> Volume:
    """A volume file, its voxels read lazily (slab by slab) when it is an OME-Zarr store.

    Parameters
    ----------
    path, spacing_mm
        As in :func:`microsr.io.read_volume` (same errors, same header and metadata).
    any_format
        Also read lazily every format :func:`microsr.io.source.open_slices` streams (TIFF
        files and folders, uncompressed MetaImage and NIfTI), as ``predict`` does
        (``evaluate``); other formats are still read whole.

    Returns
    -------
    Volume
        ``array`` a :class:`LazySlices` (stored dtype) for a ``.zarr`` store, else the array
        :func:`microsr.io.read_volume` returns.
    """
    path = Path(path)
    if not (any_format or (is_zarr_path(path) and path.exists())):
        return read_volume(path, spacing_mm=spacing_mm)
    src = open_slices(path, spacing_mm=spacing_mm)
    if not src.streamed:  # open_slices read it whole (read_volume): that array, not a re-read
        whole = np.asarray(src._read(0, src.shape[0]))  # type: ignore[misc]
        return Volume(whole, src.spacing_mm, src.origin_mm, src.calibration, src.metadata)
    array = LazySlices(src._read, src.shape, src.dtype, slab=src.chunk_z, path=path)
    return Volume(array, src.spacing_mm, src.origin_mm, src.calibration, src.metadata)  # type: ignore[arg-type]


def convert_units(volume: Volume, units: Units) -> Volume:
    """:func:`microsr.calibration.to_units`, slab by slab when ``volume`` is lazy."""
    if not isinstance(volume.array, LazySlices):
        return to_units(volume, units)
    head = to_units(volume.with_array(volume.array[:1]), units)  # calibration, metadata, dtype

    def convert(block: np.ndarray) -> np.ndarray:
        return to_units(volume.with_array(block), units).array

    return head.with_array(volume.array.map(convert, head.array.dtype))
