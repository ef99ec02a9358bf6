"""Incremental volume writers: slices go to disk as they are predicted.

:func:`write_slices` consumes an iterator of ``(n, Y, X)`` float32 batches and writes them
atomically (:func:`microsr.io.atomic.atomic_path`): the target appears only once the last
slice is written, so a killed run leaves no file that a rerun could mistake for complete.

Peak memory per output format:

- multi-page TIFF (``.tif``/``.tiff``) and TIFF folders: one batch (tifffile writes the
  pages from an iterator; a folder gets one file per slice);
- MetaImage (``.mha``/``.mhd``, uncompressed): one batch. The header is the one SimpleITK
  writes for a one-slice image of the same geometry, with ``DimSize`` set to the full
  depth; the raw voxels are appended slice by slice;
- NIfTI and NRRD: the slices are gathered in a memory-mapped scratch file next to the
  target, then written by SimpleITK, which copies the whole output volume into memory
  (peak about the output size). Choose ``.mha`` or ``.tif`` for large volumes.

Files are byte-for-byte what :func:`microsr.io.write_volume` would write for TIFF files
and folders, and read back with the same geometry and calibration for every format.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import tifffile
from numpy.lib.format import open_memmap

from microsr.io import format_suffix, write_volume
from microsr.io.atomic import TEMP_PREFIX, atomic_path
from microsr.io.itk_formats import write_itk_file
from microsr.io.tiff import TIFF_SUFFIXES, _write_kwargs
from microsr.volume import Volume

log = logging.getLogger(__name__)

_BIGTIFF_BYTES = 2**32 - 2**26  # leave room for tags below the classic-TIFF 4 GiB limit


def template(
    shape: tuple[int, int, int],
    spacing_mm: tuple[float, float, float],
    origin_mm: tuple[float, float, float],
    calibration=None,
    metadata: dict | None = None,
) -> Volume:
    """A float32 :class:`Volume` of ``shape`` (``(Z, Y, X)``) that holds no voxel memory."""
    array = np.broadcast_to(np.zeros((), np.float32), shape)
    return Volume(array, spacing_mm, origin_mm, calibration, dict(metadata or {}))


def write_slices(target: Volume, batches: Iterable[np.ndarray], path: str | Path) -> Path:
    """Write the batches of a ``target``-shaped float32 volume to ``path``, atomically.

    Parameters
    ----------
    target
        Geometry of the output (from :func:`template`): shape ``(Z, Y, X)``, spacing and
        origin in mm, calibration, metadata.
    batches
        ``(n, Y, X)`` float32 arrays whose ``n`` add up to ``Z``, in slice order.
    path
        Output file, or folder (TIFF slices); the format follows the extension.

    Returns
    -------
    Path
        ``path``, written completely; nothing is left there if the iterator raises.
    """
    path = Path(path)
    suffix = "" if path.is_dir() else format_suffix(path)
    counted = _counted(batches, target.shape)
    if suffix == "":
        _tiff_folder(target, counted, path)
    elif suffix in TIFF_SUFFIXES:
        _tiff_file(target, counted, path)
    elif suffix in (".mha", ".mhd"):
        _metaimage(target, counted, path, suffix)
    else:
        _via_scratch(target, counted, path)
    return path


def _counted(batches: Iterable[np.ndarray], shape: tuple[int, ...]) -> Iterator[np.ndarray]:
    """Pass batches through, checking their shape and that exactly ``Z`` slices come."""
    n = 0
    for batch in batches:
        if batch.shape[1:] != shape[1:]:
            raise ValueError(f"batch of shape {batch.shape} for an output of shape {shape}")
        n += len(batch)
        if n > shape[0]:
            raise ValueError(f"more than {shape[0]} slices")
        yield np.ascontiguousarray(batch, dtype=np.float32)
    if n != shape[0]:
        raise ValueError(f"got {n} slices for an output of {shape[0]}")


def _tiff_file(target: Volume, batches: Iterator[np.ndarray], path: Path) -> None:
    kwargs = _write_kwargs(target, target.shape, np.dtype(np.float32), origin_mm=target.origin_mm)
    pages = (page for batch in batches for page in batch)
    big = int(np.prod(target.shape)) * 4 > _BIGTIFF_BYTES
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp, pages, shape=target.shape, dtype=np.float32, bigtiff=big or None, **kwargs
        )


def _tiff_folder(target: Volume, batches: Iterator[np.ndarray], folder: Path) -> None:
    z, sz = target.shape[0], target.spacing_mm[0]
    width = max(4, len(str(z - 1)))
    oz, oy, ox = target.origin_mm
    index = 0
    with atomic_path(folder, directory=True) as tmp:
        for batch in batches:
            for plane in batch:
                origin = (oz + index * sz, oy, ox)
                kwargs = _write_kwargs(target, plane.shape, plane.dtype, origin_mm=origin)
                tifffile.imwrite(tmp / f"slice_{index:0{width}d}.tif", plane, **kwargs)
                index += 1


def _metaimage_header(target: Volume, suffix: str, data_name: str) -> bytes:
    """SimpleITK's header for a one-slice image of ``target``'s geometry, full depth."""
    z, y, x = target.shape
    one = Volume(
        np.zeros((1, y, x), np.float32), target.spacing_mm, target.origin_mm,
        target.calibration, target.metadata,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix=TEMP_PREFIX) as tmpdir:
        probe = Path(tmpdir) / f"h{suffix}"
        write_itk_file(one, probe, suffix)
        text = probe.read_bytes()
    end = text.index(b"ElementDataFile = ")
    end = text.index(b"\n", end) + 1
    header = text[:end].decode("latin-1")
    header, n = re.subn(r"(?m)^DimSize = .*$", f"DimSize = {x} {y} {z}", header)
    if n != 1 or "ElementType = MET_FLOAT" not in header:
        raise RuntimeError("unexpected MetaImage header from SimpleITK")
    if suffix == ".mhd":
        header = re.sub(r"(?m)^ElementDataFile = .*$", f"ElementDataFile = {data_name}", header)
    return header.encode("latin-1")


def _metaimage(target: Volume, batches: Iterator[np.ndarray], path: Path, suffix: str) -> None:
    raw_name = path.stem + ".raw"
    header = _metaimage_header(target, suffix, raw_name)
    if suffix == ".mha":
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            f.write(header)
            for batch in batches:
                f.write(batch.astype("<f4", copy=False).tobytes())
        return
    # Data first, header last: the header (the output a rerun checks) never dangles.
    with atomic_path(path.parent / raw_name) as tmp_raw, open(tmp_raw, "wb") as f:
        for batch in batches:
            f.write(batch.astype("<f4", copy=False).tobytes())
    with atomic_path(path) as tmp_header:
        tmp_header.write_bytes(header)


def _via_scratch(target: Volume, batches: Iterator[np.ndarray], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".npy", dir=path.parent)
    os.close(fd)
    scratch = Path(name)
    try:
        buf = open_memmap(scratch, mode="w+", dtype=np.float32, shape=target.shape)
        start = 0
        for batch in batches:
            buf[start : start + len(batch)] = batch
            start += len(batch)
        log.info("%s: NIfTI/NRRD output is written whole (peak ~ output size)", path)
        write_volume(target.with_array(buf), path)
    finally:
        scratch.unlink(missing_ok=True)
