"""Streaming prediction: read LR slices ahead, predict in batches, write SR slices behind.

Three stages overlap so the model never waits for the disk: a background thread reads
batches of LR slices (:mod:`microsr.inference.reader`), the calling thread upsamples,
normalises and runs the model, and a second background thread writes the SR slices
(:mod:`microsr.inference.writer`). Memory is bounded by a few batches, whatever the
number of slices.

The model runs in inference mode with BatchNorm folded into the preceding convolutions
(exact in eval mode up to float rounding), channels-last, optionally ``torch.compile``-d,
under bf16 autocast on CUDA and on CPUs with native bf16 instructions (AVX512-BF16 or
AMX; measured 2x faster than fp32 there, with SR images within 0.01 dB PSNR of fp32, see
BENCHMARKS.md), and in fp32 on other CPUs.
"""

from __future__ import annotations

import copy
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from tqdm.auto import tqdm

from microsr.data.normalize import NormalizationConfig
from microsr.data.upsample import upsample_bilinear
from microsr.inference.augment import tta_images
from microsr.inference.checkpoint import LoadedModel
from microsr.inference.reader import SliceSource
from microsr.inference.tiling import predict_tiled
from microsr.inference.writer import template, write_slices

log = logging.getLogger(__name__)


class PredictOptions(BaseModel):
    """How :func:`predict_stream` runs the model (none of these change what it computes).

    ``precision="auto"``: bf16 autocast on CUDA (fp16 where bf16 is unsupported) and on
    CPUs with native bf16 (:func:`cpu_has_native_bf16`), fp32 on other CPUs.
    ``channels_last``: on by default (measured faster on CPU and the usual choice on
    CUDA, see BENCHMARKS.md). ``prefetch``: batches read ahead and queued for writing.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_size: int | None = Field(
        None, ge=1, description="slices per batch; None: 8 on CUDA, 1 on CPU (measured faster)"
    )
    tile: int = Field(512, ge=8, description="tile side (HR px) for slices larger than this")
    overlap: int = Field(32, ge=0)
    precision: Literal["auto", "32", "bf16", "16"] = "auto"
    channels_last: bool = True
    fuse_bn: bool = True
    compile: bool = False
    tta: bool = False
    prefetch: int = Field(2, ge=1)


def batch_size(options: PredictOptions, device: torch.device) -> int:
    """Slices per batch: the option, else 8 on CUDA and 1 on CPU.

    On a quiet 2-core CPU, batch 1 predicted 400 x 400 slices faster than batch 8
    (7.5 vs 5.1 slices/s, BENCHMARKS.md): the convolutions already saturate the cores and
    bigger batches only add memory traffic. GPUs need batches to fill.
    """
    if options.batch_size is not None:
        return options.batch_size
    return 8 if device.type == "cuda" else 1


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of an eval-mode model with each ``Conv2d -> BatchNorm2d`` pair fused.

    Only adjacent pairs inside ``nn.Sequential`` containers are fused (there the conv
    output feeds nothing but the norm); the norm becomes ``nn.Identity``.
    """
    model = copy.deepcopy(model).eval()
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in itertools.pairwise(names):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq._modules[a] = fuse_conv_bn_eval(conv, bn)
                seq._modules[b] = nn.Identity()
    return model


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX), so bf16 convs are fast.

    Without them oneDNN emulates bf16, which is slower than fp32; ``precision="auto"``
    then stays in fp32 on the CPU.
    """
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype ``precision`` resolves to on ``device``; None: plain fp32."""
    if precision == "32":
        return None
    if precision == "auto" and device.type != "cuda":
        return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else None
    if precision == "16":
        return torch.float16
    if device.type == "cuda" and precision == "auto" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def image_fn(
    loaded: LoadedModel, options: PredictOptions
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> sigmoid(model(x))`` (float32) on ``loaded.device``, prepared for speed."""
    device = loaded.device
    model = fold_batchnorm(loaded.model) if options.fuse_bn else loaded.model
    channels_last = options.channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if options.compile:
        model = torch.compile(model)
    dtype = autocast_dtype(device, options.precision)

    def run(x: torch.Tensor) -> torch.Tensor:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(x)
        return torch.sigmoid(logits.float())

    def fn(x: torch.Tensor) -> torch.Tensor:
        return tta_images(run, x) if options.tta else run(x)

    return fn


def _normalise(up: torch.Tensor, norm: NormalizationConfig) -> tuple[torch.Tensor, ...]:
    """``(m, H, W)`` -> normalised slices in [0, 1], offset ``(m,)``, scale ``(m,)``."""
    m = len(up)
    if norm.mode == "window":
        offset = torch.full((m,), float(norm.low), device=up.device)
        scale = torch.full((m,), float(norm.high - norm.low), device=up.device)
    else:
        flat = up.reshape(m, -1)
        offset, scale = flat.amin(1), flat.amax(1) - flat.amin(1)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))[:, None, None]
    x = ((up - offset[:, None, None]) / safe).clamp_(0, 1)
    return x, offset, scale


def _prefetched(items: Iterable, depth: int) -> Iterator:
    """Iterate ``items`` in a background thread, ``depth`` items ahead."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def work() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((done, None))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            q.put((done, exc))

    thread = threading.Thread(target=work, name="microsr-reader", daemon=True)
    thread.start()
    try:
        while True:
            item, exc = q.get()
            if exc is not None:
                raise exc
            if item is done:
                return
            yield item
    finally:
        stop.set()
        thread.join()


class _BackgroundWriter:
    """Run ``write(batches)`` in a thread fed through a bounded queue."""

    _DONE, _ABORT = object(), object()

    def __init__(self, write: Callable[[Iterator[np.ndarray]], object], depth: int) -> None:
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, args=(write,), name="microsr-writer")
        self.thread.start()

    def _work(self, write) -> None:
        try:
            write(self._batches())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            self.error = exc

    def _batches(self) -> Iterator[np.ndarray]:
        while (item := self.q.get()) is not self._DONE:
            if item is self._ABORT:
                raise RuntimeError("prediction failed; output discarded")
            yield item

    def put(self, item) -> None:
        while self.thread.is_alive():
            try:
                self.q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        if self.error is not None:
            raise self.error

    def close(self, ok: bool) -> None:
        """Finish (``ok``) or abort the write; raise the writer's error only when ``ok``."""
        try:
            self.put(self._DONE if ok else self._ABORT)
        except BaseException:
            if ok:
                raise
        self.thread.join()
        if ok and self.error is not None:
            raise self.error


