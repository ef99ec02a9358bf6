"""``microsr predict``: a whole LR volume -> an SR volume on the HR in-plane grid.

Slices are processed in batches: upsampled (the same bilinear function as everywhere),
normalised as the checkpoint's training data was, passed through the model (tiled when a
slice is larger than ``tile``), and mapped back to the LR slice's grey-value range (per-slice
min-max) or to the density window. The output holds the LR number of slices: a 2D model
sharpens in-plane only, so z spacing stays the LR one.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from microsr.inference.checkpoint import LoadedModel, load_checkpoint
from microsr.inference.engine import (
    PredictOptions,
    image_fn,
    predict_slices,
    predict_stream,
    sr_geometry,
)
from microsr.inference.reader import open_slices, volume_source
from microsr.inference.tiling import predict_tiled
from microsr.training.device import resolve_device
from microsr.volume import Volume

log = logging.getLogger(__name__)


def model_images(
    loaded: LoadedModel,
    x: torch.Tensor,
    *,
    tile: int = 512,
    overlap: int = 32,
    tta: bool = False,
) -> torch.Tensor:
    """Model image ``sigmoid(logits)`` in [0, 1] for normalised ``(N, C, H, W)`` input.

    ``C`` is 1, or ``2k + 1`` neighbouring slices for a 2.5D model. ``tta=True`` averages
    the 8 flips/rotations of each tile (:func:`microsr.inference.augment.tta_images`; 8x
    the compute). Full precision and the model as loaded (for scoring).
    """
    opts = PredictOptions(tta=tta, fuse_bn=False, precision="32", channels_last=False)
    with torch.inference_mode():
        fn = image_fn(loaded, opts)
        return predict_tiled(fn, x, tile=tile, overlap=overlap, compute_device=loaded.device)


def predict_volume(
    loaded: LoadedModel,
    lr: Volume,
    *,
    batch_size: int | None = None,
    tile: int = 512,
    overlap: int = 32,
    out: np.ndarray | None = None,
    progress: bool = True,
    options: PredictOptions | None = None,
) -> Volume:
    """Super-resolve every slice of an in-memory (or memory-mapped) LR volume.

    The same engine as :func:`predict_file` (:func:`microsr.inference.engine.predict_slices`).

    Parameters
    ----------
    loaded
        From :func:`microsr.inference.checkpoint.load_checkpoint`.
    lr
        LR volume ``(Z, Y, X)``.
    out
        Optional preallocated ``(Z, Y * f, X * f)`` float32 array (e.g. a memmap) that
        receives the result, so memory is bounded by the batch, not the volume depth.
    options
        Engine options; ``batch_size``, ``tile`` and ``overlap`` override its fields.

    Returns
    -------
    Volume with spacing ``(z, y / f, x / f)`` and the HR-grid origin; float32 grey values.
    """
    opts = (options or PredictOptions()).model_copy(
        update={"batch_size": batch_size, "tile": tile, "overlap": overlap}
    )
    source = volume_source(lr)
    shape, spacing, origin = sr_geometry(source, loaded.factor)
    if out is None:
        out = np.empty(shape, np.float32)
    for s, e, sr in predict_slices(loaded, source, options=opts, progress=progress):
        out[s:e] = sr
    meta = {**lr.metadata, "microsr_checkpoint": str(loaded.path)}
    return Volume(out, spacing, origin, lr.calibration, meta)


def predict_file(
    checkpoint: str | Path,
    lr_path: str | Path,
    out_path: str | Path,
    *,
    spacing_mm: float | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    tile: int | None = None,
    progress: bool = True,
    options: PredictOptions | None = None,
) -> Path:
    """Read an LR volume file slice by slice, predict, write the SR volume incrementally.

    Memory stays bounded by a few batches for TIFF/MetaImage/NIfTI inputs and TIFF/MetaImage
    outputs (:mod:`microsr.inference.reader`, :mod:`microsr.inference.writer`); the output
    appears atomically, only when complete. ``batch_size`` and ``tile``, when given,
    override those of ``options`` (:class:`microsr.inference.engine.PredictOptions`).
    """
    opts = options or PredictOptions()
    update = {k: v for k, v in (("batch_size", batch_size), ("tile", tile)) if v is not None}
    opts = opts.model_copy(update=update)
    loaded = load_checkpoint(checkpoint, device=resolve_device(device))
    source = open_slices(lr_path, spacing_mm=spacing_mm)
    written = predict_stream(loaded, source, out_path, options=opts, progress=progress)
    log.info("wrote %s %s", written, source.shape)
    return written
