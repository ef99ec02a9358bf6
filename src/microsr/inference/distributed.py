"""One LR volume predicted across Dask workers into one OME-Zarr store (``predict --dask``).

The SR volume's slices are split into blocks of ``block_slices`` output slices (a multiple of
the store's z chunk, so no two blocks write the same chunk). Each block is one Dask task: the
worker opens the LR volume, reads only the LR slices the block's output slices need (their
``t`` and the 2.5D context slices around it: the halo, overlapping the neighbours' reads;
:func:`microsr.inference.engine.predict_slices` with ``zrange``), predicts them exactly as a
single-process ``predict`` does, and writes them into level ``0`` of the store. Each output
slice depends only on the LR slices around its own ``t``, so the assembled volume equals a
single-process prediction (the test checks it bit for bit, block edges included, on one
machine; another CPU or thread count can change float rounding).

Resume and safety (the store is filled in place, not in a temporary folder):

- a finished block leaves a marker ``.microsr-done/<start>-<stop>`` written after its voxels;
  a rerun of the same command skips marked blocks, so a killed job resumes;
- the plan (input, checkpoint, options, block size) is stored in the group attributes; a
  rerun with another plan is refused (``--overwrite`` starts over);
- a lock file ``OUT.zarr.lock`` beside the store refuses a second job on the same store
  (a lock left by a dead process on this host is taken over);
- a task that fails (an exception, or its worker dying) is retried by Dask (``retries``);
- the pyramid and the OME ``multiscales`` are written last (:func:`~microsr.io.omezarr.finish_store`),
  so readers refuse an unfinished store.

Dask is the scheduler: ``"local:N"`` starts a ``LocalCluster`` of ``N`` worker processes,
anything else is a scheduler address (e.g. one started by ``dask-jobqueue`` on SLURM).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import threading
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from microsr.errors import InputFileError, MicrosrError
from microsr.inference.checkpoint import LoadedModel, load_checkpoint
from microsr.inference.engine import output_target, predict_slices
from microsr.inference.runner import PredictOptions
from microsr.io import check_volume_output, open_slices
from microsr.io.omezarr import (
    CHUNKS,
    PLAN_KEY,
    chunk_slabs,
    create_store,
    finish_store,
    is_zarr_path,
)
from microsr.io.store_lock import store_lock

log = logging.getLogger(__name__)

DONE_DIR = ".microsr-done"


class BlockJob(BaseModel):
    """What every block task needs (sent to the workers; paths must be visible to them)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    checkpoint: str
    lr_path: str
    out_path: str
    spacing_mm: tuple[float, float, float] | None = None
    device: str = "cpu"
    options: PredictOptions = PredictOptions()
    threads: int | None = Field(None, ge=1, description="torch threads per worker; None: as is")


