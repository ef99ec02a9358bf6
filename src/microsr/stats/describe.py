"""Means with Student-t confidence intervals (statsmodels ``DescrStatsW``)."""

from __future__ import annotations

import numpy as np
from statsmodels.stats.weightstats import DescrStatsW

ALPHA = 0.05  # significance level and 1 - confidence of every interval


def mean_ci(values, *, alpha: float = ALPHA) -> dict:
    """Mean, SD and the ``1 - alpha`` t confidence interval of the mean of finite ``values``.

    Returns
    -------
    dict
        ``n, mean, sd, ci_low, ci_high, note``; the interval (and SD) are NaN with a
        note when fewer than 2 values are finite.
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    out = {"n": len(x), "mean": float(x.mean()) if len(x) else float("nan")}
    if len(x) < 2:
        nan = float("nan")
        return out | {"sd": nan, "ci_low": nan, "ci_high": nan, "note": "fewer than 2 values"}
    d = DescrStatsW(x)
    if d.std == 0:  # a constant series: the interval collapses onto the mean
        lo = hi = out["mean"]
    else:
        lo, hi = d.tconfint_mean(alpha=alpha)
    return out | {
        "sd": float(np.std(x, ddof=1)),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "note": "",
    }
