"""Publication figures of a study (matplotlib, object API: no pyplot state, Agg canvas).

Every figure is saved as PNG (200 dpi) and PDF (vector) by :func:`save`. Each shows all of
its data: every point, bar, error bar and line lies inside its axes (tested), and LR is
labelled as what the evaluation computes, the LR scan interpolated trilinearly onto the HR
grid (:mod:`microsr.evaluation.stacks`). The Bland-Altman figure is in
:mod:`microsr.report.bland_altman`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from microsr.report.bland_altman import COLORS, LABELS, fig_bland_altman

RC = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8}

__all__ = ["fig_bland_altman", "fig_examples", "fig_generalisation", "fig_specimen_bars"]
__all__ += ["fig_training", "save"]


def save(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    """Write ``name.png`` and ``name.pdf`` into ``out_dir``; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=200, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    return paths


def zoom_box(shape: tuple[int, int]) -> tuple[int, int, int]:
    """``(y0, x0, size)`` of the zoomed centre square of an ``(H, W)`` image (a quarter wide)."""
    h, w = shape
    size = min(max(min(h, w) // 4, 2), h, w)
    return (h - size) // 2, (w - size) // 2, size


def _slice_and_zoom(ax_full, ax_zoom, img: np.ndarray, title: str) -> None:
    """The whole slice with the zoom box in yellow, and below it the box alone."""
    gray = {"cmap": "gray", "vmin": 0, "vmax": 1, "interpolation": "nearest"}
    ax_full.imshow(img, **gray)
    ax_full.set_title(title)
    y0, x0, size = zoom_box(img.shape)
    box = Rectangle((x0 - 0.5, y0 - 0.5), size, size, fill=False, edgecolor="yellow", lw=0.8)
    ax_full.add_patch(box)
    extent = (x0 - 0.5, x0 + size - 0.5, y0 + size - 0.5, y0 - 0.5)  # pixel coordinates
    ax_zoom.imshow(img[y0 : y0 + size, x0 : x0 + size], extent=extent, **gray)
    ax_zoom.set_title("centre (yellow box)", fontsize=6)
    for ax in (ax_full, ax_zoom):
        ax.set_xticks([])
        ax.set_yticks([])
    for spine in ax_zoom.spines.values():
        spine.set_edgecolor("yellow")


def fig_examples(examples: list[tuple[str, dict]], sr_label: str = "SR") -> Figure:
    """(A) LR (trilinear) / SR / HR slices, whole and their zoomed centre; PSNR/SSIM in titles.

    The zoom is a row of its own (not an inset), so no part of a slice is covered.

    Parameters
    ----------
    examples
        ``(name, npz)`` pairs: ``lr, sr, hr`` ``(H, W)`` images on ``[0, 1]``, ``hr_slice``
        and ``scores`` (PSNR LR, PSNR SR in dB, SSIM LR, SSIM SR), as
        :func:`microsr.study.evaluate.save_example` writes them.
    sr_label
        How SR is titled, e.g. ``"SR (unet_residual)"``.
    """
    n = len(examples)
    fig = Figure(figsize=(6.5, 4.2 * n), layout="constrained")
    axes = fig.subplots(2 * n, 3, squeeze=False, height_ratios=[1.25, 1] * n)
    for k, (sid, ex) in enumerate(examples):
        psnr_lr, psnr_sr, ssim_lr, ssim_sr = (float(v) for v in ex["scores"])
        titles = {
            "lr": f"{sid} {LABELS['lr']}\nPSNR {psnr_lr:.2f} dB, SSIM {ssim_lr:.3f}",
            "sr": f"{sid} {sr_label}\nPSNR {psnr_sr:.2f} dB, SSIM {ssim_sr:.3f}",
            "hr": f"HR (reference)\nslice {int(ex['hr_slice'])}",
        }
        for col, key in enumerate(("lr", "sr", "hr")):
            img = np.asarray(ex[key], np.float32)
            _slice_and_zoom(axes[2 * k, col], axes[2 * k + 1, col], img, titles[key])
    return fig


def fig_specimen_bars(per_specimen: pd.DataFrame) -> Figure:
    """(B) Per-specimen SSIM and PSNR (dB) of LR vs HR and SR vs HR, with 95 % CIs over slices.

    Parameters
    ----------
    per_specimen
        One row per specimen: ``specimen``, ``{ssim,psnr}_{lr,sr}`` and their ``_ci_low`` /
        ``_ci_high`` (a missing CI draws no error bar).
    """
    fig = Figure(figsize=(6.5, 2.8), layout="constrained")
    x = np.arange(len(per_specimen))
    for ax, metric, unit in zip(fig.subplots(1, 2), ("ssim", "psnr"), ("", " (dB)")):
        for i, key in enumerate(("lr", "sr")):
            col = f"{metric}_{key}"
            mean = per_specimen[col].to_numpy(float)
            err = np.vstack(
                [mean - per_specimen[f"{col}_ci_low"], per_specimen[f"{col}_ci_high"] - mean]
            )
            ax.bar(x + (i - 0.5) * 0.4, mean, 0.4, yerr=np.nan_to_num(err), capsize=2,
                   color=COLORS[key], label=f"{LABELS[key]} vs HR", error_kw={"lw": 0.8})  # fmt: skip
        ax.set_xticks(x, per_specimen["specimen"], rotation=45, ha="right")
        ax.set_ylabel(metric.upper() + unit)
        ax.set_title(f"{metric.upper()}, mean and 95 % CI over slices")
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=2, frameon=False)
    return fig


def fig_training(curves: pd.DataFrame) -> Figure:
    """(D) Training and validation loss, and validation PSNR (dB), per epoch and model.

    Every epoch is a marker, so a one-epoch run still shows its point; a model has one
    colour in both panels (solid: training, dashed: validation).
    """
    fig = Figure(figsize=(6.5, 2.4), layout="constrained")
    ax_loss, ax_psnr = fig.subplots(1, 2)
    for i, (model, g) in enumerate(curves.groupby("model", sort=True)):
        color = f"C{i % 10}"  # one colour per model in both panels
        for col, style in (("train_loss", "o-"), ("val_loss", "s--")):
            if col in g:
                d = g[["epoch", col]].dropna()
                ax_loss.plot(d["epoch"], d[col], style, ms=3, color=color,
                             label=f"{model} {col.split('_')[0]}")  # fmt: skip
        if "val_psnr" in g:
            d = g[["epoch", "val_psnr"]].dropna()
            ax_psnr.plot(d["epoch"], d["val_psnr"], "o-", ms=3, color=color, label=str(model))
    for ax in (ax_loss, ax_psnr):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend(frameon=False, fontsize=6)
    ax_psnr.set_xlabel("epoch")
    ax_psnr.set_ylabel("validation PSNR (dB)")
    ax_psnr.legend(frameon=False, fontsize=6)
    return fig


def _cell_text(ax, grid: pd.DataFrame, lr: pd.DataFrame | None, im) -> None:
    """SR value (and LR's in brackets) in each cell, black on light colours, white on dark."""
    for (i, j), v in np.ndenumerate(grid.to_numpy(float)):
        text = "n/a" if np.isnan(v) else f"{v:.3g}"
        if lr is not None and np.isfinite(lr.iat[i, j]):
            text += f"\n(LR {lr.iat[i, j]:.3g})"
        rgb = im.cmap(im.norm(v))[:3] if np.isfinite(v) else (1.0, 1.0, 1.0)
        light = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 0.5
        ax.text(j, i, text, ha="center", va="center", color="black" if light else "white",
                fontsize=6)  # fmt: skip


def fig_generalisation(matrix: pd.DataFrame) -> Figure:
    """(E) Model (trained on) x site (tested on): SR PSNR (dB), SSIM and |BA/TA error|.

    Colours are SR's; each cell also prints LR's value (same specimens) in brackets; a cell
    without a value says ``n/a``.
    """
    cols = [
        ("psnr", "SR PSNR (dB)", "viridis"),
        ("ssim", "SR SSIM", "viridis"),
        ("ba_ta_abserr", "SR |BA/TA error|", "viridis_r"),
    ]
    n_models, n_sites = matrix["model"].nunique(), matrix["site"].nunique()
    fig = Figure(figsize=(7.5, 1.2 + 0.45 * n_models + 0.2 * n_sites), layout="constrained")
    for ax, (col, label, cmap) in zip(fig.subplots(1, 3), cols):
        if f"{col}_sr" not in matrix:
            ax.set_axis_off()
            continue
        grid = matrix.pivot(index="model", columns="site", values=f"{col}_sr")
        lr = (
            matrix.pivot(index="model", columns="site", values=f"{col}_lr").reindex(
                index=grid.index, columns=grid.columns
            )
            if f"{col}_lr" in matrix
            else None
        )
        values = grid.to_numpy(float)
        finite = values[np.isfinite(values)]
        norm = Normalize(*(finite.min(), finite.max()) if finite.size else (0.0, 1.0))
        im = ax.imshow(values, cmap=cmap, norm=norm)
        ax.set_xticks(range(grid.shape[1]), grid.columns)
        ax.set_yticks(range(grid.shape[0]), grid.index)
        ax.set_xlabel("tested on")
        ax.set_ylabel("trained on")
        ax.set_title(label)
        _cell_text(ax, grid, lr, im)
        fig.colorbar(im, ax=ax, shrink=0.8)
    return fig
