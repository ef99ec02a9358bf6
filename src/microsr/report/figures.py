"""Publication figures of a study (matplotlib, object API: no pyplot state, Agg canvas).

Every figure is saved as PNG (200 dpi) and PDF (vector) by :func:`save`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from statsmodels.graphics.agreement import mean_diff_plot

RC = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8}
COLORS = {"lr": "#8c8c8c", "sr": "#1f77b4"}


def save(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    """Write ``name.png`` and ``name.pdf`` into ``out_dir``; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=200, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    return paths


def fig_examples(examples: list[tuple[str, dict]]) -> Figure:
    """(A) LR (bilinear) / SR / HR slices, a zoomed inset of the centre, PSNR/SSIM in titles."""
    fig = Figure(figsize=(6.5, 2.3 * len(examples)), layout="constrained")
    axes = fig.subplots(len(examples), 3, squeeze=False)
    for row, (sid, ex) in zip(axes, examples):
        psnr_lr, psnr_sr, ssim_lr, ssim_sr = (float(v) for v in ex["scores"])
        titles = {
            "lr": f"{sid} LR (bilinear)\nPSNR {psnr_lr:.2f} dB, SSIM {ssim_lr:.3f}",
            "sr": f"SR (U-Net)\nPSNR {psnr_sr:.2f} dB, SSIM {ssim_sr:.3f}",
            "hr": f"HR (reference)\nslice {int(ex['hr_slice'])}",
        }
        for ax, key in zip(row, ("lr", "sr", "hr")):
            img = np.asarray(ex[key], np.float32)
            ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(titles[key])
            ax.set_axis_off()
            h, w = img.shape
            y0, x0, s = h // 2 - h // 8, w // 2 - w // 8, max(min(h, w) // 4, 2)
            ins = ax.inset_axes([0.6, 0.0, 0.4, 0.4])
            ins.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ins.set_xlim(x0, x0 + s)
            ins.set_ylim(y0 + s, y0)
            ins.set_xticks([])
            ins.set_yticks([])
            for spine in ins.spines.values():
                spine.set_edgecolor("yellow")
            ax.indicate_inset_zoom(ins, edgecolor="yellow")
    return fig


def fig_specimen_bars(per_specimen: pd.DataFrame) -> Figure:
    """(B) Per-specimen SSIM and PSNR of LR vs HR and SR vs HR, with 95 % CIs over slices."""
    fig = Figure(figsize=(6.5, 2.6), layout="constrained")
    x = np.arange(len(per_specimen))
    for ax, metric, unit in zip(fig.subplots(1, 2), ("ssim", "psnr"), ("", " (dB)")):
        for i, key in enumerate(("lr", "sr")):
            col = f"{metric}_{key}"
            mean = per_specimen[col].to_numpy(float)
            err = np.vstack(
                [mean - per_specimen[f"{col}_ci_low"], per_specimen[f"{col}_ci_high"] - mean]
            )
            ax.bar(
                x + (i - 0.5) * 0.4,
                mean,
                0.4,
                yerr=np.nan_to_num(err),
                capsize=2,
                color=COLORS[key],
                label=f"{'LR (bilinear)' if key == 'lr' else 'SR'} vs HR",
            )
        ax.set_xticks(x, per_specimen["specimen"], rotation=45, ha="right")
        ax.set_ylabel(metric.upper() + unit)
        ax.legend(frameon=False)
    return fig


def fig_bland_altman(slices: pd.DataFrame) -> Figure:
    """(C) Bland-Altman of slice-wise BA/TA: LR - HR and SR - HR (bias, +-1.96 SD limits)."""
    fig = Figure(figsize=(6.5, 2.8), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key in zip(axes, ("lr", "sr")):
        d = slices[[f"ba_ta_{key}", "ba_ta_hr"]].dropna()
        if len(d) < 2:
            ax.text(0.5, 0.5, "too few slices", ha="center", transform=ax.transAxes)
            continue
        with warnings.catch_warnings():  # mean_diff_plot calls tight_layout itself
            warnings.simplefilter("ignore", UserWarning)
            mean_diff_plot(
                d[f"ba_ta_{key}"].to_numpy(),
                d["ba_ta_hr"].to_numpy(),
                ax=ax,
                scatter_kwds={"s": 6, "color": COLORS[key], "alpha": 0.6},
            )
        for text in ax.texts:  # statsmodels annotates at 14 pt: too large for a 2-panel figure
            text.set_fontsize(7)
        ax.tick_params(labelsize=7)
        ax.set_title(f"{key.upper()} - HR (n = {len(d)} slices)", fontsize=8)
        ax.set_xlabel("mean BA/TA", fontsize=8)
        ax.set_ylabel("difference in BA/TA", fontsize=8)
    return fig


def fig_training(curves: pd.DataFrame) -> Figure:
    """Training and validation loss, and validation PSNR, per epoch and model."""
    fig = Figure(figsize=(6.5, 2.4), layout="constrained")
    ax_loss, ax_psnr = fig.subplots(1, 2)
    for model, g in curves.groupby("model", sort=True):
        for col, style in (("train_loss", "-"), ("val_loss", "--")):
            if col in g:
                d = g[["epoch", col]].dropna()
                ax_loss.plot(d["epoch"], d[col], style, label=f"{model} {col.split('_')[0]}")
        if "val_psnr" in g:
            d = g[["epoch", "val_psnr"]].dropna()
            ax_psnr.plot(d["epoch"], d["val_psnr"], label=str(model))
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend(frameon=False, fontsize=6)
    ax_psnr.set_xlabel("epoch")
    ax_psnr.set_ylabel("validation PSNR (dB)")
    ax_psnr.legend(frameon=False, fontsize=6)
    return fig


def fig_generalisation(matrix: pd.DataFrame) -> Figure:
    """Heatmaps model (trained on) x site (tested on) of SR PSNR, SSIM and |BA/TA error|."""
    cols = [
        ("psnr_sr", "PSNR (dB)", "viridis"),
        ("ssim_sr", "SSIM", "viridis"),
        ("ba_ta_abserr_sr", "|BA/TA error|", "viridis_r"),
    ]
    fig = Figure(figsize=(7.5, 2.6), layout="constrained")
    for ax, (col, label, cmap) in zip(fig.subplots(1, 3), cols):
        grid = matrix.pivot(index="model", columns="site", values=col)
        im = ax.imshow(grid.to_numpy(float), cmap=cmap)
        ax.set_xticks(range(grid.shape[1]), grid.columns)
        ax.set_yticks(range(grid.shape[0]), grid.index)
        ax.set_xlabel("tested on")
        ax.set_ylabel("trained on")
        ax.set_title(label)
        for (i, j), v in np.ndenumerate(grid.to_numpy(float)):
            ax.text(j, i, f"{v:.3g}", ha="center", va="center", color="white", fontsize=7)
        fig.colorbar(im, ax=ax, shrink=0.8)
    return fig
