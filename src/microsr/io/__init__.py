"""Read and write :class:`~microsr.volume.Volume` files, whole or slice by slice.

Arrays are ``(Z, Y, X)``; spacing and origin are ``(z, y, x)`` in mm; the format follows the
path (a folder is a series of 2D TIFF slices or one DICOM series). Every bad input raises a
single :class:`~microsr.errors.InputFileError` naming the file; input files are never
modified; writes are atomic and follow one output policy (:mod:`microsr.io.atomic`).

- whole volumes: :func:`read_volume`, :func:`write_volume` (:mod:`microsr.io.files`); a
  volume computed slab by slab: :func:`write_stream`; OME-Zarr inputs kept on disk and read
  when indexed: :func:`microsr.io.lazy.open_volume`;
- slice sources and sinks for streaming: :func:`open_slices` (:mod:`microsr.io.source`),
  :func:`write_slices` and :func:`template` (:mod:`microsr.io.sink`);
- formats: :mod:`microsr.io.tiff` / :mod:`microsr.io.tiff_write`,
  :mod:`microsr.io.itk_formats` / :mod:`microsr.io.itk_stream`, :mod:`microsr.io.scanco`,
  :mod:`microsr.io.omezarr` (OME-Zarr stores, ``.zarr``); :mod:`microsr.io.store_lock` keeps
  two jobs from filling one store.
"""

from microsr.io.files import (
    SUPPORTED_FORMATS,
    as_spacing,
    check_volume_output,
    choose_spacing,
    read_volume,
    write_stream,
    write_volume,
)
from microsr.io.sink import format_suffix, output_suffix, template, write_slices
from microsr.io.source import SliceSource, open_slices, volume_source

__all__ = [
    "SUPPORTED_FORMATS",
    "SliceSource",
    "as_spacing",
    "check_volume_output",
    "choose_spacing",
    "format_suffix",
    "open_slices",
    "output_suffix",
    "read_volume",
    "template",
    "volume_source",
    "write_slices",
    "write_stream",
    "write_volume",
]
