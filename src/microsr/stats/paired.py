"""Paired comparisons: t-test and Wilcoxon signed-rank test (scipy) with effect sizes.

Used to ask whether SR images are closer to HR than LR images are: e.g. ``a`` = PSNR of
LR vs HR and ``b`` = PSNR of SR vs HR on the same slices or specimens.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

from microsr.stats.describe import ALPHA, mean_ci


def finite_pairs(a, b) -> tuple[np.ndarray, np.ndarray]:
    """The pairs of ``a`` and ``b`` where both are finite.

    Parameters
    ----------
    a, b
        Paired samples of the same length.

    Returns
    -------
    tuple of numpy.ndarray
        ``a`` and ``b`` as float arrays, without the pairs where either is NaN or infinite.

    Raises
    ------
    ValueError
        If the samples differ in length.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.shape} vs {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    return a[ok], b[ok]


def paired_comparison(a, b, *, alpha: float = ALPHA) -> dict:
    """Compare paired samples ``a`` and ``b`` (``b - a`` is the difference).

    Returns
    -------
    dict
        ``n``, means, ``mean_diff`` with its t CI, ``t``, ``p_t`` (``scipy.stats.ttest_rel``,
        two-sided), ``w``, ``p_wilcoxon`` (``scipy.stats.wilcoxon``, two-sided, zero
        differences dropped), ``cohen_dz`` (mean difference / SD of differences),
        ``significant`` (``p_t < alpha``) and a ``note``. Tests need 2 or more pairs
        with non-constant differences; otherwise their fields are NaN with a note.
    """
    a, b = finite_pairs(a, b)
    diff = b - a
    ci = mean_ci(diff, alpha=alpha)
    nan = float("nan")
    out = {
        "n": len(a),
        "mean_a": float(a.mean()) if len(a) else nan,
        "mean_b": float(b.mean()) if len(b) else nan,
        "mean_diff": ci["mean"],
        "diff_ci_low": ci["ci_low"],
        "diff_ci_high": ci["ci_high"],
        "t": nan,
        "p_t": nan,
        "w": nan,
        "p_wilcoxon": nan,
        "cohen_dz": nan,
        "significant": False,
        "note": "",
    }
    if len(a) < 2:
        return out | {"note": f"{len(a)} pair(s): too few for a test"}
    if np.allclose(diff, diff[0], rtol=1e-9, atol=1e-12):
        return out | {"note": "constant differences: tests undefined"}
    t = stats.ttest_rel(b, a)
    with warnings.catch_warnings():  # small-sample normal-approximation warnings
        warnings.simplefilter("ignore")
        w = stats.wilcoxon(b, a, zero_method="wilcox")
    out |= {"t": float(t.statistic), "p_t": float(t.pvalue), "w": float(w.statistic)}
    out |= {"p_wilcoxon": float(w.pvalue), "cohen_dz": float(diff.mean() / diff.std(ddof=1))}
    out["significant"] = bool(out["p_t"] < alpha)
    return out