class DaskConfig(BaseModel):
    """How the volume is split and scheduled (:func:`predict_dask`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scheduler: str = Field("local:2", description='"local:N" or a scheduler address')
    block_slices: int = Field(64, ge=1, description="output slices per task (x z chunk)")
    retries: int = Field(2, ge=0, description="Dask retries of a failed block")


def predict_dask(
    checkpoint: str | Path,
    lr_path: str | Path,
    out_path: str | Path,
    *,
    config: DaskConfig | None = None,
    spacing_mm: Sequence[float] | None = None,
    device: str = "cpu",
    options: PredictOptions | None = None,
    overwrite: bool = False,
    client=None,
) -> Path:
    """Predict one LR volume on Dask workers into the OME-Zarr store ``out_path``.

    Parameters
    ----------
    checkpoint, lr_path
        As :func:`microsr.inference.predict.predict_file`; the workers read them.
    out_path
        ``*.zarr``: the SR volume (float32, HR units, the grid of ``predict``).
    config
        Scheduler, block size, retries.
    client
        An existing ``distributed.Client`` (then ``config.scheduler`` is not used).

    Returns
    -------
    Path
        ``out_path``, complete (pyramid and OME metadata written).

    Raises
    ------
    MicrosrError
        Output not ``.zarr``, a block size that is no multiple of the z chunk, a store locked
        by another job, an unfinished store of another plan, or a block failing past its
        retries.
    """
    cfg = config or DaskConfig()
    out = Path(out_path)
    if not is_zarr_path(out):
        raise InputFileError(out, "predict --dask writes an OME-Zarr store: name it *.zarr")
    if cfg.block_slices % CHUNKS[0]:
        raise MicrosrError(f"--block-slices must be a multiple of {CHUNKS[0]} (the z chunk)")
    resumable = out.is_dir() and (out / DONE_DIR).is_dir()
    check_volume_output(out, inputs=[lr_path, checkpoint], overwrite=overwrite or resumable)
    opts = options or PredictOptions()
    with store_lock(out):
        loaded = load_checkpoint(checkpoint, device=_device(device))
        source = open_slices(lr_path, spacing_mm=spacing_mm)
        target = output_target(loaded, source, opts)
        job = BlockJob(
            checkpoint=str(Path(checkpoint).resolve()), lr_path=str(Path(lr_path).resolve()),
            out_path=str(out.resolve()), spacing_mm=source.spacing_mm, device=device,
            options=opts, threads=_local_threads(cfg.scheduler) if client is None else None,
        )  # fmt: skip
        group = _prepare_store(out, target, job, cfg, fresh=overwrite or not resumable)
        blocks = _blocks(target.shape[0], cfg.block_slices)
        todo = [b for b in blocks if not _done_marker(out, b).exists()]
        log.info("%s: %d of %d blocks to predict", out, len(todo), len(blocks))
        with _client(cfg.scheduler) if client is None else nullcontext(client) as c:
            _run_blocks(c, job, todo, cfg.retries)
        finish_store(group, target)
        del group.attrs[PLAN_KEY]
        shutil.rmtree(out / DONE_DIR, ignore_errors=True)
    log.info("wrote %s: shape %s in %d blocks", out, target.shape, len(blocks))
    return out


def _device(device: str):
    from microsr.device import resolve_device

    return resolve_device(device)


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def _done_marker(out: Path, block: tuple[int, int]) -> Path:
    return out / DONE_DIR / f"{block[0]:08d}-{block[1]:08d}"


def _prepare_store(out: Path, target, job: BlockJob, cfg: DaskConfig, *, fresh: bool):
    """Create the store (``fresh``) or check that the unfinished one has the same plan."""
    import zarr

    plan = {"job": json.loads(job.model_dump_json(exclude={"threads", "device"})),
            "block_slices": cfg.block_slices, "shape": list(target.shape)}  # fmt: skip
    if fresh:
        if out.exists():
            shutil.rmtree(out)
        group = create_store(out, target)
        group.attrs[PLAN_KEY] = plan
        (out / DONE_DIR).mkdir()
        return group
    group = zarr.open_group(str(out), mode="r+")
    if dict(group.attrs).get(PLAN_KEY) != plan:
        raise InputFileError(
            out, "holds an unfinished prediction of another input, checkpoint, options or "
            "block size; use --overwrite to start over",
        )  # fmt: skip
    log.info("%s: resuming an unfinished prediction", out)
    return group


def _local_threads(scheduler: str) -> int | None:
    if not scheduler.startswith("local:"):
        return None
    return max(1, (os.cpu_count() or 1) // _local_workers(scheduler))


def _local_workers(scheduler: str) -> int:
    try:
        n = int(scheduler.removeprefix("local:"))
    except ValueError:
        n = 0
    if n < 1:
        raise MicrosrError(f"--dask {scheduler!r}: use local:N (N >= 1 workers) or an address")
    return n


def _client(scheduler: str):
    """A ``distributed.Client`` (a context manager) for ``"local:N"`` or an address."""
    from distributed import Client, LocalCluster

    if scheduler.startswith("local:"):
        n = _local_workers(scheduler)
        cluster = LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None
        )
        return _ClusterClient(cluster, Client(cluster))
    try:
        return Client(scheduler, timeout="30s")
    except OSError as exc:
        raise MicrosrError(f"--dask {scheduler!r}: cannot reach the scheduler ({exc})") from exc


class _ClusterClient:
    """A client that closes its own ``LocalCluster`` on exit."""

    def __init__(self, cluster, client):
        self.cluster, self.client = cluster, client

    def __enter__(self):
        return self.client

    def __exit__(self, *exc):
        self.client.close()
        self.cluster.close()


def _run_blocks(client, job: BlockJob, todo: list[tuple[int, int]], retries: int) -> None:
    from distributed import as_completed

    futures = [
        client.submit(predict_block, job, s, e, retries=retries, pure=False, key=f"sr-{s}-{e}")
        for s, e in todo
    ]
    failed: list[BaseException] = []
    for future in as_completed(futures):  # a failure lets the other blocks finish (kept)
        if future.status == "error":
            failed.append(future.exception())
            continue
        s, e = future.result()
        log.info("%s: block %d..%d done", job.out_path, s, e - 1)
    if failed:
        first = failed[0]
        if isinstance(first, MicrosrError):
            raise first
        raise MicrosrError(
            f"{job.out_path}: {len(failed)} block(s) failed after {retries} retries ({first}); "
            "finished blocks are kept: rerun the same command to resume"
        ) from first


#: One block at a time per worker process: a worker with several threads (or several
#: in-process workers) shares the cached model and torch's process-wide state, and two
#: blocks predicted at once in one process were seen to fail (bf16 input, fp32 bias).
_BLOCK_LOCK = threading.Lock()


@functools.lru_cache(maxsize=2)
def _model(checkpoint: str, device: str) -> LoadedModel:
    """The checkpoint, loaded once per worker process."""
    return load_checkpoint(checkpoint, device=_device(device))


def predict_block(job: BlockJob, start: int, stop: int) -> tuple[int, int]:
    """Worker task: predict output slices ``start .. stop - 1`` into the store, then mark
    them (one block at a time per process: :data:`_BLOCK_LOCK`)."""
    with _BLOCK_LOCK:
        if job.threads is not None:
            import torch

            torch.set_num_threads(job.threads)
        loaded = _model(job.checkpoint, job.device)
        source = open_slices(job.lr_path, spacing_mm=job.spacing_mm)
        srs = (sr for _, _, sr in predict_slices(
            loaded, source, options=job.options, progress=False, zrange=(start, stop)
        ))  # fmt: skip
        _write_block(Path(job.out_path), start, srs)
    marker = _done_marker(Path(job.out_path), (start, stop))
    tmp = marker.with_name(marker.name + f".tmp{os.getpid()}")
    tmp.write_text("done\n")
    os.replace(tmp, marker)  # the marker appears whole, after the voxels
    return start, stop


def _write_block(out: Path, start: int, srs) -> None:
    """Write consecutive SR slices from ``start`` into level 0, one chunk slab at a time."""
    import zarr

    array = zarr.open_array(str(out / "0"), mode="r+")
    z = start
    for slab in chunk_slabs(srs, array.chunks[0]):
        array[z : z + len(slab)] = slab
        z += len(slab)
