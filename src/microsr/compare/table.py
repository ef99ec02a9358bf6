"""Means, 95% confidence intervals and paired tests of the per-slice scores.

Statistics (:mod:`microsr.stats`, i.e. statsmodels/scipy.stats): a Student-t interval for each mean; for each candidate against
bilinear and against the reference model, the mean paired difference with its t interval,
the paired t-test and the Wilcoxon signed-rank test (two-sided). Both are computed at two
levels, because neither is right alone:

* ``slice``: slices are the units. Neighbouring slices of one specimen are correlated, so
  these intervals are too narrow and the p-values too small;
* ``specimen``: per-specimen means are the units; they are independent, but with the few
  test specimens of a CPU-sized benchmark the intervals are wide (and undefined for one).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from microsr.compare.scoring import METRICS
from microsr.stats import mean_ci, paired_comparison

__all__ = ["BILINEAR", "format_table", "paired", "summary_table", "t_interval"]

BILINEAR = "bilinear"
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "mae_bone": False, "baf_err": False}


def t_interval(values: np.ndarray) -> tuple[float, float, float]:
    """``(mean, low, high)``: Student-t 95% interval of the mean (:func:`microsr.stats.mean_ci`)."""
    ci = mean_ci(values)
    return ci["mean"], ci["ci_low"], ci["ci_high"]


def paired(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Paired comparison of ``a - b`` (:func:`microsr.stats.paired_comparison`).

    Returns ``diff`` (mean of ``a - b``), its 95% t interval ``diff_low, diff_high``,
    ``p_t`` (paired t-test) and ``p_wilcoxon`` (signed-rank), NaN where undefined.
    """
    test = paired_comparison(np.asarray(b, float), np.asarray(a, float))  # reports b' - a'
    return {
        "diff": test["mean_diff"],
        "diff_low": test["diff_ci_low"],
        "diff_high": test["diff_ci_high"],
        "p_t": test["p_t"],
        "p_wilcoxon": test["p_wilcoxon"],
    }


def _units(slices: pd.DataFrame, level: str) -> pd.DataFrame:
    """One row per (candidate, unit): slices as they are, or per-specimen means."""
    if level == "slice":
        return slices.assign(
            unit=slices["specimen"].astype(str) + ":" + slices["slice"].astype(str)
        )
    means = slices.groupby(["candidate", "specimen"], sort=True)[list(METRICS)].mean()
    return means.reset_index().assign(unit=lambda d: d["specimen"].astype(str))


def summary_table(slices: pd.DataFrame, *, reference: str) -> pd.DataFrame:
    """Long table: one row per (level, candidate, metric) with mean, CI and paired tests.

    Parameters
    ----------
    slices
        Output of :func:`microsr.compare.scoring.score_split` for all candidates and
        ``"bilinear"``, concatenated.
    reference
        Candidate name for the ``*_ref`` columns (the paper's U-Net + BCE by default).
    """
    rows = []
    for level in ("slice", "specimen"):
        wide = _units(slices, level).pivot(index="unit", columns="candidate", values=list(METRICS))
        for name in slices["candidate"].unique():
            for metric in METRICS:
                mean, low, high = t_interval(wide[metric][name])
                row = {"level": level, "candidate": name, "metric": metric, "n": len(wide)}
                row |= {"mean": mean, "ci_low": low, "ci_high": high}
                for tag, other in (("bilinear", BILINEAR), ("ref", reference)):
                    test = paired(wide[metric][name], wide[metric][other])
                    row |= {f"{k}_{tag}": v for k, v in test.items()}
                rows.append(row)
    return pd.DataFrame(rows)


def _cell(mean: float, low: float, high: float, digits: int) -> str:
    if math.isnan(low):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _p(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2g}"


def format_table(table: pd.DataFrame, runs: pd.DataFrame, *, level: str, reference: str) -> str:
    """Markdown table of one ``level``: scores with 95% CIs, and differences vs ``reference``.

    ``runs`` has one row per candidate: ``candidate, epochs, params, s_per_slice``.
    """
    digits = {"psnr": 2, "ssim": 4, "mae_bone": 4, "baf_err": 2}
    sub = table[table["level"] == level].set_index(["candidate", "metric"])
    info = runs.set_index("candidate")
    ref_time = float(info.loc[reference, "s_per_slice"])
    head = ["candidate", "epochs", "params", "predict ms/slice (x ref)"]
    head += ["PSNR dB", "SSIM", "MAE in bone", "BA/TA err %"]
    head += ["dPSNR vs ref (p_t, p_w)", "dSSIM vs ref (p_t, p_w)", "dPSNR vs bilinear (p_t)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in sub.index.get_level_values(0).unique():
        r = {m: sub.loc[(name, m)] for m in METRICS}
        if name in info.index:
            t = float(info.loc[name, "s_per_slice"])
            cells = [name, str(int(info.loc[name, "epochs"])), f"{int(info.loc[name, 'params']):,}"]
            cells.append(f"{1e3 * t:.1f} ({t / ref_time:.2f}x)")
        else:
            cells = [name, "–", "–", "–"]
        cells += [_cell(r[m]["mean"], r[m]["ci_low"], r[m]["ci_high"], digits[m]) for m in METRICS]
        for m in ("psnr", "ssim"):
            d = r[m]
            diff = _cell(d["diff_ref"], d["diff_low_ref"], d["diff_high_ref"], digits[m] + 1)
            cells.append(f"{diff} ({_p(d['p_t_ref'])}, {_p(d['p_wilcoxon_ref'])})")
        d = r["psnr"]
        cells.append(f"{d['diff_bilinear']:+.2f} ({_p(d['p_t_bilinear'])})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
