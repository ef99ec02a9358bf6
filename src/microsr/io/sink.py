"""Slice sinks: a volume written batch of slices by batch, in any writable format.

:func:`write_slices` takes an iterator of ``(n, Y, X)`` batches of a volume whose geometry is
given by a ``target`` :class:`~microsr.volume.Volume` (:func:`template` makes one that holds
no voxels) and writes them atomically: the output appears only once the last slice is
written, so a killed run leaves no file that a rerun could mistake for complete. A whole
volume goes through the same writers (:func:`microsr.io.write_volume`).

Peak memory per output format: one batch for multi-page TIFF, TIFF folders, MetaImage
(``.mha``/``.mhd``) and NIfTI (``.nii``/``.nii.gz``); one chunk slab (32 slices) plus one batch
for OME-Zarr (``.zarr``, :mod:`microsr.io.omezarr`); about the output size for NRRD (slices
are gathered in a memory-mapped scratch file, then SimpleITK copies the whole volume) and
for Scanco AIM/ISQ (written whole by itk-ioscanco).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from microsr.errors import InputFileError
from microsr.io.atomic import new_memmap, output_errors, temp_prefix
from microsr.io.itk_formats import ITK_FORMATS, write_itk_file
from microsr.io.itk_stream import write_metaimage, write_nifti
from microsr.io.omezarr import is_zarr_path, write_ome_zarr
from microsr.io.scanco import SCANCO_FORMATS, write_scanco_file
from microsr.io.tiff import TIFF_SUFFIXES
from microsr.io.tiff_write import write_tiff_pages, write_tiff_slices
from microsr.volume import Volume

log = logging.getLogger(__name__)

#: Every output extension (``""``: a folder of TIFF slices; ``.zarr``: an OME-Zarr store).
WRITABLE = ("", *TIFF_SUFFIXES, *ITK_FORMATS, *SCANCO_FORMATS, ".zarr")


def format_suffix(path: Path) -> str:
    """Lower-case extension, with ``.nii.gz`` as one suffix (``""`` if none; ``.ome.zarr``:
    ``.zarr``)."""
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def output_suffix(path: str | Path) -> str:
    """The output format of ``path``: its extension, ``""`` for a folder of TIFF slices.

    Raises
    ------
    InputFileError
        An extension microsr cannot write.
    """
    path = Path(path)
    suffix = "" if path.is_dir() and not is_zarr_path(path) else format_suffix(path)
    if suffix not in WRITABLE:
        raise InputFileError(
            path,
            f"unknown output type {suffix!r}; use a folder (TIFF slices) or one of "
            + ", ".join(WRITABLE[1:]),
        )
    return suffix


def template(
    shape: tuple[int, int, int],
    spacing_mm: tuple[float, float, float],
    origin_mm: tuple[float, float, float],
    calibration=None,
    metadata: dict | None = None,
    dtype=np.float32,
) -> Volume:
    """A :class:`Volume` of ``shape`` (``(Z, Y, X)``) and ``dtype`` that holds no voxel memory."""
    array = np.broadcast_to(np.zeros((), dtype), shape)
    return Volume(array, spacing_mm, origin_mm, calibration, dict(metadata or {}))


def slabs(array: np.ndarray, *, size: int = 16) -> Iterator[np.ndarray]:
    """``array[z : z + size]`` for consecutive ``z`` (a whole volume as batches).

    An array read lazily from a store (:class:`microsr.io.lazy.LazySlices`) is cut at its own
    ``slab`` (the store's z chunk) instead, so each chunk is read once.
    """
    size = getattr(array, "slab", None) or size
    for z in range(0, array.shape[0], size):
        yield np.asarray(array[z : z + size])


def write_slices(
    target: Volume, batches: Iterable[np.ndarray], path: str | Path, *, overwrite: bool = False
) -> Path:
    """Write the batches of a ``target``-shaped volume to ``path``, atomically.

    Parameters
    ----------
    target
        Geometry of the output: shape ``(Z, Y, X)``, dtype, spacing and origin in mm,
        calibration, metadata (e.g. from :func:`template`).
    batches
        ``(n, Y, X)`` arrays whose ``n`` add up to ``Z``, in slice order.
    path
        Output file, or folder (TIFF slices); the format follows the extension.
    overwrite
        A folder output: write into a non-empty folder, replacing only earlier slices.

    Returns
    -------
    Path
        ``path``, written completely; nothing is left there if the iterator raises.
    """
    path = Path(path)
    suffix = output_suffix(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    counted = _counted(batches, target.shape)
    if suffix == "":
        write_tiff_slices(target, counted, path, overwrite=overwrite)
    elif suffix in TIFF_SUFFIXES:
        write_tiff_pages(target, counted, path)
    elif suffix in (".mha", ".mhd"):
        write_metaimage(target, counted, path, suffix)
    elif suffix in (".nii", ".nii.gz"):
        write_nifti(target, counted, path, suffix)
    elif suffix == ".zarr":
        write_ome_zarr(target, counted, path)
    else:
        _gathered(target, counted, path, suffix)
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
        yield batch
    if n != shape[0]:
        raise ValueError(f"got {n} slices for an output of {shape[0]}")


def write_whole(volume: Volume, path: Path, suffix: str) -> None:
    """NRRD (SimpleITK) and Scanco AIM/ISQ (itk-ioscanco): written from a whole array."""
    if suffix in SCANCO_FORMATS:
        write_scanco_file(volume, path, suffix)
    else:
        write_itk_file(volume, path, suffix)


def _gathered(target: Volume, batches: Iterator[np.ndarray], path: Path, suffix: str) -> None:
    """Gather streamed slices in a memory-mapped scratch file, then write them whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with output_errors(path):  # the scratch file's disk is full: one message naming the output
        fd, name = tempfile.mkstemp(prefix=temp_prefix(), suffix=".npy", dir=path.parent)
        os.close(fd)
        scratch = Path(name)
        try:
            buf = new_memmap(scratch, dtype=target.array.dtype, shape=target.shape)
            start = 0
            for batch in batches:
                buf[start : start + len(batch)] = batch
                start += len(batch)
            log.info("%s: %s output is written whole (peak ~ output size)", path, suffix)
            write_whole(target.with_array(buf), path, suffix)
        finally:
            scratch.unlink(missing_ok=True)
