"""Two predictions on one machine: is the total throughput kept (target >= 0.9x of one alone)?

Runs ``microsr predict`` (the default model, a random checkpoint) on an LR volume of Z
slices of SIDE x SIDE: once alone with the whole CPU budget (``--threads B``), then two
processes at once on two copies of the volume, each with ``--threads B/2`` (``half``) or
each left to choose (``auto``: both take the whole budget, so they oversubscribe unless
the machine limits them). Throughput is output slices per second of wall time, from the
start of the first process to the end of the last (process start-up included: use enough
slices that it is small); the engine's own rate (from each process's log) is shown beside.

Usage: python bench/bench_concurrent.py [--slices 200] [--side 256] [--device cpu]
       [--modes half,auto] [--budget B]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import machine, write_lr

from microsr.checkpoint import new_meta, save_checkpoint
from microsr.data.normalize import NormalizationConfig
from microsr.models.factory import build_model
from microsr.runtime import cpu_budget
from microsr.training.config import DEFAULT_MODEL

RATE = re.compile(r"(\d+) slices in [\d.]+ s \(([\d.]+) slices/s\)")


def _start(ckpt: Path, lr: Path, out: Path, threads: int, device: str) -> subprocess.Popen:
    args = ["predict", str(ckpt), str(lr), str(out), "--overwrite", "--device", device]
    env = {**os.environ, "MICROSR_PROGRESS": "off"}
    return subprocess.Popen(
        [sys.executable, "-m", "microsr", *args, "--threads", str(threads)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def _run(ckpt, lrs, tmp, threads, device) -> dict:
    """Start one process per LR volume at once; wall time and per-process engine rates."""
    t0 = time.perf_counter()
    procs = [_start(ckpt, lr, tmp / f"sr{i}.mha", threads, device) for i, lr in enumerate(lrs)]
    errs = [p.communicate()[1] for p in procs]
    wall = time.perf_counter() - t0
    for p, err in zip(procs, errs):
        if p.returncode:
            raise SystemExit(f"predict failed:\n{err}")
    found = [RATE.search(err) for err in errs]
    slices = sum(int(m.group(1)) for m in found if m)
    return {
        "processes": len(lrs),
        "threads_each": threads,
        "wall_s": round(wall, 2),
        "slices_per_s": round(slices / wall, 2),
        "engine_slices_per_s": [float(m.group(2)) for m in found if m],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=200, help="LR slices per volume")
    parser.add_argument("--side", type=int, default=256, help="LR slice side, px")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--modes", default="half,auto", help="half and/or auto")
    parser.add_argument("--budget", type=int, default=0, help="CPUs (default: cpu_budget())")
    a = parser.parse_args()
    budget = a.budget or cpu_budget()
    print(f"# {machine()}; CPU budget {budget}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        norm = NormalizationConfig(mode="window", low=0.0, high=1000.0)
        ckpt = save_checkpoint(
            tmp / "m.ckpt", build_model(DEFAULT_MODEL), new_meta(DEFAULT_MODEL, factor=2,
                                                                 normalization=norm)
        )  # fmt: skip
        lrs = [write_lr(tmp / f"lr{i}.mha", a.slices, a.side, seed=i) for i in range(2)]
        rows = {"alone": _run(ckpt, lrs[:1], tmp, budget, a.device)}
        for mode in a.modes.split(","):
            threads = max(1, budget // 2) if mode == "half" else 0
            rows[f"two_{mode}"] = _run(ckpt, lrs, tmp, threads, a.device)
    base = rows["alone"]["slices_per_s"]
    for name, row in rows.items():
        row["throughput_ratio"] = round(row["slices_per_s"] / base, 3) if base else None
        print(f"{name:<10} {json.dumps(row)}", file=sys.stderr)
    verdict = {k: v["throughput_ratio"] for k, v in rows.items() if k != "alone"}
    print(json.dumps({"budget": budget, "target": 0.9, "ratios": verdict, "rows": rows}))


if __name__ == "__main__":
    main()
