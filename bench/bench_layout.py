"""Model-only prediction speed by memory layout, precision and batch size (one process).

Times ``model(x)`` in inference mode with BatchNorm folded (as ``microsr predict`` runs
it) on random 400 x 400 inputs, for the default 2.5D residual U-Net and the paper's
single-slice U-Net: contiguous vs channels-last, fp32 vs bf16 autocast, batch 1 and 4.
This is what chose ``PredictOptions``' defaults (channels-last; bf16 on CPUs with bf16
instructions; batch 1 on CPU). The row "as loaded" is the naive loop's model (no folding).

Usage: python bench/bench_layout.py [--side 400] [--device cpu] [--repeats 6]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch
from _common import machine

from microsr.inference.runner import cpu_has_native_bf16, fold_batchnorm
from microsr.models.factory import build_model
from microsr.training.config import DEFAULT_MODEL, PAPER_MODEL


def rate(model, x, dtype, repeats: int) -> float:
    """Slices per second of ``model(x)`` under autocast ``dtype`` (None: fp32)."""

    def run():
        with torch.autocast(x.device.type, dtype=dtype or torch.float32, enabled=bool(dtype)):
            model(x)
        if x.device.type == "cuda":
            torch.cuda.synchronize()

    with torch.inference_mode():
        run(), run()  # warm-up: oneDNN/cuDNN pick their kernels
        t = time.perf_counter()
        for _ in range(repeats):
            run()
        return repeats * x.shape[0] / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", type=int, default=400)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=6)
    a = ap.parse_args()
    dev = torch.device(a.device)
    print(f"machine: {machine()}; CPU bf16 instructions: {cpu_has_native_bf16()}")
    print(f"{'model':8s} {'batch':>5s} {'variant':28s} {'slices/s':>9s}")
    for name, config in (("default", DEFAULT_MODEL), ("paper", PAPER_MODEL)):
        torch.manual_seed(0)
        loaded = build_model(config).eval().to(dev)
        folded = fold_batchnorm(loaded)
        folded_cl = copy.deepcopy(folded).to(memory_format=torch.channels_last)
        for batch in (1, 4):
            x = torch.rand(batch, config.in_channels, a.side, a.side, device=dev)
            xcl = x.contiguous(memory_format=torch.channels_last)
            cases = [
                ("as loaded, fp32", loaded, x, None),
                ("folded, fp32", folded, x, None),
                ("folded, bf16", folded, x, torch.bfloat16),
                ("folded, channels-last, fp32", folded_cl, xcl, None),
                ("folded, channels-last, bf16", folded_cl, xcl, torch.bfloat16),
            ]
            for label, model, inp, dtype in cases:
                r = rate(model, inp, dtype, max(2, a.repeats // batch))
                print(f"{name:8s} {batch:5d} {label:28s} {r:9.2f}", flush=True)


if __name__ == "__main__":
    main()
