"""Read and write :class:`~microsr.volume.Volume` files; the format follows the path.

Arrays are ``(Z, Y, X)``; spacing and origin are ``(z, y, x)`` in mm. A folder is a
series of 2D TIFF slices or one DICOM series. See :mod:`microsr.io.tiff` and
:mod:`microsr.io.itk_formats` for what each format keeps. Every bad input raises a
single :class:`~microsr.errors.InputFileError` naming the file; input files are
never modified, and writes are atomic (:mod:`microsr.io.atomic`).
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from microsr.errors import InputFileError, MicrosrError
from microsr.io.atomic import check_output
from microsr.io.itk_formats import ITK_FORMATS, dicom_series_ids, read_dicom_folder, read_itk_file
from microsr.io.omezarr import check_replaceable, is_zarr_path, read_ome_zarr
from microsr.io.scanco import SCANCO_FORMATS, read_scanco_file
from microsr.io.sink import format_suffix, output_suffix, slabs, write_slices, write_whole
from microsr.io.spacing import SPACING_SAME_RTOL
from microsr.io.tiff import TIFF_SUFFIXES, list_slices, read_tiff_file, read_tiff_folder
from microsr.volume import Volume

__all__ = ["SUPPORTED_FORMATS", "check_volume_output", "read_volume", "write_volume"]

logger = logging.getLogger(__name__)

#: Help text listing the formats (for CLI help and error messages).
SUPPORTED_FORMATS = """\
Supported volume formats (chosen by extension):
  folder/          2D TIFF slices (*.tif, *.tiff; natural name order), or one DICOM
                   series (read only); writing a folder gives slice_0000.tif, ...
  .tif .tiff       multi-page TIFF (ImageJ-compatible; spacing, origin, calibration kept)
  .nii .nii.gz     NIfTI
  .mha .mhd        MetaImage
  .nrrd .nhdr      NRRD
  .isq .aim        Scanco (itk-ioscanco): native values and density calibration kept;
                   ISQ is written for integer data only (float32: use .aim)
  .zarr .ome.zarr  OME-Zarr (NGFF 0.4 written; 0.4/0.5 read): chunked, compressed, spacing
                   and origin in mm, calibration kept, multiscale pyramid for viewers"""

_SUPPORTED_SHORT = "a folder of TIFF slices or a DICOM series, " + ", ".join(
    (*TIFF_SUFFIXES, *ITK_FORMATS, *SCANCO_FORMATS, ".zarr")
)


def read_volume(
    path: str | Path,
    *,
    spacing_mm: float | Sequence[float] | None = None,
    allow_nonfinite: bool = False,
) -> Volume:
    """Read a volume from a file or folder.

    Parameters
    ----------
    path
        File (format by extension, see :data:`SUPPORTED_FORMATS`) or folder of
        2D TIFF slices / DICOM files.
    spacing_mm
        Voxel size in mm: one number (isotropic) or ``(z, y, x)``. Required when
        the file stores none (e.g. plain TIFF); if the file stores a different
        one, this one wins and a warning is logged.
    allow_nonfinite
        Accept NaN/Inf voxels (otherwise they are an error).

    Returns
    -------
    Volume
        Array ``(Z, Y, X)`` in the stored dtype (a 2D image gives ``Z = 1``),
        spacing and origin ``(z, y, x)`` in mm, calibration if stored.

    Raises
    ------
    InputFileError
        Missing path, unknown extension, unreadable/truncated data, no or
        mismatched slices, RGB/4D images, no spacing available, NaN/Inf voxels.
    MicrosrError
        ``spacing_mm`` is not one or three positive numbers.
    """
    path = Path(path)
    user_spacing = as_spacing(spacing_mm)
    array, header = _read(path)
    if 0 in array.shape:
        raise InputFileError(path, f"holds no voxels (shape {tuple(array.shape)}, Z, Y, X)")
    spacing = choose_spacing(path, header["spacing_mm"], user_spacing)
    if not allow_nonfinite:
        _check_finite(path, array)
    metadata = {**header["metadata"], "source": str(path)}
    try:
        volume = Volume(array, spacing, header["origin_mm"], header["calibration"], metadata)
    except ValueError as exc:  # e.g. a zero spacing stored in the file
        raise InputFileError(path, str(exc)) from exc
    logger.info("read %s: shape %s, %s, spacing %s mm", path, volume.shape, array.dtype, spacing)
    return volume


def write_volume(volume: Volume, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a volume atomically; the format follows the extension.

    Parameters
    ----------
    volume
        The volume; its dtype is kept (TIFF stores float64 as float32).
    path
        Target file, or a folder (existing, or a path without extension) for 2D TIFF slices
        ``slice_0000.tif``, ... Parent folders are created. Nothing is left behind if the
        write fails.
    overwrite
        Replace an existing file, or write into a non-empty folder (only its earlier
        ``slice_*.tif`` are replaced). Without it an existing output is an error.

    Returns
    -------
    Path
        The written path.

    Raises
    ------
    InputFileError
        Unknown extension, an existing output without ``overwrite``, or the file system
        refused the write.
    """
    path = Path(path)
    suffix = output_suffix(path)
    if suffix in SCANCO_FORMATS or suffix in (".nrrd", ".nhdr"):
        return _write_checked(volume, path, overwrite, lambda: write_whole(volume, path, suffix))
    return write_stream(volume, slabs(volume.array), path, overwrite=overwrite)


