"""Compute floor: the model's FLOPs per slice / the machine's measured conv throughput.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add = 2 FLOPs)
on one 2 SIDE x 2 SIDE slice. Throughput is measured on the model's own most expensive
convolution shape (16 -> 16 channels, 3 x 3, full resolution, batch 8) and on a square
fp32 matmul; the floor is the slice time if every FLOP ran at the conv rate.

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

from microsr.models.factory import ModelConfig, build_model


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
    model = build_model(ModelConfig(width=a.width)).eval().to(dev)
    x = torch.rand(1, 1, hw, hw, device=dev)
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        model(x)
    flops = fc.get_total_flops()
    conv = torch.nn.Conv2d(a.width, a.width, 3, padding=1, bias=False).to(dev).eval()
    xc = torch.rand(8, a.width, hw, hw, device=dev)
    conv_flops = 2 * 8 * a.width * a.width * 9 * hw * hw
    n = 2048
    A, B = torch.rand(n, n, device=dev), torch.rand(n, n, device=dev)
    with torch.inference_mode():
        conv_rate = rate(lambda: conv(xc), conv_flops)
        mm_rate = rate(lambda: A @ B, 2 * n**3)
    print(f"machine: {machine()}")
    print(f"model: U-Net width {a.width} depth 3, one {hw} x {hw} slice: {flops / 1e9:.2f} GFLOP")
    print(
        f"measured: conv3x3 {conv_rate / 1e9:.1f} GFLOP/s, matmul {n}^3 fp32 {mm_rate / 1e9:.1f} GFLOP/s"
    )
    print(
        f"floor at the conv rate: {conv_rate / flops:.2f} slices/s; at the matmul rate: {mm_rate / flops:.2f} slices/s"
    )


if __name__ == "__main__":
    main()
