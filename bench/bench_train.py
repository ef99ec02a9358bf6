"""Training throughput (slices/s per epoch) through ``microsr.training.train.train``.

The default model (2.5D residual U-Net, L1 + SSIM loss; ``--paper``: the paper's U-Net
with BCE) is trained on a synthetic dataset of ``--specimens`` phantom pairs (``--slices`` HR slices of ``--roi``
px each) is prepared once; training runs ``--epochs`` epochs on full ``--patch`` patches
(``--patch = --roi`` means whole 400 x 400 slices, as in the paper). An epoch draws one
patch per training slice, so slices/s = training slices / epoch time (validation excluded).
The projection is the paper's full run: 65,188 slices x 100 epochs at the measured rate.

Usage: python bench/bench_train.py [--roi 400 --patch 400] [--device cuda --precision bf16-mixed]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

import lightning as L
from _common import machine
from conftest import make_pair

from microsr.data.manifest import SpecimenRow, write_manifest
from microsr.data.prepare import PrepareConfig, prepare_dataset
from microsr.io import write_volume
from microsr.training.config import DEFAULT_MODEL, PAPER_MODEL, TrainConfig
from microsr.training.train import train

PAPER_SLICES, PAPER_EPOCHS = 65_188, 100


class EpochTimer(L.Callback):
    """Wall time of each training epoch (validation excluded) and its sample count."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.samples = 0

    def on_train_epoch_start(self, trainer, module):
        self.t = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.samples += len(batch[0])

    def on_validation_start(self, trainer, module):
        self.times.append(time.perf_counter() - self.t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--roi", type=int, default=400)
    ap.add_argument("--patch", type=int, default=400)
    ap.add_argument("--slices", type=int, default=24, help="HR slices per specimen (even)")
    ap.add_argument("--specimens", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="32")
    ap.add_argument("--paper", action="store_true", help="the paper's U-Net + BCE")
    ap.add_argument("--no-channels-last", action="store_true", help="contiguous (NCHW) layout")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = []
        side = a.roi + 16
        for i in range(a.specimens):
            lr, hr = make_pair(i, shape=(a.slices, side, side))
            rows.append(SpecimenRow(f"s{i}", "femur", write_volume(lr, tmp / f"l{i}.mha"),
                                    write_volume(hr, tmp / f"h{i}.mha")))  # fmt: skip
        ds = prepare_dataset(write_manifest(rows, tmp / "m.csv"), tmp / "ds",
                             PrepareConfig(roi=a.roi), progress=False)  # fmt: skip
        cfg = TrainConfig(
            model=PAPER_MODEL if a.paper else DEFAULT_MODEL, loss="bce" if a.paper else "l1_ssim",
            epochs=a.epochs, batch_size=a.batch, patch=a.patch, seed=0, device=a.device,
            precision=a.precision, num_workers=a.workers, val_max_slices=2,
            channels_last=not a.no_channels_last,
        )  # fmt: skip
        timer = EpochTimer()
        train(ds, tmp / "run", cfg, progress=False, callbacks=[timer])
    per_epoch = timer.samples / a.epochs
    rates = [per_epoch / t for t in timer.times]
    steady = max(rates[1:] or rates)
    print(f"machine: {machine()}")
    print(f"train: {cfg.model.name} width 16, loss {cfg.loss}, {a.patch} x {a.patch} patches, "
          f"batch {a.batch}, "
          f"precision {a.precision}, channels-last {cfg.channels_last}, {a.workers} workers, "
          f"{per_epoch:.0f} slices/epoch")  # fmt: skip
    print("epoch slices/s: " + ", ".join(f"{r:.2f}" for r in rates) + " (first includes warm-up)")
    hours = PAPER_SLICES * PAPER_EPOCHS / steady / 3600
    print(f"projected paper run ({PAPER_SLICES} slices x {PAPER_EPOCHS} epochs): {hours:.1f} h")


if __name__ == "__main__":
    main()
