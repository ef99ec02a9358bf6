"""TIFF volumes: one multi-page file, or a folder of 2D slices (via ``tifffile``).

What is stored
--------------
Files we write are ImageJ-compatible hyperstacks (``imagej=True``) for the dtypes
ImageJ knows (uint8, uint16, int16, float32): the in-plane pixel size goes in the
resolution tags, the slice spacing and ``unit=mm`` in the ImageJ description, so
Fiji shows the right scale. Our own JSON header (spacing, origin, calibration and
the JSON-serialisable part of ``Volume.metadata``) goes in the ImageJ ``Info``
property. Other dtypes (int8, int32, uint32, ...) are written as plain TIFF with the
JSON as the ImageDescription of the first page. float64 is written as float32.

A folder written here holds ``slice_0000.tif``, ``slice_0001.tif``, ...; each slice
carries the JSON header with its own origin (``origin_z + i * spacing_z``), so the
folder needs no sidecar file and a single slice is still self-describing.

Reading prefers our JSON, then ImageJ ``spacing``/``unit`` (um/micron converted to
mm) with the resolution tags, then the plain TIFF resolution tags, but only when
they name a unit (cm or inch) and the volume is a single slice (they carry no slice
spacing). Otherwise the spacing is reported as unknown (``None``).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import tifffile

from microsr.errors import InputFileError
from microsr.io.atomic import atomic_path
from microsr.volume import Calibration, Volume

logger = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff")
_IMAGEJ_DTYPES = {np.dtype(t) for t in ("uint8", "uint16", "int16", "float32")}
_JSON_KEY = "microsr"  # marks a JSON description as ours; value = header version
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
        Unreadable, truncated, RGB/multi-channel or 4D files.
    """
    array, raw = load_tiff(path)
    header = parse_header(raw, single_slice=array.shape[0] == 1)
    expected = header["metadata"].pop("_shape", None)
    if expected is not None and tuple(expected)[-2:] == array.shape[-2:]:
        n_expected = int(np.prod(expected[:-2], dtype=np.int64))
        if n_expected != array.shape[0]:
            raise InputFileError(
                path, f"truncated TIFF: header says {n_expected} slices, found {array.shape[0]}"
            )
    return array, header


def read_tiff_folder(folder: Path) -> tuple[np.ndarray, dict]:
    """Stack a folder of 2D TIFF slices (natural name order) into a volume.

    Parameters
    ----------
    folder
        Folder holding one 2D slice per ``*.tif``/``*.tiff`` file.

    Returns
    -------
    array, header
        As :func:`read_tiff_file`; the header comes from the first slice, and its
        spacing counts as unknown unless our JSON or ImageJ metadata give ``z``.

    Raises
    ------
    InputFileError
        No slices; a slice that is unreadable or not 2D; slices of different
        shapes or dtypes (the first odd slice is named).
    """
    files = list_slices(folder)
    if not files:
        raise InputFileError(folder, "no TIFF slices (*.tif, *.tiff) in this folder")
    first, raw = load_tiff(files[0])
    _check_single_slice(files[0], first)
    array = np.empty((len(files),) + first.shape[1:], dtype=first.dtype)
    array[0] = first[0]
    for index, path in enumerate(files[1:], start=1):
        plane, _ = load_tiff(path)
        _check_single_slice(path, plane)
        if plane.shape[1:] != first.shape[1:] or plane.dtype != first.dtype:
            raise InputFileError(
                path,
                f"slice has shape {plane.shape[1:]} and dtype {plane.dtype}, but the first "
                f"slice {files[0].name} has shape {first.shape[1:]} and dtype {first.dtype}",
            )
        array[index] = plane[0]
    header = parse_header(raw, single_slice=len(files) == 1)
    header["metadata"].pop("_shape", None)
    header["metadata"]["source_files"] = len(files)
    logger.info("read %d TIFF slices from %s", len(files), folder)
    return array, header


def write_tiff_file(volume: Volume, path: Path) -> None:
    """Write ``volume`` atomically as one multi-page TIFF (see module notes)."""
    array = _writable(volume.array)
    kwargs = _write_kwargs(volume, array.shape, array.dtype, origin_mm=volume.origin_mm)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, array, **kwargs)


def write_tiff_folder(volume: Volume, folder: Path) -> None:
    """Write ``volume`` atomically as a folder of ``slice_NNNN.tif`` 2D slices.

    An existing folder at ``folder`` is replaced as a whole, only on success.
    """
    array = _writable(volume.array)
    width = max(4, len(str(array.shape[0] - 1)))
    oz, oy, ox = volume.origin_mm
    with atomic_path(folder, directory=True) as tmp:
        for index in range(array.shape[0]):
            origin = (oz + index * volume.spacing_mm[0], oy, ox)
            kwargs = _write_kwargs(volume, array.shape[1:], array.dtype, origin_mm=origin)
            tifffile.imwrite(tmp / f"slice_{index:0{width}d}.tif", array[index], **kwargs)


def load_tiff(path: Path) -> tuple[np.ndarray, dict]:
    """Read the first series of ``path`` as ``(Z, Y, X)`` plus its raw tags."""
    try:
        with tifffile.TiffFile(path) as tif:
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
        metadata = dict(ours.get("metadata") or {})
        metadata["_shape"] = ours.get("shape")
        return {
            "spacing_mm": tuple(float(s) for s in ours["spacing_mm"]),
            "origin_mm": tuple(float(o) for o in ours.get("origin_mm", (0.0, 0.0, 0.0))),
            "calibration": Calibration(**cal) if cal else None,
            "metadata": metadata,
        }
    spacing = _imagej_spacing(raw, single_slice=single_slice)
    if spacing is None:
        spacing = _resolution_spacing(raw, single_slice=single_slice)
    return {
        "spacing_mm": spacing,
        "origin_mm": (0.0, 0.0, 0.0),
        "calibration": None,
        "metadata": {},
    }


def _parse_json(text: object) -> dict | None:
    if not isinstance(text, str) or _JSON_KEY not in text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) and _JSON_KEY in data else None


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


def _writable(array: np.ndarray) -> np.ndarray:
    """The array as TIFF can store it: float64 -> float32, bool -> uint8."""
    if array.dtype == np.float64:
        logger.info("TIFF output: converting float64 voxels to float32")
        return array.astype(np.float32)
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    return np.asarray(array)


def _write_kwargs(
    volume: Volume, shape: tuple[int, ...], dtype: np.dtype, *, origin_mm: tuple
) -> dict:
    """``tifffile.imwrite`` options storing geometry for an array of ``shape``."""
    header = {
        _JSON_KEY: 1,
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
