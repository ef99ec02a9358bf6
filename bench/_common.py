"""Shared helpers of the benchmark scripts (not part of the package)."""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from microsr.checkpoint import new_meta, save_checkpoint
from microsr.data.normalize import NormalizationConfig
from microsr.io import write_volume
from microsr.models.factory import ModelConfig, build_model
from microsr.volume import Volume


def machine() -> str:
    """One line naming the machine the numbers come from."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {torch.get_num_threads()} torch threads, {gpu}, torch {torch.__version__}"


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux: ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(script: str, *args: str) -> dict:
    """Run ``python script args`` and parse the JSON it prints last (one process per case)."""
    out = subprocess.run(
        [sys.executable, script, *args], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def write_checkpoint(path: Path, config: ModelConfig, *, seed: int = 0) -> Path:
    """A microsr checkpoint (:mod:`microsr.checkpoint`) of a random model with non-trivial BN
    statistics, window-normalised on 0..1000 (the range of :func:`write_lr`).

    A residual model's zero-initialised head gets random weights too, so the output is not
    just the bilinear input and precision differences show.
    """
    torch.manual_seed(seed)
    model = build_model(config)
    head = getattr(getattr(model, "body", None), "head", None)
    if isinstance(head, torch.nn.Conv2d):
        torch.nn.init.normal_(head.weight, std=0.05)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    norm = NormalizationConfig(mode="window", low=0.0, high=1000.0)  # write_lr's range
    save_checkpoint(path, model, new_meta(config, factor=2, normalization=norm))
    return path


def write_lr(path: Path, z: int, side: int, *, seed: int = 0) -> Path:
    """A random (Z, side, side) float32 LR volume, written slab by slab if large."""
    rng = np.random.default_rng(seed)
    arr = np.lib.format.open_memmap(path.with_suffix(".npy"), "w+", np.float32, (z, side, side))
    for s in range(0, z, 64):
        arr[s : s + 64] = rng.random((min(64, z - s), side, side), dtype=np.float32) * 1000
    write_volume(Volume(arr, (0.02,) * 3), path)
    del arr
    path.with_suffix(".npy").unlink()
    return path
