"""Bland-Altman analysis of agreement between two measurement methods.

Bias is the mean of ``a - b``; the 95 % limits of agreement are ``bias +- 1.96 SD``
(Bland & Altman 1986, doi:10.1016/S0140-6736(86)90837-8). Their confidence intervals use
the approximate standard errors ``SD / sqrt(n)`` (bias) and ``SD * sqrt(3 / n)`` (limits)
with Student-t quantiles (Bland & Altman 1999, doi:10.1177/096228029900800204). The
plot draws these numbers, the CIs as shaded bands (:mod:`microsr.report.bland_altman`).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from microsr.stats.describe import ALPHA
from microsr.stats.paired import finite_pairs

Z_LOA = 1.96  # limits of agreement at +- 1.96 SD (95 % of differences if normal)


def bland_altman(a, b, *, alpha: float = ALPHA) -> dict:
    """Bias and limits of agreement of ``a - b`` with their ``1 - alpha`` CIs.

    Returns
    -------
    dict
        ``n, bias, sd, loa_low, loa_high`` and ``*_ci_low``/``*_ci_high`` for the bias
        and both limits; CIs are NaN (with a ``note``) for fewer than 2 pairs.
    """
    a, b = finite_pairs(a, b)
    diff = a - b
    n = len(diff)
    nan = float("nan")
    keys = ("bias", "loa_low", "loa_high")
    out = {"n": n, "bias": float(diff.mean()) if n else nan, "sd": nan, "note": ""}
    out |= {
        "loa_low": nan,
        "loa_high": nan,
        "mean_of_means": float(((a + b) / 2).mean()) if n else nan,
    }
    out |= {f"{k}_ci_{s}": nan for k in keys for s in ("low", "high")}
    if n < 2:
        return out | {"note": f"{n} pair(s): too few for limits of agreement"}
    sd = float(diff.std(ddof=1))
    q = float(stats.t.ppf(1 - alpha / 2, n - 1))
    se = {"bias": sd / np.sqrt(n), "loa_low": sd * np.sqrt(3 / n), "loa_high": sd * np.sqrt(3 / n)}
    out |= {"sd": sd, "loa_low": out["bias"] - Z_LOA * sd, "loa_high": out["bias"] + Z_LOA * sd}
    for k in keys:
        out[f"{k}_ci_low"] = float(out[k] - q * se[k])
        out[f"{k}_ci_high"] = float(out[k] + q * se[k])
    return out