def _blocks(source: SliceSource, batch: int, k: int) -> Iterator[tuple[int, int, int, np.ndarray]]:
    """``(start, stop, first_read, slices)``: each batch with ``k`` neighbours each side."""
    z = source.shape[0]
    for s in range(0, z, batch):
        e = min(s + batch, z)
        lo, hi = max(0, s - k), min(z, e + k)
        yield s, e, lo, source.read(lo, hi)


def _predict_block(fn, block: np.ndarray, span: tuple[int, int, int, int], ctx: dict) -> np.ndarray:
    """SR slices ``(n, Y f, X f)`` float32 for LR slices ``block`` (see :func:`_blocks`)."""
    s, e, lo, z = span
    f, k, opts, device = ctx["factor"], ctx["k"], ctx["options"], ctx["device"]
    hr_side = max(block.shape[1:]) * f
    work = device if hr_side <= opts.tile else torch.device("cpu")  # big slices: tile on CPU
    t = torch.from_numpy(block)
    if work.type == "cuda":
        t = t.pin_memory().to(work, non_blocking=True)
    x, offset, scale = _normalise(upsample_bilinear(t, factor=f), ctx["norm"])
    centre = torch.arange(s, e, device=work)
    index = (centre[:, None] + torch.arange(-k, k + 1, device=work)).clamp(0, z - 1) - lo
    x, offset, scale = x[index], offset[centre - lo], scale[centre - lo]  # (n, 2k+1, H, W)
    pred = predict_tiled(fn, x, tile=opts.tile, overlap=opts.overlap, compute_device=device)
    out = pred[:, 0] * scale[:, None, None] + offset[:, None, None]
    return out.float().cpu().numpy()