def write_stream(
    target: Volume, batches: Iterable[np.ndarray], path: str | Path, *, overwrite: bool = False
) -> Path:
    """:func:`write_volume` of a volume given as its geometry and its ``(n, Y, X)`` slabs.

    ``target`` gives shape, dtype, spacing, origin, calibration and metadata (e.g. a
    :func:`microsr.io.template`); ``batches`` are consumed as they are written
    (:func:`microsr.io.write_slices`), so a streamed computation never holds the volume.
    Same output policy and errors as :func:`write_volume`.
    """
    path = Path(path)
    output_suffix(path)
    return _write_checked(
        target, path, overwrite, lambda: write_slices(target, batches, path, overwrite=overwrite)
    )


def _write_checked(target: Volume, path: Path, overwrite: bool, write) -> Path:
    if not overwrite and (path.is_file() or (path.is_dir() and any(path.iterdir()))):
        raise InputFileError(path, "exists; use --overwrite to replace it")
    try:
        write()
    except (OSError, RuntimeError) as exc:  # RuntimeError: SimpleITK's write errors
        raise InputFileError(path, f"cannot write: {exc}") from exc
    logger.info("wrote %s: shape %s, %s", path, target.shape, target.array.dtype)
    return path


def check_volume_output(
    path: str | Path, *, inputs: Sequence[str | Path] = (), overwrite: bool = False
) -> Path:
    """The output policy for a volume (:func:`microsr.io.atomic.check_output`), before work.

    Checks the extension, that ``path`` is none of ``inputs``, that an existing output is
    only replaced with ``overwrite`` and that its folder is writable.
    """
    path = Path(path)
    suffix = output_suffix(path)
    folder = suffix in ("", ".zarr")  # an OME-Zarr store is a folder microsr owns whole
    if suffix == ".zarr":
        check_replaceable(path)
    return check_output(
        path, inputs=inputs, overwrite=overwrite, folder=folder,
        owned=("slice_*.tif",) if suffix == "" else ("*",) if folder else (),
    )  # fmt: skip


def _read(path: Path) -> tuple[np.ndarray, dict]:
    if not path.exists():
        raise InputFileError(path, "no such file or folder")
    if is_zarr_path(path):
        return read_ome_zarr(path)
    if path.is_dir():
        return _read_folder(path)
    suffix = format_suffix(path)
    if suffix in TIFF_SUFFIXES:
        return read_tiff_file(path)
    if suffix in ITK_FORMATS:
        return read_itk_file(path, suffix)
    if suffix in SCANCO_FORMATS:
        return read_scanco_file(path, suffix)
    kind = repr(suffix) if suffix else "(no extension)"
    raise InputFileError(path, f"unknown file type {kind}; supported: {_SUPPORTED_SHORT}")


