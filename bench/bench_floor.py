"""Compute floor: the model's FLOPs per slice / the machine's measured throughput.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add = 2 FLOPs)
on one 2 SIDE x 2 SIDE slice of the default model (2.5D residual U-Net). Throughput is
measured, in fp32 and in bf16, on the model's own most expensive convolution shape
(16 -> 16 channels, 3 x 3, full resolution, batch 1, channels-last, as ``predict`` runs
it) and on a square matmul; a floor is the slice rate if every FLOP ran at that rate.
bf16 rates are meaningful only where the hardware has bf16 (CUDA, AVX512-BF16, AMX).

Usage: python bench/bench_floor.py [--side 200] [--device cpu] [--width 16]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch
from _common import machine
from torch.utils.flop_counter import FlopCounterMode

from microsr.models.factory import build_model
from microsr.training.config import DEFAULT_MODEL


def rate(fn, flops: float, seconds: float = 3.0) -> float:
    """FLOP/s of ``fn`` (which performs ``flops``), best of repeated calls."""
    fn()
    best = float("inf")
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return flops / best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", type=int, default=200)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    dev = torch.device(a.device)
    hw = 2 * a.side
    model = build_model(DEFAULT_MODEL.model_copy(update={"width": a.width})).eval().to(dev)
    x = torch.rand(1, DEFAULT_MODEL.in_channels, hw, hw, device=dev)
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        model(x)
    flops = fc.get_total_flops()
    conv = torch.nn.Conv2d(a.width, a.width, 3, padding=1, bias=False).to(dev).eval()
    conv = conv.to(memory_format=torch.channels_last)
    xc = torch.rand(1, a.width, hw, hw, device=dev).contiguous(memory_format=torch.channels_last)
    conv_flops = 2 * a.width * a.width * 9 * hw * hw
    n = 2048
    A, B = torch.rand(n, n, device=dev), torch.rand(n, n, device=dev)
    print(f"machine: {machine()}")
    print(
        f"model: default (2.5D residual U-Net) width {a.width} depth 3, one {hw} x {hw} slice: "
        f"{flops / 1e9:.2f} GFLOP"
    )
    for dtype in (None, torch.bfloat16):
        name = "bf16" if dtype else "fp32"
        with torch.inference_mode(), torch.autocast(dev.type, dtype=dtype, enabled=bool(dtype)):
            conv_rate = rate(lambda: conv(xc), conv_flops)
            mm_rate = rate(lambda: A @ B, 2 * n**3)
        print(
            f"{name}: conv3x3 {conv_rate / 1e9:.1f} GFLOP/s, matmul {n}^3 {mm_rate / 1e9:.1f} "
            f"GFLOP/s; floor {conv_rate / flops:.2f} slices/s at the conv rate, "
            f"{mm_rate / flops:.2f} at the matmul rate"
        )


if __name__ == "__main__":
    main()
