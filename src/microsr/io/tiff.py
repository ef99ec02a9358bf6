"""Reading TIFF volumes: one multi-page file, or a folder of 2D slices (via ``tifffile``).

What files written by microsr hold is described in :mod:`microsr.io.tiff_write`. Reading
prefers our JSON header, then ImageJ ``spacing``/``unit`` (um/micron converted to mm) with the
resolution tags, then the plain TIFF resolution tags, but only when they name a unit (cm or
inch) and the volume is a single slice (they carry no slice spacing). Otherwise the spacing
is reported as unknown (``None``).

Multi-page files and slice folders can also be opened for streaming
(:func:`open_tiff_file`, :func:`open_tiff_folder`): only the requested slices are read. A
whole-folder read is the streamed read of every slice, so the checks are written once.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import tifffile

from microsr.errors import InputFileError
from microsr.volume import Calibration

logger = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff")
JSON_KEY = "microsr"  # marks a JSON description as ours; value = header version
_UNIT_TO_MM = {
    "mm": 1.0,
    "millimeter": 1.0,
    "millimetre": 1.0,
    "um": 1e-3,
    "micron": 1e-3,
    "microns": 1e-3,
    "micrometer": 1e-3,
    "micrometre": 1e-3,
    "nm": 1e-6,
    "cm": 10.0,
}
_RESOLUTION_UNIT_TO_MM = {2: 25.4, 3: 10.0}  # TIFF ResolutionUnit: 2 = inch, 3 = cm


def natural_key(name: str) -> list:
    """Sort key that orders embedded numbers by value (``s_2`` before ``s_10``)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_slices(folder: Path) -> list[Path]:
    """TIFF files directly in ``folder``, in natural order (hidden/temporary skipped)."""
    files = [
        p
        for p in folder.iterdir()
        if p.suffix.lower() in TIFF_SUFFIXES and p.is_file() and not p.name.startswith(".")
    ]
    return sorted(files, key=lambda p: natural_key(p.name))


def read_tiff_file(path: Path) -> tuple[np.ndarray, dict]:
    """Read a 2D or multi-page TIFF file.

    Parameters
    ----------
    path
        The ``.tif``/``.tiff`` file.

    Returns
    -------
    array
        Voxel values, shape ``(Z, Y, X)``; a 2D image gives ``Z = 1``.
    header
        ``spacing_mm`` (``(z, y, x)`` in mm, or ``None`` if not stored),
        ``origin_mm`` (``(z, y, x)`` in mm), ``calibration`` (or ``None``) and
        ``metadata`` (dict).

    Raises
    ------
    InputFileError
        Unreadable, truncated, RGB/multi-channel or 4D files, or no pages.
    """
    array, raw = load_tiff(path)
    header = parse_header(raw, single_slice=array.shape[0] == 1)
    expected = header.pop("shape")
    if expected is not None and tuple(expected)[-2:] == array.shape[-2:]:
        n_expected = int(np.prod(expected[:-2], dtype=np.int64))
        if n_expected != array.shape[0]:
            raise InputFileError(
                path, f"truncated TIFF: header says {n_expected} slices, found {array.shape[0]}"
            )
    return array, header


def open_tiff_file(path: Path):
    """``(shape, dtype, header, read)`` to stream the pages of a multi-page TIFF, or ``None``.

    ``None`` (then read it whole, which reports any problem) for anything unusual: not a
    plain ``(Z, Y, X)`` page series, or a page count that differs from our header's.
    ``read(start, stop)`` returns pages ``start .. stop - 1`` as ``(n, Y, X)``.
    """
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            if series.axes not in ("ZYX", "IYX", "QYX") or len(series.shape) != 3:
                return None
            raw = raw_metadata(tif)
            shape = tuple(int(n) for n in series.shape)
            dtype = np.dtype(series.dtype)
    except Exception:  # noqa: BLE001 - the whole-file read produces the one clear error
        return None
    header = parse_header(raw, single_slice=shape[0] == 1)
    expected = header.pop("shape")
    if expected is not None and tuple(expected) != shape:
        return None

    def read(start: int, stop: int) -> np.ndarray:
        try:
            with tifffile.TiffFile(path) as tif:
                return tif.series[0].asarray(key=range(start, stop)).reshape(-1, *shape[1:])
        except Exception as exc:
            raise InputFileError(
                path, f"cannot read TIFF slices {start}..{stop - 1}: {exc}"
            ) from exc

    return shape, dtype, header, read


