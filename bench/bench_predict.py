"""Prediction speed and peak RSS: microsr's streaming predict vs a naive loop vs MONAI.

All three use the same checkpoint (the default U-Net, width 16, depth 3) on the same LR
volume (Z slices of SIDE x SIDE, upsampled x2 to the model's 2 SIDE x 2 SIDE), each in
its own process so that peak RSS is per method. ``naive``: batch 1, fp32, the model as
loaded (no BatchNorm folding), read whole / predict / write whole, no overlap.
``monai``: ``monai.inferers.sliding_window_inference`` over the whole upsampled volume with
one window per slice (roi = the slice), ``sw_batch_size`` = our batch size.

Usage: python bench/bench_predict.py [--slices 24] [--side 200] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np
import torch
from _common import machine, peak_rss_mb, run_child, write_checkpoint, write_lr

from microsr.data.normalize import NormalizationConfig, normalize, slice_ranges
from microsr.data.upsample import upsample_bilinear
from microsr.inference.checkpoint import load_checkpoint
from microsr.inference.engine import PredictOptions
from microsr.inference.predict import predict_file
from microsr.io import read_volume, write_volume
from microsr.models.factory import ModelConfig
from microsr.training.device import resolve_device


def _naive(ckpt, lr_path, out, device):
    loaded = load_checkpoint(ckpt, device=resolve_device(device))
    lr = read_volume(lr_path)
    norm = NormalizationConfig()
    res = np.empty((lr.shape[0], lr.shape[1] * 2, lr.shape[2] * 2), np.float32)
    with torch.no_grad():
        for i in range(lr.shape[0]):
            up = upsample_bilinear(lr.array[i : i + 1].astype(np.float32), factor=2)
            off, scale = slice_ranges(up, norm)
            x = torch.from_numpy(normalize(up, norm))[:, None].to(loaded.device)
            p = torch.sigmoid(loaded.model(x)).cpu().numpy()[0, 0]
            res[i] = p * scale[0] + off[0]
    sr = lr.with_array(
        res, spacing_mm=(lr.spacing_mm[0], lr.spacing_mm[1] / 2, lr.spacing_mm[2] / 2)
    )
    write_volume(sr, out)


def _monai(ckpt, lr_path, out, device, batch):
    from monai.inferers import sliding_window_inference

    loaded = load_checkpoint(ckpt, device=resolve_device(device))
    lr = read_volume(lr_path)
    norm = NormalizationConfig()
    up = upsample_bilinear(np.asarray(lr.array, np.float32), factor=2)
    off, scale = slice_ranges(up, norm)
    x = torch.from_numpy(normalize(up, norm))[:, None]
    with torch.no_grad():
        p = sliding_window_inference(
            x, roi_size=x.shape[-2:], sw_batch_size=batch,
            predictor=lambda t: torch.sigmoid(loaded.model(t)), sw_device=loaded.device,
            device="cpu",
        )  # fmt: skip
    res = p[:, 0].numpy() * scale[:, None, None] + off[:, None, None]
    sr = lr.with_array(res.astype(np.float32), spacing_mm=(lr.spacing_mm[0], 0.01, 0.01))
    write_volume(sr, out)


def child(method, ckpt, lr_path, out, device, batch):
    t = time.perf_counter()
    if method == "microsr":
        opts = PredictOptions(batch_size=batch)
        predict_file(ckpt, lr_path, out, device=device, options=opts, progress=False)
    elif method == "naive":
        _naive(ckpt, lr_path, out, device)
    else:
        _monai(ckpt, lr_path, out, device, batch)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    z = read_volume(lr_path).shape[0]
    print(
        json.dumps(
            {"method": method, "s": dt, "slices_per_s": z / dt, "peak_rss_mb": peak_rss_mb()}
        )
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--slices", type=int, default=24)
    ap.add_argument("--side", type=int, default=200, help="LR side; the model sees 2x")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--methods", default="naive,monai,microsr")
    ap.add_argument("--child", nargs=3)
    a = ap.parse_args()
    if a.child:
        m, ckpt, lr = a.child
        child(m, ckpt, lr, Path(lr).parent / f"out_{m}.tif", a.device, a.batch)
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = write_checkpoint(tmp / "m.ckpt", ModelConfig())
        lr = write_lr(tmp / "lr.tif", a.slices, a.side)
        print(f"machine: {machine()}")
        print(
            f"volume: {a.slices} x {a.side} x {a.side} LR -> {2 * a.side} x {2 * a.side} slices, batch {a.batch}, device {a.device}"
        )
        rows = {}
        for m in a.methods.split(","):
            r = run_child(
                __file__,
                "--child",
                m,
                str(ckpt),
                str(lr),
                "--device",
                a.device,
                "--batch",
                str(a.batch),
            )
            rows[m] = r
            print(
                f"{m:8s} {r['slices_per_s']:8.2f} slices/s  {r['s']:7.1f} s  peak RSS {r['peak_rss_mb']:7.0f} MiB"
            )
        if "microsr" in rows:
            for m in rows:
                if m != "microsr":
                    ratio = rows["microsr"]["slices_per_s"] / rows[m]["slices_per_s"]
                    print(f"speed-up of microsr over {m}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
