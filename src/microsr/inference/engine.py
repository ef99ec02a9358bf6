"""Streaming prediction: an LR volume in, an SR volume in stated units out.

For each output slice the engine builds the model's input exactly as training did
(:mod:`microsr.data.dataset`): the LR volume is upsampled bilinearly in-plane and
interpolated linearly along z at the slice's fractional LR index ``t`` (and ``t +- 1 .. k``
for a 2.5D model; :mod:`microsr.pairing.upsample`), normalised with the checkpoint's
:class:`~microsr.data.normalize.NormalizationConfig`; the model's [0, 1] output is mapped back
to HR units (:func:`super_resolve`).

Output grids: each axis is upsampled by the factor that brings the input's voxel size to the
model's HR target voxel (:func:`microsr.inference.scale.plan_scale`: an axis already at the
target is kept, an HR scan given as LR is refused unless ``force``; ``keep_factors``: the
trained factors on the input's own grid, a transfer across scales), origin from the
convention of :mod:`microsr.pairing.geometry`. ``PredictOptions.z_grid``: ``"hr"``: z too;
``"lr"``: the LR slices, in-plane upsampling only; ``"auto"``: the grid the checkpoint was
trained for (microsr 0.1 checkpoints: ``"lr"``).

Units (:mod:`microsr.inference.units`): a calibrated input is converted into the model's
window units before normalisation, and the SR is written in the input's own units with its
calibration (or in mg HA/cm3 with ``output_units="mgha"``).

Three stages overlap (:mod:`microsr.inference.threads`): a background thread reads LR blocks
ahead, the calling thread computes, a second thread writes SR slices behind; memory is
bounded by a few blocks, whatever the number of slices.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from microsr.calibration import LEGACY_UNITS
from microsr.data.normalize import (
    NormalizationConfig,
    check_input_range,
    from_unit,
    input_range,
    output_range,
    to_unit,
)
from microsr.errors import MicrosrError
from microsr.inference.checkpoint import LoadedModel
from microsr.inference.runner import PredictOptions, autocast_dtype, batch_size, image_fn
from microsr.inference.scale import plan_scale
from microsr.inference.threads import BackgroundWriter, prefetched
from microsr.inference.tiling import predict_tiled
from microsr.inference.units import UnitsPlan, apply_map, output_metadata, plan_units
from microsr.io import SliceSource, template, write_slices
from microsr.pairing.geometry import hr_grid, output_positions
from microsr.pairing.upsample import sample_z, upsample_bilinear, z_span
from microsr.runtime import progress as make_progress

log = logging.getLogger(__name__)

#: Output slices computed per block (the reader reads the LR slices one block needs).
BLOCK = 8


@dataclass(frozen=True)
class OutputGrid:
    """Where the SR slices lie: geometry and the fractional LR index ``t`` of each slice."""

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    t: np.ndarray
    z_grid: str
    factor: int = 1  # in-plane factor (y and x)


def output_grid(source: SliceSource, loaded: LoadedModel, options: PredictOptions) -> OutputGrid:
    """The SR volume's grid for ``source`` under ``options`` (``z_grid``, ``force``,
    ``keep_factors``; see the module notes).

    Raises
    ------
    MicrosrError
        The HR grid asked of a one-slice LR volume; an input already at the HR target
        (unless ``force``; :func:`~microsr.inference.scale.plan_scale`).
    """
    z_grid = options.z_grid
    grid = loaded.meta.z_grid if z_grid == "auto" else z_grid
    plan = plan_scale(
        source.spacing_mm, loaded.meta, z_grid=grid, force=options.force,
        keep_factors=options.keep_factors, name=str(source.path),
    )  # fmt: skip
    fz, f, _ = plan.factors
    z = source.shape[0]
    if fz > 1 and z < 2:
        raise MicrosrError(
            f"{source.path}: {z} LR slice; the HR z grid interpolates between LR slices and "
            "needs at least 2 (use --z-grid lr to sharpen the slice in-plane only)"
        )
    shape, spacing, origin = hr_grid(
        source.shape, source.spacing_mm, source.origin_mm, f, z_factor=fz
    )
    return OutputGrid(shape, spacing, origin, output_positions(shape[0], fz), grid, f)


def units_plan(source: SliceSource, loaded: LoadedModel, options: PredictOptions) -> UnitsPlan:
    """How ``source``'s values reach the model's units and the output's (:mod:`.units`)."""
    return plan_units(
        source.calibration, source.metadata, loaded.meta.units,
        input_units=options.input_units, output_units=options.output_units,
        force=options.force, name=str(source.path),
    )  # fmt: skip


