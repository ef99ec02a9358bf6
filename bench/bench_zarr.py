"""One big LR volume to an OME-Zarr store: plain ``predict`` against ``predict --dask`` workers.

The issue's case: a 512^3 uint16 LR volume (an OME-Zarr store) super-resolved onto the HR grid,
1024^3 float32 (4 GiB raw), written as an OME-Zarr store with its pyramid. Cases, each in its
own process: ``plain`` (:func:`microsr.inference.predict.predict_file`, one process streaming)
and ``dask:N`` (:func:`microsr.inference.distributed.predict_dask` on a ``LocalCluster`` of N
worker processes, one torch thread per CPU share). Reported per case: wall time (start-up
included: imports, model load, the cluster), CPU time of all its processes (user + system:
less sensitive than wall time to other jobs on a shared machine), output slices/s, the ratio of plain's wall time
to the case's (> 1: faster than plain, same run, same machine), the per-core throughput
against plain's (every case has the same cores: ``dask:N`` runs N workers of cores / N torch
threads; by wall time, and by CPU time per output slice, which a busy machine disturbs less;
issue 35's target: >= 0.85), the minor page faults of all its processes, peak RSS of the main process
and of the largest worker process (``RUSAGE_CHILDREN`` after the cluster closed; all workers
together stay below main + N x largest), and the bytes the store holds on disk (pyramid
included) against the raw float32 level 0. The output store of each case is deleted before
the next.

Sizes: the full size takes hours of CPU on a 2-core machine; ``--side 256 --z 256`` (a 512^3
output, 1/8 of the voxels) is a reduced run that still has 8 Dask blocks of 64 output slices,
so 2 workers have work to share; ``--side 32 --z 32`` is a smoke test.

Usage: python bench/bench_zarr.py [--side 512] [--z 512] [--workers 1,2] [--width 16]
           [--block-slices 64] [--device cpu|cuda] [--tmp DIR] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np
from _common import machine, peak_rss_mb, run_child, write_checkpoint

from microsr.io import write_slices
from microsr.io.sink import template
from microsr.models.factory import ModelConfig


def write_lr_zarr(path: Path, z: int, side: int, *, seed: int = 0) -> Path:
    """A random ``(z, side, side)`` uint16 LR volume in 0..1000 as OME-Zarr, slab by slab."""
    rng = np.random.default_rng(seed)
    target = template((z, side, side), (0.02,) * 3, (0.0,) * 3, dtype=np.uint16)
    slabs = (
        rng.integers(0, 1000, (min(32, z - s), side, side), dtype=np.uint16)
        for s in range(0, z, 32)
    )
    return write_slices(target, slabs, path)


def store_bytes(path: Path) -> int:
    """Bytes of every file under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def child(mode: str, ckpt: str, lr: str, out: str, device: str, block: str) -> None:
    t0 = time.perf_counter()
    if mode == "plain":
        from microsr.inference.predict import predict_file

        predict_file(ckpt, lr, out, device=device, progress=False)
    else:
        from microsr.inference.distributed import DaskConfig, predict_dask

        scheduler = mode.replace("dask", "local")
        config = DaskConfig(scheduler=scheduler, block_slices=int(block))
        predict_dask(ckpt, lr, out, config=config, device=device)
    wall = time.perf_counter() - t0
    me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime  # workers: after they exit
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak_rss_mb(),
                      "worker_peak_rss_mb": kids.ru_maxrss / 1024,
                      "minor_faults": me.ru_minflt + kids.ru_minflt}))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", type=int, default=512, help="LR side (y, x); output is 2x")
    ap.add_argument("--z", type=int, default=512, help="LR slices; output is 2x")
    ap.add_argument("--workers", default="1,2", help="Dask worker counts to run")
    ap.add_argument("--width", type=int, default=16, help="model width (the default model's)")
    ap.add_argument("--tmp", type=Path, default=None, help="scratch folder (needs ~2x output)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--device", default="cpu", help="cpu | cuda (every worker uses it)")
    ap.add_argument("--block-slices", type=int, default=64, help="Dask: output slices per task")
    ap.add_argument("--child", nargs=6)
    a = ap.parse_args()
    if a.child:
        child(*a.child)
        return
    print(f"machine: {machine()}, {os.cpu_count()} CPUs")
    print(f"LR {a.z} x {a.side} x {a.side} uint16 -> SR {2 * a.z} x {2 * a.side} x {2 * a.side}"
          " float32 OME-Zarr (HR grid)")  # fmt: skip
    results = []
    n_out = 2 * a.z
    raw = n_out * (2 * a.side) ** 2 * 4  # float32 level 0
    with tempfile.TemporaryDirectory(dir=a.tmp) as tmp:
        tmp = Path(tmp)
        config = ModelConfig(width=a.width, in_channels=3)  # the default 2.5D residual U-Net
        ckpt = write_checkpoint(tmp / "m.ckpt", config)
        lr = write_lr_zarr(tmp / "lr.zarr", a.z, a.side)
        for mode in ["plain", *(f"dask:{n}" for n in a.workers.split(","))]:
            out = tmp / "sr.zarr"
            args = (mode, str(ckpt), str(lr), str(out), a.device, str(a.block_slices))
            r = run_child(__file__, "--child", *args)
            r.update(case=mode, slices_per_s=n_out / r["wall_s"], bytes_written=store_bytes(out))
            r["raw_level0_bytes"] = raw
            plain = results[0] if results else r
            r["plain_wall_over_case_wall"] = plain["wall_s"] / r["wall_s"]
            r["per_core_vs_plain_cpu"] = plain["cpu_s"] / r["cpu_s"]  # CPU s per slice, inverted
            results.append(r)
            print(f"{mode:8s} {r['wall_s']:9.1f} s ({r['cpu_s']:7.1f} s CPU)  "
                  f"{r['slices_per_s']:7.2f} slices/s  "
                  f"per core x{r['plain_wall_over_case_wall']:5.2f} vs plain (wall), "
                  f"x{r['per_core_vs_plain_cpu']:5.2f} (CPU)  "
                  f"{r['minor_faults'] / 1e6:6.2f} M page faults  "
                  f"peak RSS {r['peak_rss_mb']:7.0f} MiB (largest worker "
                  f"{r['worker_peak_rss_mb']:6.0f} MiB)  {r['bytes_written'] / 2**20:9.1f} MiB "
                  f"written ({r['bytes_written'] / raw:.2f} of raw float32)", flush=True)  # fmt: skip
            shutil.rmtree(out)
    for r in results[1:]:  # issue 35: Dask should cost at most ~15 % per core
        print(f"{r['case']}: per-core throughput {r['plain_wall_over_case_wall']:.2f}x plain's "
              f"by wall time, {r['per_core_vs_plain_cpu']:.2f}x by CPU time (target >= 0.85)")  # fmt: skip
    if a.json:
        size = {"lr_zyx": [a.z, a.side, a.side], "sr_zyx": [n_out, 2 * a.side, 2 * a.side],
                "width": a.width, "block_slices": a.block_slices, "device": a.device}  # fmt: skip
        a.json.write_text(
            json.dumps({"machine": machine(), "size": size, "results": results}, indent=2)
        )


if __name__ == "__main__":
    main()
