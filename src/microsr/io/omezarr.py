"""OME-Zarr (OME-NGFF 0.4) volumes: chunked, compressed, with a multiscale pyramid.

A store ``name.zarr`` (or ``name.ome.zarr``) is a Zarr v2 group (the OME-NGFF 0.4 layout that
napari-ome-zarr, Fiji/MoBIE and the ``ome-zarr`` reader open) holding:

- ``0``: the full-resolution ``(Z, Y, X)`` array, chunks of :data:`CHUNKS` voxels (at most),
  Blosc-zstd compressed (bit-shuffled);
- ``1``, ``2``, ...: a pyramid, each level the mean of 2 x 2 x 2 voxels of the previous one
  (an axis of 1 voxel is not halved; an odd axis is padded by its edge voxel), written after
  level ``0`` and read back from the store chunk slab by chunk slab;
- group attributes ``multiscales`` (axes ``z, y, x`` in millimetres; per level a ``scale``
  = the spacing in mm and a ``translation`` = the centre of voxel ``(0, 0, 0)`` in mm) and
  ``microsr`` (density calibration, the JSON-safe part of ``Volume.metadata``).

Writing streams: slices are gathered into chunk-aligned z-slabs of ``CHUNKS[0]`` slices, so
peak memory is one slab plus one batch whatever the depth. ``multiscales`` is written last: a
store without it is refused by the reader ("not an OME-Zarr image"), so an interrupted write
is never taken for a volume. :func:`write_ome_zarr` also writes into a temporary folder renamed
onto the target (:mod:`microsr.io.atomic`); :mod:`microsr.inference.distributed` fills a work
store ``OUT.zarr.partial`` block by block, finishes it with :func:`finish_store` and renames it
onto the target.

Reading accepts OME-NGFF 0.4 and 0.5 (``ome`` attribute, Zarr v3) images with 3 spatial axes;
spacing comes from the first dataset's ``scale`` (units converted to mm).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np

from microsr.errors import InputFileError
from microsr.io.atomic import atomic_path
from microsr.volume import Calibration, Volume

log = logging.getLogger(__name__)

#: Largest chunk ``(z, y, x)`` in voxels (float32: 8 MiB raw; a streamed slab is 32 slices).
CHUNKS = (32, 256, 256)
#: Attribute key of microsr's own metadata (calibration, provenance).
ATTR_KEY = "microsr"
#: Attribute key of the plan of a store being filled block by block (``predict --dask``).
PLAN_KEY = "microsr_plan"
#: Smallest in-plane side a pyramid level is made down to (at least 2 levels are written).
MIN_LEVEL_SIDE = 64
_UNITS_MM = {"millimeter": 1.0, "micrometer": 1e-3, "nanometer": 1e-6, "meter": 1e3,
             "centimeter": 10.0}  # fmt: skip


def is_zarr_path(path: str | Path) -> bool:
    """Whether ``path`` names a Zarr store (``.zarr``, ``.ome.zarr``; need not exist)."""
    return Path(path).name.lower().rstrip("/").endswith(".zarr")


def check_replaceable(path: Path) -> None:
    """Refuse to replace an existing non-empty folder that is not a Zarr store (user files).

    Raises
    ------
    InputFileError
        ``path`` is a file, or a non-empty folder without Zarr metadata.
    """
    if path.is_file():
        raise InputFileError(path, "exists and is a file, not a Zarr store")
    markers = (".zgroup", ".zarray", "zarr.json")
    if (
        path.is_dir()
        and any(path.iterdir())
        and not any((path / name).is_file() for name in markers)
    ):
        raise InputFileError(path, "is a folder that is not a Zarr store; refusing to replace it")


def store_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype stored for ``dtype`` (bool -> uint8; float64 kept)."""
    dtype = np.dtype(dtype)
    return np.dtype(np.uint8) if dtype == np.bool_ else dtype


def chunks_for(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """Chunk shape of a ``(Z, Y, X)`` array: :data:`CHUNKS`, clipped to the shape."""
    return tuple(max(1, min(c, n)) for c, n in zip(CHUNKS, shape))  # type: ignore[return-value]


def create_store(path: Path, target: Volume):
    """A new Zarr v2 group at ``path`` with an empty level ``0`` of ``target``'s shape/dtype.

    The OME ``multiscales`` attribute is not written yet (see :func:`finish_store`).
    """
    import numcodecs
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array(
        "0", shape=target.shape, chunks=chunks_for(target.shape),
        dtype=store_dtype(target.array.dtype), fill_value=0,
        compressors=numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE),
        chunk_key_encoding={"name": "v2", "separator": "/"},
    )  # fmt: skip
    return group


