"""Peak RSS of ``microsr predict`` for a 100- and a 1000-slice volume of the same slices.

Each case runs in its own process (peak RSS = ``ru_maxrss``). The streaming path
(:func:`microsr.inference.predict.predict_file`) is compared with the whole-volume path
(``read_volume`` -> ``predict_volume`` into RAM -> ``write_volume``), for TIFF and MetaImage
and NIfTI (``.nii.gz``) outputs; the output is on the HR grid (2 n slices). The model is small (width 8, depth 2): memory does not depend on it, time does.

Usage: python bench/bench_memory.py [--side 128] [--counts 100,1000] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import machine, peak_rss_mb, run_child, write_checkpoint, write_lr

from microsr.device import resolve_device
from microsr.inference.checkpoint import load_checkpoint
from microsr.inference.predict import predict_file, predict_volume
from microsr.io import read_volume, write_volume
from microsr.models.factory import ModelConfig


def child(mode: str, ckpt: str, lr: str, out: str, device: str) -> None:
    if mode == "stream":
        predict_file(ckpt, lr, out, device=device, progress=False)
    else:
        loaded = load_checkpoint(ckpt, device=resolve_device(device))
        sr = predict_volume(loaded, read_volume(lr), progress=False)
        write_volume(sr, out)
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", type=int, default=128, help="LR side; output is 2x")
    ap.add_argument("--counts", default="100,1000")
    ap.add_argument("--device", default="cpu", help="cpu | cuda (peak RSS is host memory)")
    ap.add_argument("--child", nargs=5)
    a = ap.parse_args()
    if a.child:
        child(*a.child)
        return
    print(f"machine: {machine()}, device {a.device}")
    print(f"slices: {a.side} x {a.side} LR -> {2 * a.side} x {2 * a.side} float32 SR")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = write_checkpoint(tmp / "m.ckpt", ModelConfig(width=8, depth=2))
        counts = [int(c) for c in a.counts.split(",")]
        for n in counts:
            lr = write_lr(tmp / f"lr{n}.tif", n, a.side)
            out_mb = 2 * n * (2 * a.side) ** 2 * 4 / 2**20  # the HR grid: 2 n slices
            cases = (
                ("stream", ".tif"),
                ("stream", ".mha"),
                ("stream", ".nii.gz"),
                ("whole", ".tif"),
            )
            for mode, ext in cases:
                out = tmp / f"sr{n}{ext}"
                r = run_child(__file__, "--child", mode, str(ckpt), str(lr), str(out), a.device)
                print(f"{n:5d} LR slices  {mode:6s} -> {ext:7s}  peak RSS {r['peak_rss_mb']:7.0f} MiB"
                      f"  (output {out_mb:.0f} MiB)")  # fmt: skip
                out.unlink()
            lr.unlink()


if __name__ == "__main__":
    main()
