"""Writing TIFF volumes: one multi-page file, or a folder of 2D slices, fed slice batch by batch.

What is stored (read back by :mod:`microsr.io.tiff`): files are ImageJ-compatible
hyperstacks (``imagej=True``) for the dtypes ImageJ knows (uint8, uint16, int16, float32): the
in-plane pixel size goes in the resolution tags, the slice spacing and ``unit=mm`` in the
ImageJ description, so Fiji shows the right scale. Our own JSON header (shape, spacing,
origin, calibration and the JSON-serialisable part of ``Volume.metadata``) goes in the
ImageJ ``Info`` property. Other dtypes (int8, int32, uint32, ...) are written as plain TIFF
with the JSON as the first page's ImageDescription. float64 is written as float32.

A folder holds ``slice_0000.tif``, ``slice_0001.tif``, ...; each slice carries the JSON header
with its own origin (``origin_z + i * spacing_z``), so the folder needs no sidecar file.

Both writers take an iterator of ``(n, Y, X)`` batches, so a whole volume and a streamed
prediction go through the same code; memory is bounded by one batch. The output appears
only when complete (:mod:`microsr.io.atomic`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import tifffile

from microsr.errors import InputFileError
from microsr.io.atomic import atomic_folder, atomic_path
from microsr.io.tiff import JSON_KEY, TIFF_SUFFIXES
from microsr.volume import Volume

logger = logging.getLogger(__name__)

_IMAGEJ_DTYPES = {np.dtype(t) for t in ("uint8", "uint16", "int16", "float32")}
_BIGTIFF_BYTES = 2**32 - 2**26  # leave room for tags below the classic-TIFF 4 GiB limit
#: Names of the slices of a TIFF folder we write (what ``--overwrite`` may replace).
SLICE_PATTERN = re.compile(r"slice_\d+\.tif")


def tiff_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype TIFF stores for ``dtype``: float64 -> float32, bool -> uint8."""
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return np.dtype(np.float32)
    return np.dtype(np.uint8) if dtype == np.bool_ else dtype


def page_kwargs(volume: Volume, shape: tuple[int, ...], dtype: np.dtype, *, origin_mm) -> dict:
    """``tifffile.imwrite`` options storing ``volume``'s geometry for an array of ``shape``."""
    header = {
        JSON_KEY: 1,
        "shape": list(shape),
        "spacing_mm": list(volume.spacing_mm),
        "origin_mm": list(origin_mm),
        "calibration": asdict(volume.calibration) if volume.calibration else None,
        "metadata": _json_safe(volume.metadata),
    }
    text = json.dumps(header)
    sz, sy, sx = volume.spacing_mm
    if np.dtype(dtype) not in _IMAGEJ_DTYPES:
        return {"description": text, "metadata": None, "photometric": "minisblack"}
    axes = "ZYX" if len(shape) == 3 else "YX"
    return {
        "imagej": True,
        "resolution": (1.0 / sx, 1.0 / sy),
        "metadata": {"spacing": sz, "unit": "mm", "axes": axes, "Info": text},
    }


def _json_safe(metadata: dict) -> dict:
    """The entries of ``metadata`` that JSON can store (others dropped, logged)."""
    kept = {}
    for key, value in metadata.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            logger.debug("TIFF output: metadata %r is not JSON-serialisable; not stored", key)
            continue
        kept[str(key)] = value
    return kept


def write_tiff_pages(target: Volume, batches: Iterator[np.ndarray], path: Path) -> None:
    """Write the ``(n, Y, X)`` batches of a ``target``-shaped volume as one multi-page TIFF."""
    dtype = tiff_dtype(target.array.dtype)
    kwargs = page_kwargs(target, target.shape, dtype, origin_mm=target.origin_mm)
    pages = (np.asarray(page, dtype) for batch in batches for page in batch)
    big = int(np.prod(target.shape)) * dtype.itemsize > _BIGTIFF_BYTES
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, pages, shape=target.shape, dtype=dtype, bigtiff=big or None, **kwargs)


def existing_slices(folder: Path) -> list[Path]:
    """Slices a previous write left in ``folder``; other TIFF files there are an error.

    Raises
    ------
    InputFileError
        ``folder`` holds TIFF files not written by microsr: they would be read as slices
        of the new volume.
    """
    if not folder.is_dir():
        return []
    tiffs = [p for p in folder.iterdir() if p.suffix.lower() in TIFF_SUFFIXES]
    foreign = [p.name for p in tiffs if not SLICE_PATTERN.fullmatch(p.name)]
    if foreign:
        raise InputFileError(
            folder,
            f"holds other TIFF files ({', '.join(sorted(foreign)[:3])}, ...) that would be read "
            "as slices of the new volume; write into an empty or new folder",
        )
    return tiffs


def write_tiff_slices(
    target: Volume, batches: Iterator[np.ndarray], folder: Path, *, overwrite: bool = False
) -> None:
    """Write the batches as a folder of ``slice_NNNN.tif`` (see :func:`atomic_folder`).

    A new or empty ``folder`` appears at once when complete. With ``overwrite``, an existing
    folder keeps its other files: only the ``slice_*.tif`` of an earlier write are replaced.
    """
    existing_slices(folder)  # refuse folders holding foreign TIFFs before writing anything
    dtype = tiff_dtype(target.array.dtype)
    width = max(4, len(str(target.shape[0] - 1)))
    oz, oy, ox = target.origin_mm
    index = 0
    ours = lambda entry: SLICE_PATTERN.fullmatch(entry.name) is not None
    with atomic_folder(folder, overwrite=overwrite, replaceable=ours) as tmp:
        for batch in batches:
            for plane in batch:
                origin = (oz + index * target.spacing_mm[0], oy, ox)
                kwargs = page_kwargs(target, plane.shape, dtype, origin_mm=origin)
                tifffile.imwrite(
                    tmp / f"slice_{index:0{width}d}.tif", np.asarray(plane, dtype), **kwargs
                )
                index += 1
