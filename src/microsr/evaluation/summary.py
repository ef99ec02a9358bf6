"""``microsr evaluate``'s tables: slice scores of several specimens in, files and text out.

Outputs (:func:`write_evaluation`): ``slices.csv`` (one row per paired HR-grid slice),
``specimens.csv`` (per-specimen means, intensity bias, 3D features) and ``summary.json``
(means over all slices, over the slices at and between LR slice centres, and per specimen);
:func:`format_summary` is the printed table.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from microsr.evaluation.scores import SpecimenScores
from microsr.io.atomic import atomic_path
from microsr.morphometry.area import BA_TA_ABSERR, ba_ta_abserr

METRICS = ("psnr_lr", "psnr_sr", "ssim_lr", "ssim_sr", "ba_ta_lr", "ba_ta_sr", "ba_ta_hr")


def _means(frame: pd.DataFrame) -> dict:
    out = {m: float(np.mean(frame[m].to_numpy(float))) for m in METRICS if m in frame}
    for key in ("lr", "sr"):
        if f"ba_ta_{key}" in frame:
            err = ba_ta_abserr(frame, key).to_numpy(float)
            out[f"{BA_TA_ABSERR}_{key}"] = float(np.nanmean(err)) if len(err) else float("nan")
    return out | {"n_slices": len(frame)}


def summarize(results: list[SpecimenScores]) -> dict:
    """Means over all slices, over the slices at / between LR slice centres, and per specimen."""
    slices = pd.concat([r.slices for r in results], ignore_index=True)
    centre = slices["at_lr_centre"].astype(bool)
    summary = _means(slices)
    summary["slices_at_lr_centres"] = _means(slices[centre])
    summary["slices_between_lr_centres"] = _means(slices[~centre])
    summary["per_specimen"] = {
        str(r.summary.get("specimen", r.slices["specimen"].iloc[0])): _means(r.slices) | {
            k: v for k, v in r.summary.items() if k != "specimen"
        }
        for r in results
    }  # fmt: skip
    return summary


def _specimen_table(summary: dict) -> pd.DataFrame:
    rows = []
    for sid, d in summary["per_specimen"].items():
        row = {"specimen": sid, **{k: v for k, v in d.items() if not isinstance(v, dict | list)}}
        for image, regions in d.get("intensity_bias", {}).items():
            row |= {f"bias_{region}_{image}": v for region, v in regions.items()}
        for image, feats in d.get("features_3d", {}).items():
            row |= {f"{name}_{image}": v for name, v in feats.items()}
        rows.append(row)
    return pd.DataFrame(rows)


def write_evaluation(results: list[SpecimenScores], out_dir: str | Path) -> dict:
    """Write ``slices.csv``, ``specimens.csv`` and ``summary.json`` into ``out_dir`` (atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(results)
    slices = pd.concat([r.slices for r in results], ignore_index=True)
    with atomic_path(out_dir / "slices.csv") as tmp:
        slices.to_csv(tmp, index=False, float_format="%.6f")
    with atomic_path(out_dir / "specimens.csv") as tmp:
        _specimen_table(summary).to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(out_dir / "summary.json") as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2, allow_nan=True))
    return summary


def _fmt(value: float, digits: int) -> str:
    return "inf" if math.isinf(value) else ("–" if math.isnan(value) else f"{value:.{digits}f}")


def format_summary(summary: dict) -> str:
    """A short table: interpolated LR vs model, PSNR (dB), SSIM and |BA/TA error|."""
    has_sr = "psnr_sr" in summary
    cols = [("psnr", 2, "PSNR"), ("ssim", 4, "SSIM"), (BA_TA_ABSERR, 4, "|dBA/TA|")]
    head = f"{'specimen':<22}{'slices':>7}"
    for _, _, label in cols:
        head += f"{label + ' LR':>14}" + (f"{label + ' SR':>14}" if has_sr else "")
    lines = [head, "-" * len(head)]

    def row(name: str, d: dict) -> str:
        out = f"{name:<22}{d['n_slices']:>7}"
        for key, digits, _ in cols:
            out += f"{_fmt(d.get(f'{key}_lr', math.nan), digits):>14}"
            out += f"{_fmt(d.get(f'{key}_sr', math.nan), digits):>14}" if has_sr else ""
        return out

    for sid, d in summary["per_specimen"].items():
        lines.append(row(sid, d))
    lines.append(row("all slices", summary))
    if summary["slices_between_lr_centres"]["n_slices"]:
        lines.append(row("  between LR centres", summary["slices_between_lr_centres"]))
        lines.append(row("  at LR centres", summary["slices_at_lr_centres"]))
    return "\n".join(lines + _bias_lines(summary))


def _bias_lines(summary: dict) -> list[str]:
    """Mean image - HR inside bone and marrow, in % of the HR window, per specimen."""
    images = sorted(
        {i for d in summary["per_specimen"].values() for i in d.get("intensity_bias", {})} - {"hr"}
    )
    if not images:
        return []
    head = f"{'intensity bias, % of window':<29}" + "".join(
        f"{region + ' ' + image.upper():>13}" for region in ("bone", "marrow") for image in images
    )
    lines = ["", head, "-" * len(head)]
    for sid, d in summary["per_specimen"].items():
        bias = d.get("intensity_bias", {})
        cells = [
            100 * bias.get(image, {}).get(region, math.nan)
            for region in ("bone", "marrow")
            for image in images
        ]
        lines.append(f"{sid:<29}" + "".join(f"{_fmt(c, 2):>13}" for c in cells))
    return lines