def super_resolve(
    fn: Callable[[torch.Tensor], torch.Tensor],
    stack: torch.Tensor,
    norm: NormalizationConfig,
    *,
    options: PredictOptions,
    compute_device: torch.device,
) -> torch.Tensor:
    """SR slices ``(n, H, W)`` in HR units from LR input stacks ``(n, 2k + 1, H, W)``.

    ``stack`` holds the LR volume (its units) at ``t - k .. t + k`` on the HR in-plane grid;
    channel ``k`` is the slice at the output's own z. Normalisation, the model (tiled when a
    slice is larger than ``options.tile``) and the mapping back to HR units.
    """
    n, c, h, w = stack.shape
    flat = stack.reshape(n * c, h, w)
    x = to_unit(flat, *input_range(flat, norm)).reshape(n, c, h, w)
    low, high = output_range(stack[:, c // 2], norm)
    out = predict_tiled(
        fn, x, tile=options.tile, overlap=options.overlap, compute_device=compute_device
    )
    return from_unit(out[:, 0], low, high)


def super_resolve_batched(
    fn: Callable[[torch.Tensor], torch.Tensor],
    stacks: torch.Tensor,
    norm: NormalizationConfig,
    *,
    options: PredictOptions,
    compute_device: torch.device,
    batch: int,
) -> torch.Tensor:
    """:func:`super_resolve` of ``(N, 2k + 1, H, W)`` stacks, ``batch`` at a time: ``(N, H, W)``.

    The one batched SR loop: ``predict`` (:func:`predict_slices`) and scoring
    (:func:`microsr.evaluation.dataset.dataset_stacks`) both run it.
    """
    return torch.cat([
        super_resolve(fn, stacks[i : i + batch], norm, options=options,
                      compute_device=compute_device)
        for i in range(0, len(stacks), batch)
    ])  # fmt: skip


def _blocks(
    source: SliceSource, grid: OutputGrid, k: int, zrange: tuple[int, int]
) -> Iterator[tuple]:
    """``(start, stop, positions, first, lr_block)`` for consecutive blocks of output slices
    ``zrange[0] .. zrange[1] - 1``; each block reads only the LR slices it needs (its halo)."""
    z = source.shape[0]
    for s in range(zrange[0], zrange[1], BLOCK):
        e = min(s + BLOCK, zrange[1])
        positions = grid.t[s:e, None] + np.arange(-k, k + 1)
        first, stop = z_span(positions, z)
        yield s, e, positions, first, source.read(first, stop)


def predict_slices(
    loaded: LoadedModel,
    source: SliceSource,
    *,
    options: PredictOptions | None = None,
    progress: bool = True,
    zrange: tuple[int, int] | None = None,
    grid: OutputGrid | None = None,
    units: UnitsPlan | None = None,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(start, stop, sr)`` for consecutive blocks of output slices of ``source``.

    ``sr`` is float32 ``(stop - start, Y f, X f)`` on ``grid`` (default: :func:`output_grid`)
    in the units of ``units`` (default: :func:`units_plan`; the input's own). A reader thread
    reads ahead; a 2.5D model gets its ``k`` neighbouring slices on each side, clamped at the
    volume's ends. ``zrange``: only output slices ``start .. stop - 1`` (a part of the volume;
    each output slice depends only on the LR slices around its own ``t``, so the parts of a
    split volume equal the whole's).
    """
    opts = options or PredictOptions()
    grid = grid or output_grid(source, loaded, opts)
    units = units or units_plan(source, loaded, opts)
    zrange = zrange or (0, len(grid.t))
    norm, k, f = loaded.meta.normalization, loaded.context_slices, grid.factor
    if not norm.output_in_hr_units:
        log.warning(
            "%s: a microsr %s checkpoint without a fitted output range: SR is mapped back "
            "through each LR slice's own min and max, so its grey values are offset from the "
            "HR scan's (retrain to get SR in HR units)", loaded.path, loaded.meta.microsr_version,
        )  # fmt: skip
    fn, device, batch = image_fn(loaded, opts), loaded.device, batch_size(opts, loaded.device)
    work = device if max(source.shape[1:]) * f <= opts.tile else torch.device("cpu")
    bar = make_progress(
        total=zrange[1] - zrange[0], desc=source.path.name, unit="slice", disable=not progress
    )
    blocks = _blocks(source, grid, k, zrange)
    with bar, torch.inference_mode():
        for s, e, positions, first, block in prefetched(blocks, opts.prefetch):
            block = apply_map(block, units.to_model)  # into the model's units
            if s == 0:  # once per file: are these intensities what the model was trained on?
                check_input_range(block, norm, name=str(source.path))
            t = torch.from_numpy(block).to(work)
            up = upsample_bilinear(t, factor=f)
            stacks = sample_z(up, positions, n=source.shape[0], first=first)
            out = super_resolve_batched(
                fn, stacks, norm, options=opts, compute_device=device, batch=batch
            )
            sr = apply_map(out.float().cpu().numpy(), units.to_output)
            if not np.isfinite(sr).all():
                raise MicrosrError(
                    f"{source.path}: the model produced NaN or Inf values in output slices "
                    f"{s}..{e - 1}; nothing was written (is the input in the units it was "
                    "trained on?)"
                )
            yield s, e, sr
            bar.update(e - s)


def predict_stream(
    loaded: LoadedModel,
    source: SliceSource,
    out_path: str | Path,
    *,
    options: PredictOptions | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Super-resolve ``source`` block by block into ``out_path`` (atomic).

    Parameters
    ----------
    loaded
        From :func:`microsr.inference.checkpoint.load_checkpoint`; its device computes.
    source
        From :func:`microsr.io.open_slices`; ``(Z, Y, X)`` LR slices.
    out_path
        Output file or folder; format by extension (:func:`microsr.io.write_slices`).

    Returns
    -------
    Path
        ``out_path``: a float32 volume in the units of :func:`units_plan`, on the grid of
        :func:`output_grid`,
        written only if every slice succeeded.
    """
    opts = options or PredictOptions()
    grid = output_grid(source, loaded, opts)
    units = units_plan(source, loaded, opts)
    target = output_target(loaded, source, opts, grid=grid, units=units)
    writer = BackgroundWriter(
        lambda b: write_slices(target, b, out_path, overwrite=overwrite), opts.prefetch
    )
    ok, t0 = False, time.perf_counter()
    try:
        for _, _, sr in predict_slices(
            loaded, source, options=opts, progress=progress, grid=grid, units=units
        ):
            writer.put(sr)
        ok = True
    finally:
        writer.close(ok)
    dt = time.perf_counter() - t0
    n = grid.shape[0]
    log.info(
        "wrote %s: shape %s (%s grid, from LR %s), %d slices in %.1f s (%.1f slices/s)",
        out_path, grid.shape, grid.z_grid, source.shape, n, dt, n / dt,
    )  # fmt: skip
    return Path(out_path)


def output_target(
    loaded: LoadedModel,
    source: SliceSource,
    options: PredictOptions,
    *,
    grid: OutputGrid | None = None,
    units: UnitsPlan | None = None,
):
    """The SR volume's geometry, units and provenance metadata, holding no voxels (float32).

    ``grid`` / ``units``: default :func:`output_grid` / :func:`units_plan` of the options.
    """
    opts = options
    grid = grid or output_grid(source, loaded, opts)
    units = units or units_plan(source, loaded, opts)
    dtype = autocast_dtype(loaded.device, opts.precision) or torch.float32
    meta = {
        **output_metadata(source.metadata, units),
        "microsr_checkpoint": str(loaded.path),
        "microsr_precision": str(dtype).removeprefix("torch."),  # provenance: bf16 or fp32
        "microsr_z_grid": grid.z_grid,
    }
    if not loaded.meta.normalization.output_in_hr_units:
        meta["microsr_units"] = LEGACY_UNITS
    return template(grid.shape, grid.spacing_mm, grid.origin_mm, units.calibration, meta)