def _read_folder(folder: Path) -> tuple[np.ndarray, dict]:
    """TIFF slices if there are any, else a DICOM series."""
    if list_slices(folder):
        return read_tiff_folder(folder)
    series_ids = dicom_series_ids(folder)
    if series_ids:
        return read_dicom_folder(folder, series_ids)
    if any(p.suffix.lower() == ".dcm" for p in folder.iterdir()):
        raise InputFileError(folder, "holds .dcm files, but none is a readable DICOM image")
    raise InputFileError(folder, "no TIFF slices (*.tif, *.tiff) or DICOM files in this folder")


def parse_spacing(
    text: str | None, *, option: str = "--spacing"
) -> float | tuple[float, float, float] | None:
    """Spacing text in mm: ``"0.0195"`` -> 0.0195, ``"0.03,0.02,0.02"`` -> ``(z, y, x)``;
    ``None`` or blank -> ``None``. The one parser of spacing text (options, manifest cells).

    Raises
    ------
    MicrosrError
        Not one positive number or three, naming ``option`` (e.g. the manifest's cell).
    """
    if text is None or not str(text).strip():
        return None
    try:
        parts = [float(p) for p in str(text).replace(" ", "").split(",")]
    except ValueError:
        raise MicrosrError(f"{option} {text!r}: give a number in mm or z,y,x") from None
    if len(parts) not in (1, 3) or not all(np.isfinite(p) and p > 0 for p in parts):
        raise MicrosrError(f"{option} {text!r}: give one positive number in mm or three (z,y,x)")
    return parts[0] if len(parts) == 1 else tuple(parts)  # type: ignore[return-value]


def format_spacing(spacing: float | Sequence[float] | None) -> str:
    """The text :func:`parse_spacing` reads back (``""`` for ``None``)."""
    if spacing is None:
        return ""
    values = [spacing] if isinstance(spacing, numbers.Real) else list(spacing)
    return ",".join(f"{float(v):.10g}" for v in values)


def as_spacing(value: float | Sequence[float] | None) -> tuple[float, float, float] | None:
    """User spacing as a ``(z, y, x)`` tuple in mm (a number means isotropic)."""
    if value is None:
        return None
    values = [value] * 3 if isinstance(value, numbers.Real) else list(value)
    try:
        spacing = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        spacing = ()
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise MicrosrError(
            f"spacing must be one positive number or three (z, y, x), in mm; got {value!r}"
        )
    return spacing  # type: ignore[return-value]


def choose_spacing(
    path: Path,
    stored: tuple[float, float, float] | None,
    user: tuple[float, float, float] | None,
) -> tuple[float, float, float]:
    """The user's spacing if given (warning if it differs), else the file's."""
    if user is None:
        if stored is None:
            raise InputFileError(
                path, "no voxel spacing stored in this file; give it with --spacing (mm)"
            )
        return stored
    if stored is not None and not np.allclose(stored, user, rtol=SPACING_SAME_RTOL, atol=0.0):
        logger.warning(
            "%s: file stores spacing %s mm (z, y, x); using the given %s mm", path, stored, user
        )
    return user


def _check_finite(path: Path, array: np.ndarray, *, chunk: int = 64) -> None:
    """Raise if ``array`` holds NaN or Inf (counted slab by slab to bound memory)."""
    if not np.issubdtype(array.dtype, np.inexact):
        return
    bad = sum(
        int(array[z : z + chunk].size - np.count_nonzero(np.isfinite(array[z : z + chunk])))
        for z in range(0, array.shape[0], chunk)
    )
    if bad:
        raise InputFileError(
            path,
            f"{bad} of {array.size} voxels are NaN or Inf "
            "(pass allow_nonfinite=True to accept them)",
        )
