"""The Bland-Altman figure of slice-wise BA/TA: LR - HR and SR - HR, each on its own y-axis.

Each panel shows every difference against the mean of the pair, the bias and the 95 %
limits of agreement (``bias +- 1.96 SD``) as lines, their confidence intervals as shaded
bands (Bland & Altman 1999, doi:10.1177/096228029900800204; the numbers are
:func:`microsr.stats.agreement.bland_altman`'s, the same as ``stats/bland_altman.csv``) and
zero (perfect agreement) as a dotted line. A panel's y-range covers zero, every band and
every difference; only a difference further than :data:`OUTLIER_SD` SDs from the bias is
clipped: it is then drawn as a triangle on the edge of the axes, with the count written
beside it. The two panels have their own y-ranges (LR's differences are often ten times
SR's): compare them by their tick labels, not by the spread of the points.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from microsr.stats.agreement import Z_LOA, bland_altman

#: differences further than this many SDs from the bias are clipped (marked on the edge)
OUTLIER_SD = 6.0
PAD = 0.06  # fraction of the data range added on each side of both axes
COLORS = {"lr": "#8c8c8c", "sr": "#1f77b4"}
LABELS = {"lr": "LR (trilinear)", "sr": "SR"}
CAPTION = (
    "Slice-wise BA/TA of LR (trilinear) and SR against HR. Lines: bias (solid) and 95 % "
    "limits of agreement, bias ± 1.96 SD (dashed); shaded: their 95 % CIs (Bland & "
    "Altman 1999; they treat slices as independent, which slices of one specimen are not: "
    "see the specimen rows of the Bland-Altman table); dotted: zero difference. "
    "Each panel has its own y-axis range, covering every difference; a difference more "
    f"than {OUTLIER_SD:g} SD from the bias would be drawn as a triangle on the edge, "
    "with its count."
)


def ba_limits(diff: np.ndarray, ba: dict) -> tuple[float, float]:
    """The y-range of one panel: zero, the CI bands and every non-outlying difference.

    Parameters
    ----------
    diff
        ``(n,)`` finite differences (method - HR).
    ba
        :func:`~microsr.stats.agreement.bland_altman` of the same pairs.

    Returns
    -------
    (low, high)
        With :data:`PAD` of the span added on each side (a span of 0 becomes +-0.01).
    """
    keep = diff[np.abs(diff - ba["bias"]) <= OUTLIER_SD * ba["sd"]] if ba["sd"] > 0 else diff
    bands = [ba[f"{k}_ci_{s}"] for k in ("bias", "loa_low", "loa_high") for s in ("low", "high")]
    values = np.concatenate([[0.0], keep, [v for v in bands if np.isfinite(v)]])
    lo, hi = float(values.min()), float(values.max())
    pad = PAD * (hi - lo) if hi > lo else 0.01
    return lo - pad, hi + pad


def _lines(ax: Axes, ba: dict, color: str) -> None:
    """Bias and limits of agreement with their CI bands, labelled at the right edge."""
    ax.axhline(0.0, color="black", lw=0.6, ls=":")
    rows = (("bias", "-", "bias"), ("loa_high", "--", f"+{Z_LOA} SD"))
    for key, style, label in rows + (("loa_low", "--", f"-{Z_LOA} SD"),):
        low, high = ba[f"{key}_ci_low"], ba[f"{key}_ci_high"]
        if np.isfinite(low) and np.isfinite(high):
            ax.axhspan(low, high, color=color, alpha=0.2, lw=0)
        ax.axhline(ba[key], color=color, lw=1.0, ls=style)
        ax.annotate(
            f"{label} {ba[key]:+.3f}",
            (1.0, ba[key]),
            xycoords=("axes fraction", "data"),
            xytext=(-2, 2),
            textcoords="offset points",
            ha="right",
            va="bottom",
            fontsize=6,
        )


def _clipped(ax: Axes, mean: np.ndarray, diff: np.ndarray, ylim: tuple[float, float]) -> int:
    """Mark differences outside ``ylim`` on its edges (triangles + count); returns how many."""
    n = 0
    for edge, side, marker, va in ((ylim[1], diff > ylim[1], "^", "top"),
                                   (ylim[0], diff < ylim[0], "v", "bottom")):  # fmt: skip
        if side.any():
            ax.scatter(mean[side], np.full(side.sum(), edge), marker=marker, s=18,
                       color="red", clip_on=False, zorder=3)  # fmt: skip
            y = 0.98 if va == "top" else 0.02
            ax.text(0.02, y, f"{side.sum()} clipped", transform=ax.transAxes, va=va,
                    color="red", fontsize=6)  # fmt: skip
            n += int(side.sum())
    return n


def _panel(ax: Axes, d: pd.DataFrame, key: str) -> None:
    a, b = d[f"ba_ta_{key}"].to_numpy(float), d["ba_ta_hr"].to_numpy(float)
    mean, diff = (a + b) / 2, a - b
    ba = bland_altman(a, b)
    ylim = ba_limits(diff, ba)
    inside = (diff >= ylim[0]) & (diff <= ylim[1])
    ax.scatter(mean[inside], diff[inside], s=6, color=COLORS[key], alpha=0.6, lw=0)
    _lines(ax, ba, COLORS[key])
    _clipped(ax, mean, diff, ylim)
    span = float(mean.max() - mean.min())
    pad = PAD * span if span > 0 else 0.01
    ax.set_xlim(float(mean.min()) - pad, float(mean.max()) + pad)
    ax.set_ylim(*ylim)
    ax.set_title(f"{LABELS[key]} - HR (n = {len(d)} slices)")
    ax.set_xlabel(f"mean of {key.upper()} and HR BA/TA")
    ax.set_ylabel(f"{key.upper()} - HR BA/TA")


def fig_bland_altman(slices: pd.DataFrame) -> Figure:
    """(C) Bland-Altman of slice-wise BA/TA, LR - HR and SR - HR (see the module notes).

    Parameters
    ----------
    slices
        Columns ``ba_ta_lr, ba_ta_sr, ba_ta_hr`` (BA/TA, a fraction); rows with a missing
        value in a panel's pair are left out of that panel.
    """
    fig = Figure(figsize=(6.5, 2.9), layout="constrained")
    for ax, key in zip(fig.subplots(1, 2), ("lr", "sr")):  # own y-axes: not shared
        ax.tick_params(labelsize=7)
        cols = [f"ba_ta_{key}", "ba_ta_hr"]
        d = slices[cols].dropna() if set(cols) <= set(slices.columns) else []
        if len(d) < 2:
            ax.text(0.5, 0.5, "fewer than 2 slices with BA/TA", ha="center",
                    transform=ax.transAxes)  # fmt: skip
            ax.set_axis_off()
            continue
        _panel(ax, d, key)
    fig.suptitle("each panel has its own y-axis range", fontsize=7)
    return fig
