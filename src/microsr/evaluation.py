"""``microsr evaluate``: PSNR/SSIM of LR (bilinear) and SR against HR, per slice and specimen.

Every image is scored after the model's normalisation, applied alike to the bilinear LR,
the SR and the HR slice (per-slice min-max by default, as the paper), with
``data_range=1``. SSIM follows Wang et al. 2004 (11 x 11 Gaussian window, sigma 1.5,
K1 = 0.01, K2 = 0.03); see :mod:`microsr.metrics`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from microsr.data.dataset import SlicePairs
from microsr.data.normalize import NormalizationConfig, normalize
from microsr.data.prepare import load_dataset_info
from microsr.data.upsample import upsample_bilinear
from microsr.errors import MicrosrError
from microsr.inference.checkpoint import LoadedModel
from microsr.inference.predict import model_images
from microsr.io.atomic import atomic_path
from microsr.metrics import psnr, ssim
from microsr.pairing.geometry import check_pair, nearest_slices
from microsr.volume import Volume

METRICS = ("psnr_lr", "psnr_sr", "ssim_lr", "ssim_sr")


def _scores(prefix: str, pred: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    return {
        f"psnr_{prefix}": psnr(pred, target, data_range=1.0),
        f"ssim_{prefix}": ssim(pred, target, data_range=1.0),
    }


def evaluate_volumes(
    hr: Volume,
    lr: Volume,
    sr: Volume | None = None,
    *,
    normalization: NormalizationConfig,
    name: str = "volume",
    chunk: int = 16,
) -> pd.DataFrame:
    """Per-slice scores of LR (upsampled) and optionally SR against HR.

    Each LR slice is paired with the nearest HR slice (see :mod:`microsr.pairing`); SR
    slices are matched to LR slices by z position and must lie on the HR in-plane grid.
    Slices are compared over the in-plane area common to all volumes.
    """
    geo = check_pair(lr, hr, name=name)
    f = geo.factor
    h, w = min(lr.shape[1] * f, hr.shape[1]), min(lr.shape[2] * f, hr.shape[2])
    sr_index = None
    if sr is not None:
        if abs(sr.spacing_mm[1] - hr.spacing_mm[1]) > 0.01 * hr.spacing_mm[1]:
            raise MicrosrError(
                f"{name}: SR spacing {sr.spacing_mm} mm is not on the HR grid "
                f"{hr.spacing_mm} mm in-plane"
            )
        sr_index = nearest_slices(lr, sr)
        h, w = min(h, sr.shape[1]), min(w, sr.shape[2])
    k_all = np.nonzero((geo.hr_index >= 0) & (sr_index >= 0 if sr_index is not None else True))[0]
    rows = []
    for s in range(0, len(k_all), chunk):
        k = k_all[s : s + chunk]
        hr_n = normalize(np.asarray(hr.array[geo.hr_index[k], :h, :w], np.float32), normalization)
        lr_n = normalize(
            upsample_bilinear(np.asarray(lr.array[k], np.float32), factor=f)[:, :h, :w],
            normalization,
        )
        cols = {"specimen": [name] * len(k), "lr_slice": k, "hr_slice": geo.hr_index[k]}
        cols.update(_scores("lr", lr_n, hr_n))
        if sr is not None:
            sr_n = normalize(np.asarray(sr.array[sr_index[k], :h, :w], np.float32), normalization)
            cols.update(_scores("sr", sr_n, hr_n))
        rows.append(pd.DataFrame(cols))
    if not rows:
        raise MicrosrError(f"{name}: no LR slice could be paired with an HR slice")
    return pd.concat(rows, ignore_index=True)


def evaluate_dataset(
    dataset_dir: str | Path,
    loaded: LoadedModel,
    *,
    split: str = "test",
    batch_size: int = 8,
) -> pd.DataFrame:
    """Per-slice scores on a prepared dataset's split (default: the test specimens)."""
    info, splits = load_dataset_info(dataset_dir)
    if loaded.factor != info["factor"]:
        raise MicrosrError(
            f"{loaded.path}: model factor {loaded.factor} != dataset factor {info['factor']}"
        )
    norm = NormalizationConfig.model_validate(info["normalization"])
    k = loaded.context_slices  # 2.5D models see 2k + 1 LR slices
    frames = []
    for sid in splits[split]:
        pairs = SlicePairs(dataset_dir, info, [sid], context=k)
        for s in range(0, len(pairs), batch_size):
            idx = range(s, min(s + batch_size, len(pairs)))
            lr_in = np.stack([np.asarray(pairs.pair(i)[0]) for i in idx])
            lr_in = lr_in[:, None] if lr_in.ndim == 3 else lr_in  # (N, 2k + 1, H, W)
            lr_n = lr_in[:, k]  # the paired (centre) slice is the bilinear baseline
            hr_n = np.stack([np.asarray(pairs.pair(i)[1]) for i in idx])
            sr = model_images(loaded, torch.from_numpy(np.ascontiguousarray(lr_in)))[:, 0].numpy()
            # Re-normalise the model image like the other two (no-op in window mode).
            sr_n = normalize(sr, norm) if norm.mode == "minmax" else sr
            cols = {"specimen": sid, "lr_slice": list(idx), "hr_slice": list(idx)}
            cols.update(_scores("lr", lr_n, hr_n))
            cols.update(_scores("sr", sr_n, hr_n))
            frames.append(pd.DataFrame(cols))
    if not frames:
        raise MicrosrError(f"{dataset_dir}: the {split} split has no slices")
    return pd.concat(frames, ignore_index=True)


