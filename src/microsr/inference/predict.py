"""``microsr predict``: a whole LR volume -> an SR volume in the HR scan's units.

:func:`predict_file` streams a file (:mod:`microsr.inference.engine`); :func:`predict_volume`
predicts an in-memory volume with the same engine. The output grid is the HR grid by default
(every HR slice, isotropic voxels for an isotropic LR scan); see
:class:`~microsr.inference.runner.PredictOptions`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from microsr.device import resolve_device
from microsr.inference.checkpoint import LoadedModel, load_checkpoint
from microsr.inference.engine import output_grid, predict_slices, predict_stream, units_plan
from microsr.inference.runner import PredictOptions
from microsr.inference.units import output_metadata
from microsr.io import check_volume_output, open_slices, volume_source
from microsr.volume import Volume

log = logging.getLogger(__name__)


def predict_volume(
    loaded: LoadedModel,
    lr: Volume,
    *,
    options: PredictOptions | None = None,
    out: np.ndarray | None = None,
    progress: bool = True,
) -> Volume:
    """Super-resolve every slice of an in-memory (or memory-mapped) LR volume.

    Parameters
    ----------
    loaded
        From :func:`microsr.inference.checkpoint.load_checkpoint`.
    lr
        LR volume ``(Z, Y, X)``.
    options
        Engine options, used as given.
    out
        Optional preallocated float32 array of the output's shape (e.g. a memmap) that
        receives the result, so memory is bounded by a block, not the volume depth.

    Returns
    -------
    Volume
        float32 in the input's units (or mg HA/cm3, ``options.output_units``; see
        :mod:`microsr.inference.units`), on the grid of
        :func:`~microsr.inference.engine.output_grid`.
    """
    opts = options or PredictOptions()
    source = volume_source(lr)
    grid = output_grid(source, loaded, opts)
    units = units_plan(source, loaded, opts)
    if out is None:
        out = np.empty(grid.shape, np.float32)
    blocks = predict_slices(loaded, source, options=opts, progress=progress, grid=grid, units=units)
    for s, e, sr in blocks:
        out[s:e] = sr
    meta = {
        **output_metadata(lr.metadata, units),
        "microsr_checkpoint": str(loaded.path),
        "microsr_z_grid": grid.z_grid,
    }
    return Volume(out, grid.spacing_mm, grid.origin_mm, units.calibration, meta)


def predict_file(
    checkpoint: str | Path,
    lr_path: str | Path,
    out_path: str | Path,
    *,
    spacing_mm: float | tuple[float, float, float] | None = None,
    device: str = "auto",
    options: PredictOptions | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Read an LR volume file slice by slice, predict, write the SR volume incrementally.

    The output is checked first (extension, writability, not the input, an existing output
    only with ``overwrite``: :func:`microsr.io.check_volume_output`), then the checkpoint
    and the input. Memory stays bounded by a few blocks for streamable inputs and outputs
    (:mod:`microsr.io`); the output appears atomically, only when complete.
    """
    check_volume_output(out_path, inputs=[lr_path, checkpoint], overwrite=overwrite)
    loaded = load_checkpoint(checkpoint, device=resolve_device(device))
    source = open_slices(lr_path, spacing_mm=spacing_mm)
    return predict_stream(
        loaded, source, out_path, options=options, overwrite=overwrite, progress=progress
    )