def open_tiff_folder(folder: Path):
    """``(shape, dtype, header, read)`` to stream a folder of 2D TIFF slices (natural order).

    The header comes from the first slice; its spacing counts as unknown unless our JSON
    or ImageJ metadata give ``z``. ``read`` checks every slice it reads.

    Raises
    ------
    InputFileError
        No slices; the first slice is unreadable or not 2D.
    """
    files = list_slices(folder)
    if not files:
        raise InputFileError(folder, "no TIFF slices (*.tif, *.tiff) in this folder")
    first, raw = load_tiff(files[0])
    _check_single_slice(files[0], first)
    header = parse_header(raw, single_slice=len(files) == 1)
    header.pop("shape")
    header["metadata"]["source_files"] = len(files)
    shape = (len(files), *first.shape[1:])

    def read(start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, *shape[1:]), first.dtype)
        for i in range(start, stop):
            plane, _ = load_tiff(files[i])
            _check_single_slice(files[i], plane)
            if plane.shape[1:] != shape[1:] or plane.dtype != first.dtype:
                raise InputFileError(
                    files[i],
                    f"slice has shape {plane.shape[1:]} and dtype {plane.dtype}, but the first "
                    f"slice {files[0].name} has shape {shape[1:]} and dtype {first.dtype}",
                )
            out[i - start] = plane[0]
        return out

    return shape, first.dtype, header, read


def read_tiff_folder(folder: Path) -> tuple[np.ndarray, dict]:
    """Stack a folder of 2D TIFF slices (natural name order) into a volume.

    Returns
    -------
    array, header
        As :func:`read_tiff_file` (see :func:`open_tiff_folder` for the header).

    Raises
    ------
    InputFileError
        No slices; a slice that is unreadable or not 2D; slices of different shapes or
        dtypes (the first odd slice is named).
    """
    shape, _, header, read = open_tiff_folder(folder)
    array = read(0, shape[0])
    logger.info("read %d TIFF slices from %s", shape[0], folder)
    return array, header


def load_tiff(path: Path) -> tuple[np.ndarray, dict]:
    """Read the first series of ``path`` as ``(Z, Y, X)`` plus its raw tags."""
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series or 0 in tif.series[0].shape:
                raise InputFileError(path, "holds no image data (0 slices)")
            series = tif.series[0]
            shape, axes = tuple(series.shape), series.axes
            if axes == "SYX" and _planar_samples(tif.pages[0]):
                # numpy arrays of shape (3 or 4, Y, X) written by tifffile's defaults
                logger.warning("%s: reading %d planar samples as slices", path, shape[0])
            elif len(shape) not in (2, 3) or "S" in axes or "C" in axes:
                raise InputFileError(
                    path,
                    f"image has shape {shape} (axes {axes}); expected a 2D slice or a 3D "
                    "grey-value volume (RGB, multi-channel and 4D images are not supported)",
                )
            array = series.asarray()
            raw = raw_metadata(tif)
    except InputFileError:
        raise
    except Exception as exc:  # tifffile raises many types for corrupt data; rephrase all
        raise InputFileError(path, f"cannot read TIFF: {exc}") from exc
    if array.ndim == 2:
        array = array[np.newaxis]
    return array, raw