def write_ome_zarr(target: Volume, batches: Iterable[np.ndarray], path: Path) -> None:
    """Write ``(n, Y, X)`` batches of a ``target``-shaped volume as an OME-Zarr store, atomically.

    An existing store at ``path`` is replaced as a whole (callers apply the output policy;
    a folder that is not a Zarr store is never replaced).
    """
    check_replaceable(path)
    with atomic_path(path, directory=True, replace_folder=True) as tmp:
        group = create_store(tmp, target)
        array = group["0"]
        z = 0
        for slab in chunk_slabs(batches, array.chunks[0]):
            array[z : z + len(slab)] = slab
            z += len(slab)
        finish_store(group, target)


def chunk_slabs(batches: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Regroup batches of slices into slabs of exactly ``size`` slices (the last: the rest)."""
    pending: list[np.ndarray] = []
    n = 0
    for batch in batches:
        pending.append(np.asarray(batch))
        n += len(batch)
        while n >= size:
            joined = np.concatenate(pending)
            yield joined[:size]
            rest = joined[size:]
            pending, n = ([rest] if len(rest) else []), len(rest)
    if n:
        yield np.concatenate(pending)


def level_factors(shape: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """Per-axis downsampling factor of each pyramid level (level 0: ``(1, 1, 1)``)."""
    factors, f = [(1, 1, 1)], (1, 1, 1)
    while (
        len(factors) < 2 or max(math.ceil(n / s) for n, s in zip(shape[1:], f[1:])) > MIN_LEVEL_SIDE
    ):
        f = tuple(s * 2 if math.ceil(n / s) > 1 else s for n, s in zip(shape, f))  # type: ignore[assignment]
        if f == factors[-1]:
            break
        factors.append(f)  # type: ignore[arg-type]
    return factors


def finish_store(group, target: Volume) -> None:
    """Write the pyramid levels ``1..`` from level ``0``, then the OME and microsr attributes."""
    factors = level_factors(target.shape)
    for level in range(1, len(factors)):
        step = tuple(a // b for a, b in zip(factors[level], factors[level - 1]))
        _downsample_level(group, str(level - 1), str(level), step)
    group.attrs[ATTR_KEY] = {
        "calibration": asdict(target.calibration) if target.calibration else None,
        "metadata": _json_safe(target.metadata),
    }
    group.attrs["multiscales"] = [multiscales(target, factors)]
    log.info("wrote OME-Zarr pyramid of %d levels", len(factors))


def multiscales(target: Volume, factors: list[tuple[int, int, int]]) -> dict:
    """The OME-NGFF 0.4 ``multiscales`` entry of ``target`` (mm, voxel-centre translation)."""
    datasets = []
    for level, f in enumerate(factors):
        scale = [s * k for s, k in zip(target.spacing_mm, f)]
        shift = [o + (k - 1) / 2 * s for o, k, s in zip(target.origin_mm, f, target.spacing_mm)]
        datasets.append({"path": str(level), "coordinateTransformations": [
            {"type": "scale", "scale": scale}, {"type": "translation", "translation": shift},
        ]})  # fmt: skip
    axes = [{"name": a, "type": "space", "unit": "millimeter"} for a in "zyx"]
    name = str(target.metadata.get("source", "volume"))
    return {"version": "0.4", "name": Path(name).name, "axes": axes, "datasets": datasets,
            "type": "mean", "metadata": {"method": "2x2x2 mean, edge-padded"}}  # fmt: skip


def _downsample_level(group, src_name: str, dst_name: str, step: tuple[int, int, int]) -> None:
    src = group[src_name]
    shape = tuple(math.ceil(n / k) for n, k in zip(src.shape, step))
    dst = group.create_array(
        dst_name, shape=shape, chunks=chunks_for(shape), dtype=src.dtype, fill_value=0,
        compressors=src.compressors, chunk_key_encoding={"name": "v2", "separator": "/"},
    )  # fmt: skip
    slab = dst.chunks[0]
    for z in range(0, shape[0], slab):
        block = np.asarray(src[z * step[0] : (z + slab) * step[0]])
        dst[z : z + slab] = downsample(block, step, dtype=src.dtype)


def downsample(block: np.ndarray, step: tuple[int, int, int], *, dtype) -> np.ndarray:
    """Mean of ``step``-sized voxel groups of a ``(Z, Y, X)`` block (odd edges replicated)."""
    pad = [(0, -n % k) for n, k in zip(block.shape, step)]
    x = np.pad(block.astype(np.float64), pad, mode="edge")
    z, y, w = (n // k for n, k in zip(x.shape, step))
    mean = x.reshape(z, step[0], y, step[1], w, step[2]).mean(axis=(1, 3, 5))
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        mean = np.clip(np.rint(mean), info.min, info.max)
    return mean.astype(dtype)


def open_ome_zarr(path: Path):
    """``(shape, dtype, header, read)`` of an OME-Zarr image (level 0), read slab by slab.

    Raises
    ------
    InputFileError
        Not a Zarr group, no OME ``multiscales`` (or an unfinished microsr store), not 3
        spatial axes, no ``scale`` or no usable unit.
    """
    group, ms = _open_multiscales(path)
    ds = ms["datasets"][0]
    try:
        array = group[ds["path"]]
    except KeyError as exc:
        raise InputFileError(path, f"multiscales names dataset {ds['path']!r}, absent") from exc
    if array.ndim != 3:
        raise InputFileError(path, f"level 0 has shape {array.shape}; microsr needs (Z, Y, X)")
    spacing, origin = _geometry(path, ms, ds)
    ours = dict(group.attrs.get(ATTR_KEY) or {})
    cal = ours.get("calibration")
    header = {
        "spacing_mm": spacing,
        "origin_mm": origin,
        "calibration": Calibration(**cal) if cal else None,
        "metadata": dict(ours.get("metadata") or {}),
        "chunk_z": int(array.chunks[0]),
    }

    def read(start: int, stop: int) -> np.ndarray:
        return np.asarray(array[start:stop])

    return tuple(int(n) for n in array.shape), np.dtype(array.dtype), header, read


def read_ome_zarr(path: Path) -> tuple[np.ndarray, dict]:
    """Level 0 of an OME-Zarr image as a whole array, with its header (see :func:`open_ome_zarr`)."""
    shape, dtype, header, read = open_ome_zarr(path)
    out = np.empty(shape, dtype)
    for z in range(0, shape[0], CHUNKS[0]):
        out[z : z + CHUNKS[0]] = read(z, min(z + CHUNKS[0], shape[0]))
    return out, header


def _open_multiscales(path: Path):
    import zarr

    if not path.exists():
        raise InputFileError(path, "no such Zarr store")
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as exc:  # zarr raises several kinds
        raise InputFileError(path, f"is not a readable Zarr group ({exc})") from exc
    attrs = dict(group.attrs)
    ms = attrs.get("multiscales") or dict(attrs.get("ome") or {}).get("multiscales")
    if not ms:
        hint = (
            " (an unfinished predict --dask store: rerun it to finish)" if PLAN_KEY in attrs else ""
        )
        raise InputFileError(path, f"is not an OME-Zarr image: no OME 'multiscales' metadata{hint}")
    ms = ms[0]
    if not ms.get("datasets"):
        raise InputFileError(path, "OME 'multiscales' lists no datasets")
    return group, ms


def _geometry(path: Path, ms: dict, ds: dict) -> tuple:
    """``(spacing_mm, origin_mm)``; spacing ``None`` if the store has no usable scale/unit."""
    axes = ms.get("axes") or []
    names = [a.get("name") if isinstance(a, dict) else a for a in axes]
    if names and [n.lower() for n in names] != ["z", "y", "x"]:
        raise InputFileError(path, f"has axes {names}; microsr reads 3D (z, y, x) images only")
    units = [a.get("unit") if isinstance(a, dict) else None for a in axes] or [None] * 3
    scale, shift = None, [0.0, 0.0, 0.0]
    for t in (*ds.get("coordinateTransformations", ()), *ms.get("coordinateTransformations", ())):
        if t.get("type") == "scale" and "scale" in t:
            scale = [a * b for a, b in zip(t["scale"], scale or [1.0] * 3)]
        elif t.get("type") == "translation" and "translation" in t:
            shift = [a + b for a, b in zip(t["translation"], shift)]
    if scale is None or any(u not in _UNITS_MM for u in units):
        log.warning("%s: no OME scale with a length unit (mm, um, ...)", path)
        return None, (0.0, 0.0, 0.0)
    mm = [_UNITS_MM[u] for u in units]
    spacing = tuple(float(s * m) for s, m in zip(scale, mm))
    return spacing, tuple(float(o * m) for o, m in zip(shift, mm))


def _json_safe(metadata: dict) -> dict:
    return json.loads(json.dumps(metadata, default=str))
