"""compare's table: the statistics of :func:`microsr.stats.tables.candidate_table` (the one
owner of two-level slice/specimen statistics tables) as markdown (:func:`format_table`)."""

from __future__ import annotations

import math

import pandas as pd

from microsr.compare.scoring import SLICE_METRICS, SPECIMEN_METRICS
from microsr.stats.tables import candidate_table

__all__ = ["BILINEAR", "format_table", "summary_table"]

BILINEAR = "bilinear"
HIGHER_IS_BETTER = {
    "psnr": True, "ssim": True, "ba_ta_abserr": False, "bias_bone": None, "bias_marrow": None,
    "bv_tv_err": False, "tb_th_err": False,
}  # fmt: skip
LEVEL_METRICS = {"slice": SLICE_METRICS, "specimen": SPECIMEN_METRICS}


def summary_table(slices: pd.DataFrame, specimens: pd.DataFrame, *, reference: str) -> pd.DataFrame:
    """compare's statistics: :func:`microsr.stats.tables.candidate_table` of its metrics,
    against :data:`BILINEAR` and ``reference``."""
    return candidate_table(
        slices, specimens, metrics=LEVEL_METRICS, baseline=BILINEAR, reference=reference
    )


def _cell(mean: float, low: float, high: float, digits: int) -> str:
    if math.isnan(mean):
        return "–"
    if math.isnan(low):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _p(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2g}"


_HEADERS = {
    "psnr": ("PSNR dB", 2), "ssim": ("SSIM", 4), "ba_ta_abserr": ("BA/TA err pp", 2),
    "bias_bone": ("bias bone %", 2), "bias_marrow": ("bias marrow %", 2),
    "bv_tv_err": ("BV/TV err pp", 2), "tb_th_err": ("Tb.Th err um", 1),
}  # fmt: skip
#: shown scaled: the BA/TA error is stored as a fraction and shown in percentage points
_SCALE = {"ba_ta_abserr": 100.0}


def format_table(table: pd.DataFrame, runs: pd.DataFrame, *, level: str, reference: str) -> str:
    """Markdown table of one ``level``: scores with 95% CIs, and differences vs ``reference``.

    ``runs`` has one row per candidate: ``candidate, epochs, params, s_per_slice``.
    """
    sub = table[table["level"] == level].set_index(["candidate", "metric"])
    metrics = [m for m in LEVEL_METRICS[level] if m in sub.index.get_level_values(1)]
    info = runs.set_index("candidate")
    ref_time = float(info.loc[reference, "s_per_slice"])
    head = ["candidate", "epochs", "params", "predict ms/slice (x ref)"]
    head += [_HEADERS[m][0] for m in metrics]
    head += ["dPSNR vs ref (p_t, p_w)", "dSSIM vs ref (p_t, p_w)", "dPSNR vs bilinear (p_t)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in sub.index.get_level_values(0).unique():
        r = {m: sub.loc[(name, m)] for m in metrics}
        if name in info.index:
            t = float(info.loc[name, "s_per_slice"])
            cells = [name, str(int(info.loc[name, "epochs"])), f"{int(info.loc[name, 'params']):,}"]
            cells.append(f"{1e3 * t:.1f} ({t / ref_time:.2f}x)")
        else:
            cells = [name, "–", "–", "–"]
        cells += [
            _cell(*(_SCALE.get(m, 1.0) * r[m][k] for k in ("mean", "ci_low", "ci_high")),
                  _HEADERS[m][1])
            for m in metrics
        ]  # fmt: skip
        for m in ("psnr", "ssim"):
            d = r[m]
            diff = _cell(d["diff_ref"], d["diff_low_ref"], d["diff_high_ref"], _HEADERS[m][1] + 1)
            cells.append(f"{diff} ({_p(d['p_t_ref'])}, {_p(d['p_wilcoxon_ref'])})")
        d = r["psnr"]
        cells.append(f"{d['diff_bilinear']:+.2f} ({_p(d['p_t_bilinear'])})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
