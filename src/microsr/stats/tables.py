"""Two-level (slice, specimen) statistics tables: the study's and compare's.

Statistics (:mod:`microsr.stats`, scipy.stats): a Student-t interval for each mean, and
paired differences with their t interval, the paired t-test and the Wilcoxon signed-rank
test (two-sided), at two levels, because neither is right alone:

* ``slice``: slices are the units. Neighbouring slices of one specimen are correlated, so
  these intervals are too narrow and the p-values too small;
* ``specimen``: per-specimen means are the units; they are independent, but with the few
  test specimens of a CPU-sized benchmark the intervals are wide (and undefined for one).

The study's tables (:func:`run_stats`) compare LR with SR from one slice-wise table; compare's
(:func:`candidate_table`) compare candidates with a baseline and a reference. Metric names
are the same in both: ``psnr``, ``ssim``, ``ba_ta_abserr``.

The study's input columns: ``specimen, site, psnr_lr, psnr_sr, ssim_lr, ssim_sr, ba_ta_lr,
ba_ta_sr, ba_ta_hr`` (and ``model`` for the generalisation matrix). LR is always the LR scan
interpolated trilinearly onto the HR grid (bilinear in-plane, linear along z:
:mod:`microsr.evaluation.stacks`); every score is against HR on the paired slices.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from microsr.morphometry.area import BA_TA_ABSERR, ba_ta_abserr
from microsr.stats.agreement import bland_altman
from microsr.stats.describe import mean_ci
from microsr.stats.paired import paired_comparison

#: metric -> (LR column, SR column, better) compared in the paired tests
COMPARED = {
    "psnr": ("psnr_lr", "psnr_sr", "higher"),
    "ssim": ("ssim_lr", "ssim_sr", "higher"),
    BA_TA_ABSERR: (f"{BA_TA_ABSERR}_lr", f"{BA_TA_ABSERR}_sr", "lower"),
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


def _wide(frame: pd.DataFrame, level: str, metrics) -> pd.DataFrame:
    """One row per unit, one column per (metric, candidate)."""
    key = frame["specimen"].astype(str)
    if level == "slice":
        key = key + ":" + frame["slice"].astype(str)
    return frame.assign(unit=key).pivot(index="unit", columns="candidate", values=list(metrics))


def candidate_table(
    slices: pd.DataFrame,
    specimens: pd.DataFrame,
    *,
    metrics: dict[str, tuple[str, ...]],
    baseline: str,
    reference: str,
) -> pd.DataFrame:
    """Long table: one row per (level, candidate, metric) with mean, CI and paired tests.

    Parameters
    ----------
    slices, specimens
        Long per-slice (``specimen, slice``) and per-specimen scores with a ``candidate``
        column (:func:`microsr.compare.scoring.score_candidate`), ``baseline`` among them.
    metrics
        Level (``"slice"``, ``"specimen"``) -> metric columns.
    baseline, reference
        Candidates for the ``*_bilinear`` and ``*_ref`` columns (bilinear LR; the paper's
        U-Net + BCE by default).

    The paired differences are ``candidate - other`` (:func:`microsr.stats.paired_comparison`
    reports ``b - a``), with their 95 % t interval, paired t-test and Wilcoxon p-values.
    """
    rows = []
    for level, frame in (("slice", slices), ("specimen", specimens)):
        present = [m for m in metrics[level] if m in frame]
        wide = _wide(frame, level, present)
        for name in frame["candidate"].unique():
            for metric in present:
                ci = mean_ci(wide[metric][name])
                row = {"level": level, "candidate": name, "metric": metric, "n": len(wide)}
                row |= {"mean": ci["mean"], "ci_low": ci["ci_low"], "ci_high": ci["ci_high"]}
                for tag, other in (("bilinear", baseline), ("ref", reference)):
                    test = paired_comparison(wide[metric][other], wide[metric][name])
                    row |= {
                        f"diff_{tag}": test["mean_diff"], f"diff_low_{tag}": test["diff_ci_low"],
                        f"diff_high_{tag}": test["diff_ci_high"], f"p_t_{tag}": test["p_t"],
                        f"p_wilcoxon_{tag}": test["p_wilcoxon"],
                    }  # fmt: skip
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
        "(the pooled model where its site has none); LR = the LR scan interpolated "
        "trilinearly onto the HR grid; all "
        "scores against HR on the paired slices; significance at p < 0.05."
    )


#: Morphometry scored against an exact truth mask: 3D features, then slice-wise BA/TA.
TRUTH_METRICS = ("bv_tv", "tb_th_lt_mm", "tb_sp_lt_mm", "conn_d_per_mm3", "ba_ta")
TRUTH_IMAGES = ("lr", "sr", "hr")


def truth_errors(features: pd.DataFrame, slices: pd.DataFrame) -> pd.DataFrame:
    """LR, SR and grey-HR morphometry against the truth mask, one row per specimen and image.

    ``features``: the long 3D-feature table (``model, site, specimen, image`` and the
    features, with ``<feature>_truth_err`` where a truth mask was given); ``slices``: the
    slice-wise table with ``ba_ta_truth``. Returns ``model, site, specimen, image`` and, per
    metric of :data:`TRUTH_METRICS`, ``<metric>`` (the image's value), ``<metric>_truth``
    and ``<metric>_abserr`` = |image - truth| (BA/TA: the mean over slices of the
    slice-wise absolute error). Empty when no specimen had a truth mask.
    """
    keys = [k for k in ("model", "site", "specimen") if k in slices]
    if "ba_ta_truth" not in slices or slices["ba_ta_truth"].isna().all():
        return pd.DataFrame()
    rows = []
    for ids, g in slices.groupby(keys, sort=True):
        base = dict(zip(keys, ids if isinstance(ids, tuple) else (ids,)))
        for image in (i for i in TRUTH_IMAGES if f"ba_ta_{i}" in g):
            row = base | {"image": image, "ba_ta": float(g[f"ba_ta_{image}"].mean()),
                          "ba_ta_truth": float(g["ba_ta_truth"].mean()),
                          "ba_ta_abserr": float((g[f"ba_ta_{image}"] - g["ba_ta_truth"]).abs().mean())}  # fmt: skip
            rows.append(row | _truth_features(features, base, image))
    return pd.DataFrame(rows)


def _truth_features(features: pd.DataFrame, base: dict, image: str) -> dict:
    if features is None or features.empty or "image" not in features:
        return {}
    match = features["image"] == image
    for key, value in base.items():
        match &= features[key].astype(str) == str(value)
    if not match.any():
        return {}
    feat = features[match].iloc[0]
    out = {}
    for metric in TRUTH_METRICS[:-1]:
        err = feat.get(f"{metric}_truth_err")
        if err is not None and metric in feat:
            out |= {metric: feat[metric], f"{metric}_truth": feat[metric] - err,
                    f"{metric}_abserr": abs(err)}  # fmt: skip
    return out