def _finite_mean(values: pd.Series) -> float:
    return float(np.mean(values.to_numpy(dtype=float)))


def summarize(slices: pd.DataFrame) -> dict:
    """Means over slices and per specimen of the columns in ``METRICS`` present."""
    present = [m for m in METRICS if m in slices]
    summary: dict = {m: _finite_mean(slices[m]) for m in present}
    summary["n_slices"] = len(slices)
    summary["per_specimen"] = {
        str(sid): {**{m: _finite_mean(g[m]) for m in present}, "n_slices": len(g)}
        for sid, g in slices.groupby("specimen", sort=True)
    }
    return summary


def write_evaluation(slices: pd.DataFrame, out_dir: str | Path) -> dict:
    """Write ``slices.csv``, ``specimens.csv`` and ``summary.json`` into ``out_dir`` (atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(slices)
    with atomic_path(out_dir / "slices.csv") as tmp:
        slices.to_csv(tmp, index=False, float_format="%.6f")
    per_specimen = pd.DataFrame.from_dict(summary["per_specimen"], orient="index")
    with atomic_path(out_dir / "specimens.csv") as tmp:
        per_specimen.rename_axis("specimen").to_csv(tmp, float_format="%.6f")
    with atomic_path(out_dir / "summary.json") as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2, allow_nan=True))
    return summary


def format_summary(summary: dict) -> str:
    """A short table: bilinear vs model, PSNR (dB) and SSIM, overall and per specimen."""
    has_sr = "psnr_sr" in summary
    head = f"{'specimen':<16}{'slices':>7}{'PSNR bilinear':>15}" + (
        f"{'PSNR model':>12}" if has_sr else ""
    )
    head += f"{'SSIM bilinear':>15}" + (f"{'SSIM model':>12}" if has_sr else "")
    lines = [head, "-" * len(head)]

    def row(name: str, d: dict) -> str:
        fmt = lambda v, p: "inf" if math.isinf(v) else f"{v:.{p}f}"
        out = f"{name:<16}{d['n_slices']:>7}{fmt(d['psnr_lr'], 2):>15}"
        out += f"{fmt(d['psnr_sr'], 2):>12}" if has_sr else ""
        out += f"{fmt(d['ssim_lr'], 4):>15}" + (f"{fmt(d['ssim_sr'], 4):>12}" if has_sr else "")
        return out

    for sid, d in summary["per_specimen"].items():
        lines.append(row(sid, d))
    if len(summary["per_specimen"]) > 1:
        lines.append(row("all slices", summary))
    return "\n".join(lines)
