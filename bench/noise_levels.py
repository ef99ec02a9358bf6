"""LR noise level of acquisition protocols, in the model's unit range (window = 1).

Simulates an HR volume with each protocol and with the same protocol nearly noise-free
(1e9 photons); the noise is their difference, its standard deviation divided by the width of
a prepared dataset's HR window: the scale of ``microsr train --noise-augment``.

Usage: python bench/noise_levels.py HR_VOLUME DATASET_DIR [--photons 800,2500,5000,20000]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from microsr.io import read_volume
from microsr.simulate import AcquisitionConfig, simulate_acquisition
from microsr.simulate.config import FILTERS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("hr", type=Path)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--photons", default="800,2500,5000,20000")
    parser.add_argument("--filters", default=",".join(FILTERS))
    args = parser.parse_args()
    hr = read_volume(args.hr)
    norm = json.loads((args.dataset / "dataset.json").read_text())["normalization"]
    width = norm["high"] - norm["low"]
    photons = [float(p) for p in args.photons.split(",")]
    print(f"{args.hr.name}: LR noise std / HR window width ({width:.4g}), 1 frame")
    print("| filter | " + " | ".join(f"{p:g} photons" for p in photons) + " |")
    print("|---|" + "---|" * len(photons))
    for name in args.filters.split(","):
        sim = lambda p, f=name: simulate_acquisition(
            hr, AcquisitionConfig(photons=p, filter_name=f, seed=0)
        ).array.astype(np.float64)
        clean = sim(1e9)
        row = [f"{(sim(p) - clean).std() / width:.4f}" for p in photons]
        print(f"| {name} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