def predict_slices(
    loaded: LoadedModel,
    source: SliceSource,
    *,
    options: PredictOptions | None = None,
    progress: bool = True,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(start, stop, sr)`` for consecutive batches of ``source``'s slices.

    ``sr`` is float32 ``(stop - start, Y f, X f)`` in the LR grey-value units (per-slice
    range or density window mapped back). A reader thread reads ahead; a 2.5D model gets
    its ``k`` neighbouring slices on each side, clamped at the volume's ends.
    """
    opts = options or PredictOptions()
    z = source.shape[0]
    ctx = {
        "factor": loaded.factor,
        "k": loaded.context_slices,
        "options": opts,
        "device": loaded.device,
        "norm": NormalizationConfig.model_validate(loaded.meta["normalization"]),
    }
    fn = image_fn(loaded, opts)
    bar = tqdm(total=z, desc=source.path.name, unit="slice", disable=not progress)
    with bar, torch.inference_mode():
        for s, e, lo, block in _prefetched(
            _blocks(source, batch_size(opts, loaded.device), ctx["k"]), opts.prefetch
        ):
            yield s, e, _predict_block(fn, block, (s, e, lo, z), ctx)
            bar.update(e - s)


def sr_geometry(source: SliceSource, factor: int) -> tuple[tuple, tuple, tuple]:
    """Shape, spacing (mm) and origin (mm) of the SR volume: the HR in-plane grid, LR z."""
    z, y, x = source.shape
    sz, sy, sx = source.spacing_mm
    oz, oy, ox = source.origin_mm
    origin = (oz, oy - (factor - 1) / 2 * sy / factor, ox - (factor - 1) / 2 * sx / factor)
    return (z, y * factor, x * factor), (sz, sy / factor, sx / factor), origin


def predict_stream(
    loaded: LoadedModel,
    source: SliceSource,
    out_path: str | Path,
    *,
    options: PredictOptions | None = None,
    progress: bool = True,
) -> Path:
    """Super-resolve ``source`` slice batch by slice batch into ``out_path`` (atomic).

    Parameters
    ----------
    loaded
        From :func:`microsr.inference.checkpoint.load_checkpoint`; its device computes.
    source
        From :func:`microsr.inference.reader.open_slices`; ``(Z, Y, X)`` LR slices.
    out_path
        Output file or folder; format by extension (see :mod:`microsr.inference.writer`).

    Returns
    -------
    Path
        ``out_path``: a float32 ``(Z, Y f, X f)`` volume with spacing ``(z, y / f, x / f)``
        mm and the HR-grid origin, written only if every slice succeeded.
    """
    opts = options or PredictOptions()
    dtype = autocast_dtype(loaded.device, opts.precision) or torch.float32
    meta = {
        **source.metadata,
        "microsr_checkpoint": str(loaded.path),
        "microsr_precision": str(dtype).removeprefix("torch."),  # provenance: bf16 or fp32
    }
    target = template(*sr_geometry(source, loaded.factor), source.calibration, meta)
    writer = _BackgroundWriter(lambda b: write_slices(target, b, out_path), opts.prefetch)
    ok, t0 = False, time.perf_counter()
    try:
        for _, _, sr in predict_slices(loaded, source, options=opts, progress=progress):
            writer.put(sr)
        ok = True
    finally:
        writer.close(ok)
    dt = time.perf_counter() - t0
    z = source.shape[0]
    log.info("predicted %d slices in %.1f s (%.1f slices/s) -> %s", z, dt, z / dt, out_path)
    return Path(out_path)
