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

Nothing partial is left behind. The command first checks the output (an existing store is
replaced only with ``overwrite``), loads the checkpoint, opens the input and connects to the
scheduler; only then does it create the store, and it fills a work store beside the target,
``OUT.zarr.partial``, renamed onto ``OUT.zarr`` once complete (:func:`microsr.io.atomic.atomic_path`:
an existing output is swapped only then). A failure microsr sees (an unreachable scheduler, a
block failing past its retries, an interrupt) removes the work store: no ``OUT.zarr``, no
``.partial``, the old output untouched. Other safety:

- a finished block leaves a marker ``.microsr-done/<start>-<stop>`` written after its voxels;
  a job killed outright (SIGKILL, SIGTERM, a SLURM time limit, a lost node) leaves its work
  store, and a rerun of the same command resumes it, skipping the marked blocks;
- the plan (input, checkpoint, options, block size) is stored in the work store's attributes;
  a rerun with another plan is refused (``--overwrite`` starts over);
- a lock file ``OUT.zarr.lock`` beside the store refuses a second job on the same store
  (a lock left by a dead process on this host is taken over);
- a task that fails (an exception, or its worker dying) is retried by Dask (``retries``);
- the pyramid and the OME ``multiscales`` are written last (:func:`~microsr.io.omezarr.finish_store`).

