"""Prediction speed and peak RSS: microsr's streaming predict vs a naive loop vs MONAI.

All methods use the same checkpoint (the default model: the 2.5D residual U-Net, width
16, depth 3, 3 input slices; ``--paper`` for the paper's single-slice U-Net) on the same
LR volume (Z slices of SIDE x SIDE, upsampled x2 to the model's 2 SIDE x 2 SIDE), each in
its own process so that peak RSS is per method. ``naive``: batch 1, fp32, the model as
loaded (no BatchNorm folding, default memory layout), read whole / predict / write whole,
no overlap. ``monai``: ``monai.inferers.sliding_window_inference`` over the whole upsampled
stack with one window per slice (roi = the slice), ``sw_batch_size`` = ``--batch``.
``microsr``: ``predict_file`` with its defaults (``--batch`` overrides the batch size);
``microsr_fp32``: the same with ``precision="32"``; ``microsr_compile`` (not run by
default): with ``compile=True``, compile time included. Every output is compared with the
naive loop's (max |difference| / the naive output's range).

``microsr`` writes the HR grid (factor x the LR slices); ``microsr_lrgrid`` is the same with
``z_grid="lr"`` (one output slice per LR slice, the old behaviour); rates are output slices
per second, and the HR-grid cost per output slice is reported against the LR grid's.

Usage: python bench/bench_predict.py [--slices 24] [--side 200] [--device cpu] [--repeat 3]
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

from microsr.data.normalize import from_unit, input_range, output_range, to_unit
from microsr.device import resolve_device
from microsr.inference.checkpoint import load_checkpoint
from microsr.inference.engine import PredictOptions
from microsr.inference.engine import batch_size as engine_batch_size
from microsr.inference.predict import predict_file
from microsr.io import read_volume, write_volume
from microsr.pairing.upsample import upsample_bilinear
from microsr.training.config import DEFAULT_MODEL, PAPER_MODEL


def _neighbours(i, z, k):
    """Indices of slice ``i`` and its ``k`` neighbours each side, clamped to the volume."""
    return np.clip(np.arange(i - k, i + k + 1), 0, z - 1)


def _naive(ckpt, lr_path, out, device):
    loaded = load_checkpoint(ckpt, device=resolve_device(device))
    lr = read_volume(lr_path)
    norm = loaded.meta.normalization
    z, k = lr.shape[0], loaded.context_slices
    res = np.empty((z, lr.shape[1] * 2, lr.shape[2] * 2), np.float32)
    with torch.no_grad():
        for i in range(z):
            up = upsample_bilinear(
                torch.from_numpy(lr.array[_neighbours(i, z, k)].astype(np.float32)), factor=2
            )
            x = to_unit(up, *input_range(up, norm))[None].to(loaded.device)
            p = torch.sigmoid(loaded.model(x)).cpu()[:, 0]  # (1, H, W)
            res[i] = from_unit(p, *output_range(up[k : k + 1], norm))[0].numpy()
    sr = lr.with_array(
        res, spacing_mm=(lr.spacing_mm[0], lr.spacing_mm[1] / 2, lr.spacing_mm[2] / 2)
    )
    write_volume(sr, out, overwrite=True)  # the previous round's output


def _monai(ckpt, lr_path, out, device, batch):
    from monai.inferers import sliding_window_inference

    loaded = load_checkpoint(ckpt, device=resolve_device(device))
    lr = read_volume(lr_path)
    norm = loaded.meta.normalization
    up = upsample_bilinear(torch.from_numpy(np.asarray(lr.array, np.float32)), factor=2)
    z, k = lr.shape[0], loaded.context_slices
    index = np.stack([_neighbours(i, z, k) for i in range(z)])  # (Z, 2k + 1)
    x = to_unit(up, *input_range(up, norm))[index]
    with torch.no_grad():
        p = sliding_window_inference(
            x, roi_size=x.shape[-2:], sw_batch_size=batch,
            predictor=lambda t: torch.sigmoid(loaded.model(t)), sw_device=loaded.device,
            device="cpu",
        )  # fmt: skip
    res = from_unit(p[:, 0], *output_range(up, norm)).numpy()
    sr = lr.with_array(res.astype(np.float32), spacing_mm=(lr.spacing_mm[0], 0.01, 0.01))
    write_volume(sr, out, overwrite=True)


def child(method, ckpt, lr_path, out, device, batch):
    t = time.perf_counter()
    if method.startswith("microsr"):
        precision = "32" if method == "microsr_fp32" else "auto"
        compiled = method == "microsr_compile"
        grid = "lr" if method == "microsr_lrgrid" else "auto"
        opts = PredictOptions(batch_size=batch, precision=precision, compile=compiled, z_grid=grid)
        predict_file(
            ckpt, lr_path, out, device=device, options=opts, progress=False, overwrite=True
        )
    elif method == "naive":
        _naive(ckpt, lr_path, out, device)
    else:
        default = engine_batch_size(PredictOptions(), resolve_device(device))
        _monai(ckpt, lr_path, out, device, batch or default)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    z = read_volume(out).shape[0]  # output slices (the HR grid has factor x the LR's)
    print(
        json.dumps(
            {"method": method, "s": dt, "slices": z, "slices_per_s": z / dt,
             "peak_rss_mb": peak_rss_mb()}
        )
    )  # fmt: skip


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--slices", type=int, default=24)
    ap.add_argument("--side", type=int, default=200, help="LR side; the model sees 2x")
    ap.add_argument("--batch", type=int, default=None, help="default: microsr's (1 CPU, 8 CUDA)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--methods", default="naive,monai,microsr_lrgrid,microsr_fp32,microsr")
    ap.add_argument("--paper", action="store_true", help="the paper's single-slice U-Net")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of all methods")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        m, ckpt, lr = a.child
        child(m, ckpt, lr, Path(lr).parent / f"out_{m}.tif", a.device, a.batch)
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = PAPER_MODEL if a.paper else DEFAULT_MODEL
        ckpt = write_checkpoint(tmp / "m.ckpt", model)
        lr = write_lr(tmp / "lr.tif", a.slices, a.side)
        print(f"machine: {machine()}")
        side = 2 * a.side
        print(
            f"volume: {a.slices} x {a.side} x {a.side} LR -> {side} x {side} slices; "
            f"model {model.name}, in_channels {model.in_channels}; batch {a.batch or 'default'}; "
            f"device {a.device}"
        )
        batch = ["--batch", str(a.batch)] if a.batch else []
        methods = a.methods.split(",")
        runs: dict[str, list[dict]] = {m: [] for m in methods}
        for round_ in range(1, a.repeat + 1):  # interleaved, so drifts hit every method
            for m in methods:
                r = run_child(
                    __file__, "--child", m, str(ckpt), str(lr), "--device", a.device, *batch
                )
                runs[m].append(r)
                print(
                    f"round {round_}  {m:15s} {r['slices_per_s']:8.2f} slices/s  {r['s']:7.1f} s"
                    f"  peak RSS {r['peak_rss_mb']:7.0f} MiB",
                    flush=True,
                )
        outputs = {m: read_volume(tmp / f"out_{m}.tif").array for m in methods}
        if "naive" in outputs:
            ref = outputs["naive"]
            span = float(ref.max() - ref.min()) or 1.0
            for m, arr in outputs.items():
                if m != "naive" and arr.shape == ref.shape:  # the LR-grid outputs
                    err = float(np.abs(arr - ref).max()) / span
                    print(f"max |{m} - naive| / naive range: {err:.2e}")
        rate = {m: [r["slices_per_s"] for r in rs] for m, rs in runs.items()}
        for m in methods:
            print(f"median {m:15s} {np.median(rate[m]):8.2f} slices/s over {a.repeat} runs")
        if {"microsr", "microsr_lrgrid"} <= set(methods):
            per_round = np.array(rate["microsr_lrgrid"]) / np.array(rate["microsr"])
            print(
                f"cost per HR-grid output slice / cost per LR-grid slice: median "
                f"{np.median(per_round):.2f}x (target <= 1.2x)"
            )
        for fast in [m for m in methods if m.startswith("microsr")]:
            for base in [m for m in methods if not m.startswith("microsr")]:
                per_round = np.array(rate[fast]) / np.array(rate[base])
                print(
                    f"speed-up of {fast} over {base}: median {np.median(per_round):.2f}x "
                    f"(range {per_round.min():.2f}-{per_round.max():.2f}x, same-round ratios)"
                )


if __name__ == "__main__":
    main()