def raw_metadata(tif: tifffile.TiffFile) -> dict:
    """The first page's metadata that spacing/origin/calibration are parsed from."""
    page = tif.pages[0]
    tags = {name: page.tags.get(name) for name in ("XResolution", "YResolution")}
    unit = page.tags.get("ResolutionUnit")
    return {
        "imagej": tif.imagej_metadata or {},
        "description": page.description,
        "resolution": {k: (t.value if t else None) for k, t in tags.items()},
        "resolution_unit": int(unit.value) if unit else None,
    }


def _planar_samples(page: tifffile.TiffPage) -> bool:
    """True for samples stored plane by plane (not interleaved RGB pixels).

    ``tifffile.imwrite`` stores an array of shape ``(3 or 4, Y, X)`` as one page of
    planar RGB(A) by default; such a page is read back as a 3- or 4-slice volume.
    Interleaved (contiguous) RGB, the layout of real colour images, stays an error.
    """
    return page.planarconfig == tifffile.PLANARCONFIG.SEPARATE


def _check_single_slice(path: Path, array: np.ndarray) -> None:
    if array.shape[0] != 1:
        raise InputFileError(
            path, f"holds {array.shape[0]} pages; a slice folder needs one 2D image per file"
        )


def parse_header(raw: dict, *, single_slice: bool) -> dict:
    """Geometry from raw tags: our JSON, else ImageJ, else resolution tags."""
    ours = _parse_json(raw["imagej"].get("Info")) or _parse_json(raw["description"])
    if ours is not None:
        cal = ours.get("calibration")
        return {
            "shape": ours.get("shape"),
            "spacing_mm": tuple(float(s) for s in ours["spacing_mm"]),
            "origin_mm": tuple(float(o) for o in ours.get("origin_mm", (0.0, 0.0, 0.0))),
            "calibration": Calibration(**cal) if cal else None,
            "metadata": dict(ours.get("metadata") or {}),
        }
    spacing = _imagej_spacing(raw, single_slice=single_slice)
    if spacing is None:
        spacing = _resolution_spacing(raw, single_slice=single_slice)
    return {
        "shape": None,
        "spacing_mm": spacing,
        "origin_mm": (0.0, 0.0, 0.0),
        "calibration": None,
        "metadata": {},
    }


def _parse_json(text: object) -> dict | None:
    if not isinstance(text, str) or JSON_KEY not in text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) and JSON_KEY in data else None


def _pixel_size(raw: dict, factor: float) -> tuple[float, float] | None:
    """In-plane ``(y, x)`` pixel size in mm from resolution tags (pixels per unit)."""
    res = raw["resolution"]
    if res["XResolution"] is None or res["YResolution"] is None:
        return None
    sizes = []
    for name in ("YResolution", "XResolution"):
        num, den = res[name]
        if num <= 0 or den <= 0:
            return None
        sizes.append(factor * den / num)
    return sizes[0], sizes[1]


def _imagej_spacing(raw: dict, *, single_slice: bool) -> tuple[float, float, float] | None:
    unit = str(raw["imagej"].get("unit", "")).strip().lower()
    unit = unit.replace("\\u00b5", "u").replace("\u00b5", "u").replace("\u03bc", "u")
    factor = _UNIT_TO_MM.get(unit)
    pixel = _pixel_size(raw, factor) if factor else None
    if pixel is None:
        return None
    z = raw["imagej"].get("spacing")
    if z is None and not single_slice:
        return None  # ImageJ's default slice spacing is 1 unit: not a real value
    return (float(z) * factor if z is not None else pixel[1], *pixel)


def _resolution_spacing(raw: dict, *, single_slice: bool) -> tuple[float, float, float] | None:
    factor = _RESOLUTION_UNIT_TO_MM.get(raw["resolution_unit"])
    pixel = _pixel_size(raw, factor) if factor else None
    if pixel is None or not single_slice:
        return None  # TIFF tags have no slice spacing
    return (pixel[1], *pixel)