CPU cost per block equals plain ``predict``'s (issue 35): a Dask nanny starts its workers with
``MALLOC_TRIM_THRESHOLD_`` set, which switches off glibc's dynamic mmap threshold, so every
buffer over 128 KiB (each activation of the model) became a fresh ``mmap``, page-faulted in
and unmapped again. Measured (128 x 256 x 256 output, ``local:1``, CPU seconds of the
worker's two compute threads): 75.9 s and 2.35 M page faults before, 61.0 s and 0.13 M with
:func:`malloc_like_plain_python`, which :func:`predict_block` runs in its worker process
whatever started it (``LocalCluster``, ``dask-jobqueue``, ``dask worker``); plain ``predict``'s
two compute threads: about 60 s. ``local:N`` workers also run without Dask's 10 ms stack
sampler (:data:`NO_PROFILER`). What stays is a fixed cost per process (imports, the event
loop, the scheduler), small against a large volume.

Dask is the scheduler: ``"local:N"`` starts a ``LocalCluster`` of ``N`` worker processes of
one Dask thread and ``budget / N`` torch threads each; anything else is a scheduler address
(e.g. one started by ``dask-jobqueue`` on SLURM, ``bench/slurm_dask_example.py``), whose
workers predict one block at a time with as many torch threads as they have Dask threads.
"""

from __future__ import annotations

import ctypes
import functools
import json
import logging
import os
import platform
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
from microsr.io.atomic import atomic_path
from microsr.io.omezarr import (
    CHUNKS,
    PLAN_KEY,
    check_replaceable,
    chunk_slabs,
    create_store,
    finish_store,
    is_zarr_path,
)
from microsr.io.store_lock import store_lock
from microsr.runtime import cpu_budget

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
    connect_timeout_s: float = Field(
        30.0, gt=0, description="how long to try to reach a scheduler address"
    )


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
        ``*.zarr``: the SR volume (float32, HR units, the grid of ``predict``). It appears
        whole or not at all; the work store beside it is :func:`work_path`.
    config
        Scheduler, block size, retries, connect timeout.
    overwrite
        Replace an existing ``out_path`` (only once the new one is complete) and start an
        unfinished work store over instead of resuming it.
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
        by another job, an unfinished work store of another plan, an unreachable scheduler,
        or a block failing past its retries; nothing is left behind but an unfinished work
        store of another plan, which is not this run's to delete.
    """
    cfg = config or DaskConfig()
    out = Path(out_path)
    if not is_zarr_path(out):
        raise InputFileError(out, "predict --dask writes an OME-Zarr store: name it *.zarr")
    if cfg.block_slices % CHUNKS[0]:
        raise MicrosrError(f"--block-slices must be a multiple of {CHUNKS[0]} (the z chunk)")
    check_volume_output(out, inputs=[lr_path, checkpoint], overwrite=overwrite)
    work = work_path(out)
    check_replaceable(work)
    opts = options or PredictOptions()
    with store_lock(out):
        loaded = load_checkpoint(checkpoint, device=_device(device))
        source = open_slices(lr_path, spacing_mm=spacing_mm)
        target = output_target(loaded, source, opts)
        job = BlockJob(
            checkpoint=str(Path(checkpoint).resolve()), lr_path=str(Path(lr_path).resolve()),
            out_path=str(work.resolve()), spacing_mm=source.spacing_mm, device=device,
            options=opts, threads=_local_threads(cfg.scheduler) if client is None else None,
        )  # fmt: skip
        created = False
        try:
            with (
                _client(cfg.scheduler, cfg.connect_timeout_s)
                if client is None
                else nullcontext(client) as c
            ):
                group = _prepare_store(work, target, job, cfg, overwrite=overwrite)
                created = True
                blocks = _blocks(target.shape[0], cfg.block_slices)
                todo = [b for b in blocks if not _done_marker(work, b).exists()]
                log.info("%s: %d of %d blocks to predict", out, len(todo), len(blocks))
                _run_blocks(c, job, todo, cfg.retries)
            finish_store(group, target)
            del group.attrs[PLAN_KEY]
            shutil.rmtree(work / DONE_DIR)
            with atomic_path(out, directory=True, replace_folder=True) as tmp:
                os.replace(work, tmp)  # tmp: an empty folder, renamed onto out on exit
        except BaseException:
            if created:  # after the client closed: a local cluster's workers are gone
                _discard(work)
            raise
    log.info("wrote %s: shape %s in %d blocks", out, target.shape, len(blocks))
    return out


def _discard(work: Path) -> None:
    """Remove the work store of a failed run."""
    shutil.rmtree(work, ignore_errors=True)
    log.info("%s: removed (the prediction failed)", work)


def work_path(out: str | Path) -> Path:
    """The work store that :func:`predict_dask` fills before renaming it onto ``out``:
    ``OUT.zarr.partial`` (kept only by a job killed outright, for a rerun to resume)."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


def _device(device: str):
    from microsr.device import resolve_device

    return resolve_device(device)


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def _done_marker(out: Path, block: tuple[int, int]) -> Path:
    return out / DONE_DIR / f"{block[0]:08d}-{block[1]:08d}"


def _prepare_store(work: Path, target, job: BlockJob, cfg: DaskConfig, *, overwrite: bool):
    """Create the work store, or reopen the unfinished one a killed job left if its plan is
    this one (``overwrite``: always start over)."""
    import zarr

    plan = {"job": json.loads(job.model_dump_json(exclude={"threads", "device"})),
            "block_slices": cfg.block_slices, "shape": list(target.shape)}  # fmt: skip
    if work.is_dir() and (work / DONE_DIR).is_dir() and not overwrite:
        group = zarr.open_group(str(work), mode="r+")
        if dict(group.attrs).get(PLAN_KEY) != plan:
            raise InputFileError(
                work, "holds an unfinished prediction of another input, checkpoint, options "
                "or block size; use --overwrite to start over (or delete it)",
            )  # fmt: skip
        log.info("%s: resuming the unfinished prediction of a killed job", work)
        return group
    if work.exists():
        shutil.rmtree(work)
    group = create_store(work, target)
    group.attrs[PLAN_KEY] = plan
    (work / DONE_DIR).mkdir()
    return group


def _local_threads(scheduler: str) -> int | None:
    """Torch threads of each ``local:N`` worker: this process's CPU budget (affinity, cgroup
    quota: :func:`~microsr.runtime.cpu_budget`) shared by the N workers."""
    if not scheduler.startswith("local:"):
        return None
    return max(1, cpu_budget() // _local_workers(scheduler))


def _local_workers(scheduler: str) -> int:
    try:
        n = int(scheduler.removeprefix("local:"))
    except ValueError:
        n = 0
    if n < 1:
        raise MicrosrError(f"--dask {scheduler!r}: use local:N (N >= 1 workers) or an address")
    return n


#: Dask's statistical profiler walks each busy worker thread's stack every 10 ms: measured
#: 1.5 s of a worker's CPU per 40 s of a task (~4 % of a core, issue 35). ``local:N`` clusters
#: run without it; on other clusters set ``DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False``
#: where the workers start (``bench/slurm_dask_example.py``).
NO_PROFILER = {"distributed.worker.profile.enabled": False}


def _client(scheduler: str, timeout_s: float = 30.0):
    """A ``distributed.Client`` (a context manager) for ``"local:N"`` or an address.

    Raises
    ------
    MicrosrError
        No scheduler answers at the address within ``timeout_s``.
    """
    import dask
    from distributed import Client, LocalCluster

    if scheduler.startswith("local:"):
        n = _local_workers(scheduler)
        with dask.config.set(NO_PROFILER):  # the nannies pass it on to their workers
            cluster = LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None
            )
        return _ClusterClient(cluster, Client(cluster))
    try:
        return Client(scheduler, timeout=f"{timeout_s}s")
    except OSError as exc:
        raise MicrosrError(
            f"--dask {scheduler!r}: cannot reach the scheduler ({exc}); nothing was written"
        ) from exc


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
            f"{len(failed)} block(s) failed after {retries} retries ({first}); nothing was written"
        ) from first


#: One block at a time per worker process: a worker with several threads (or several
#: in-process workers) shares the cached model and torch's process-wide state, and two
#: blocks predicted at once in one process were seen to fail (bf16 input, fp32 bias).
_BLOCK_LOCK = threading.Lock()


@functools.lru_cache(maxsize=2)
def _model(checkpoint: str, device: str) -> LoadedModel:
    """The checkpoint, loaded once per worker process."""
    return load_checkpoint(checkpoint, device=_device(device))


#: glibc's ceiling for its dynamic mmap threshold on 64-bit (``DEFAULT_MMAP_THRESHOLD_MAX``):
#: where a plain Python process's threshold ends up once it has freed large buffers.
MMAP_THRESHOLD = 32 * 2**20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, glibc <malloc.h>


@functools.cache
def malloc_like_plain_python() -> bool:
    """Give this worker process the malloc behaviour of a plain Python process (glibc only).

    A Dask nanny starts each worker with ``MALLOC_TRIM_THRESHOLD_=65536``
    (``distributed.nanny.pre-spawn-environ``). Setting any malloc tunable switches off glibc's
    dynamic mmap threshold, which otherwise rises to the size of freed buffers: every buffer
    over 128 KiB (each activation of the model, each slice) then is a fresh ``mmap`` whose pages
    are faulted in, zeroed and unmapped again. Measured on one 128 x 256 x 256 output
    (issue 35): 2.37 M minor page faults against plain ``predict``'s 0.19 M. This sets the
    mmap threshold to the dynamic ceiling and the trim threshold to twice it (glibc's own
    rule), the state a plain process reaches. Done once per process; nothing is done when
    no such variable is set or the C library is not glibc.

    Returns
    -------
    bool
        Whether the thresholds were set.
    """
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False  # dynamic threshold on, or the user chose one: leave it
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD)
    )
    log.debug("worker %d: glibc mmap threshold %d bytes (set: %s)", os.getpid(), MMAP_THRESHOLD, ok)
    return ok


def _worker_threads() -> int | None:
    """Torch threads for a worker with several Dask threads: all of them (its blocks run one
    at a time, :data:`_BLOCK_LOCK`; a nanny starts workers with ``OMP_NUM_THREADS=1``).
    ``None`` (leave torch as it is) for a one-thread worker or outside a worker."""
    from distributed import get_worker

    try:
        n = get_worker().state.nthreads
    except ValueError:  # not in a worker
        return None
    return n if n > 1 else None


def predict_block(job: BlockJob, start: int, stop: int) -> tuple[int, int]:
    """Worker task: predict output slices ``start .. stop - 1`` into the store, then mark
    them (one block at a time per process: :data:`_BLOCK_LOCK`)."""
    malloc_like_plain_python()
    with _BLOCK_LOCK:
        threads = job.threads or _worker_threads()
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        loaded = _model(job.checkpoint, job.device)
        source = open_slices(job.lr_path, spacing_mm=job.spacing_mm)
        slices = predict_slices(
            loaded, source, options=job.options, progress=False, zrange=(start, stop)
        )
        try:
            _write_block(Path(job.out_path), start, (sr for _, _, sr in slices))
        finally:
            # a block that dies mid-way must not leave predict_slices suspended inside
            # torch.inference_mode (thread-local state): closed here, in this thread, the
            # next task on the thread starts clean (seen: the next block's model copy failed
            # with "requires_grad ... on inference tensor")
            slices.close()
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
        if not (out / DONE_DIR).is_dir():  # the job failed and removed its work store
            raise MicrosrError(f"{out}: the prediction was abandoned; block not written")
        array[z : z + len(slab)] = slab
        z += len(slab)
