"""The study's statistics as tables, from one slice-wise table.

Input columns: ``specimen, site, psnr_lr, psnr_sr, ssim_lr, ssim_sr, ba_ta_lr, ba_ta_sr,
ba_ta_hr`` (and ``model`` for the generalisation matrix). LR is always the bilinear
upsampled LR scan; every score is against HR on the paired slices.

Two units of analysis are reported side by side: **specimen** (per-specimen means; the
independent unit, n = specimens) and **slice** (all slices pooled; more power, but
slices of one specimen are not independent, so read its p-values as descriptive).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from microsr.evaluation.scores import BA_TA_ABSERR, ba_ta_abserr
from microsr.stats.agreement import bland_altman
from microsr.stats.describe import mean_ci
from microsr.stats.paired import paired_comparison

#: metric -> (LR column, SR column, better) compared in the paired tests
COMPARED = {
    "psnr": ("psnr_lr", "psnr_sr", "higher"),
    "ssim": ("ssim_lr", "ssim_sr", "higher"),
    "ba_ta_abs_error": ("ba_ta_abserr_lr", "ba_ta_abserr_sr", "lower"),
}


def add_errors(slices: pd.DataFrame) -> pd.DataFrame:
    """Add signed (``ba_ta_err_*`` = X - HR) and absolute BA/TA errors of LR and SR."""
    out = slices.copy()
    for key in ("lr", "sr"):
        if f"ba_ta_{key}" in out and "ba_ta_hr" in out:
            out[f"ba_ta_err_{key}"] = out[f"ba_ta_{key}"] - out["ba_ta_hr"]
            out[f"{BA_TA_ABSERR}_{key}"] = ba_ta_abserr(out, key)
    return out


def _value_columns(frame: pd.DataFrame) -> list[str]:
    skip = {"specimen", "site", "model", "lr_slice", "hr_slice", "ta"}
    return [c for c in frame.columns if c not in skip and pd.api.types.is_numeric_dtype(frame[c])]


def specimen_means(slices: pd.DataFrame) -> pd.DataFrame:
    """Per specimen: ``n_slices`` and each metric's mean with its 95 % CI over slices."""
    rows = []
    keys = [k for k in ("model", "site", "specimen") if k in slices]
    for ids, g in slices.groupby(keys, sort=True):
        row = dict(zip(keys, ids if isinstance(ids, tuple) else (ids,)))
        row["n_slices"] = len(g)
        for col in _value_columns(g):
            ci = mean_ci(g[col])
            row |= {col: ci["mean"], f"{col}_ci_low": ci["ci_low"], f"{col}_ci_high": ci["ci_high"]}
        row["note"] = "fewer than 2 slices: no CI" if len(g) < 2 else ""
        rows.append(row)
    return pd.DataFrame(rows)


def _groups(frame: pd.DataFrame):
    yield "all", frame
    if "site" in frame and frame["site"].nunique() > 1:
        for site, g in frame.groupby("site", sort=True):
            yield str(site), g


def comparisons(slices: pd.DataFrame, per_specimen: pd.DataFrame) -> pd.DataFrame:
    """Paired LR-vs-HR against SR-vs-HR tests of PSNR, SSIM and |BA/TA error|."""
    rows = []
    for unit, frame in (("specimen", per_specimen), ("slice", slices)):
        for group, g in _groups(frame):
            for metric, (a, b, better) in COMPARED.items():
                if a not in g or b not in g:
                    continue
                res = paired_comparison(g[a], g[b])
                rows.append(
                    {"group": group, "unit": unit, "metric": metric, "better": better} | res
                )
    return pd.DataFrame(rows)


def agreement(slices: pd.DataFrame, per_specimen: pd.DataFrame) -> pd.DataFrame:
    """Bland-Altman of BA/TA: LR - HR and SR - HR, per slice and per specimen mean."""
    rows = []
    for unit, frame in (("slice", slices), ("specimen", per_specimen)):
        for group, g in _groups(frame):
            for key in ("lr", "sr"):
                if f"ba_ta_{key}" not in g or "ba_ta_hr" not in g:
                    continue
                res = bland_altman(g[f"ba_ta_{key}"], g["ba_ta_hr"])
                rows.append({"group": group, "unit": unit, "pair": f"{key.upper()}-HR"} | res)
    return pd.DataFrame(rows)


def generalisation_matrix(per_specimen: pd.DataFrame) -> pd.DataFrame:
    """Model (trained on) x site (tested on): mean of specimen means of SR scores.

    Rows ``model, site, n_specimens, psnr_sr, ssim_sr, ba_ta_abserr_sr`` and the LR
    baselines ``psnr_lr, ssim_lr, ba_ta_abserr_lr`` of the same specimens.
    """
    cols = [
        c
        for c in ("psnr_sr", "ssim_sr", "ba_ta_abserr_sr", "psnr_lr", "ssim_lr", "ba_ta_abserr_lr")
        if c in per_specimen
    ]
    rows = []
    for (model, site), g in per_specimen.groupby(["model", "site"], sort=True):
        row = {"model": model, "site": site, "n_specimens": len(g)}
        row |= {c: float(np.nanmean(g[c])) if g[c].notna().any() else float("nan") for c in cols}
        rows.append(row)
    return pd.DataFrame(rows)


def run_stats(slices: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """All tables of one analysis: ``slices``, ``specimens``, ``comparisons``, ``bland_altman``."""
    slices = add_errors(slices)
    per_specimen = specimen_means(slices)
    return {
        "slices": slices,
        "specimens": per_specimen,
        "comparisons": comparisons(slices, per_specimen),
        "bland_altman": agreement(slices, per_specimen),
    }


def primary_slices_note() -> str:
    """How the primary analysis is defined (shown in the report)."""
    return (
        "Primary analysis: each test specimen scored with the model of its own site "
        "(the pooled model where its site has none); LR = bilinear-upsampled LR scan; all "
        "scores against HR on the paired slices; significance at p < 0.05."
    )
