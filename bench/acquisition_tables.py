"""Tables of bench/fit_validation.sh and bench/finetune.sh (markdown on stdout).

    python bench/acquisition_tables.py fit OUT_DIR PROTOCOL...
    python bench/acquisition_tables.py finetune OUT_DIR

Scores are per HR slice of the test slabs (``evaluate``'s ``slices.csv``, all test slabs
pooled); differences are paired per slice with a 95 % t CI (:mod:`microsr.stats`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from microsr.stats.describe import mean_ci
from microsr.stats.paired import paired_comparison

PSNR_TARGET, SSIM_TARGET = 0.5, 0.01  # |fitted - true| (issue 21)


def slices(out: Path, pattern: str) -> pd.DataFrame:
    """``slices.csv`` of every evaluation folder matching ``pattern``, one frame."""
    found = sorted(out.glob(pattern))
    if not found:
        raise SystemExit(f"no {out}/{pattern}: run the script first")
    return pd.concat([pd.read_csv(p / "slices.csv") for p in found], ignore_index=True)


def _paired(a: pd.Series, b: pd.Series) -> dict:
    return paired_comparison(a.to_numpy(), b.to_numpy())


def _ci(d: dict, digits: int) -> str:
    low, high = d["diff_ci_low"], d["diff_ci_high"]
    return f"{d['mean_diff']:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


def _fitted(path: Path) -> str:
    acq = json.loads(path.read_text())["acquisition"]
    return (
        f"{acq['filter_name']}, {acq['photons']:.3g} ph, ratio {acq['projections_ratio']:.2f}, "
        f"PSF {acq['psf_sigma_bins']:.2f}"
    )


def fit_table(out: Path, names: list[str]) -> str:
    """One row per protocol: true and fitted settings, trilinear, both models, differences."""
    lines = [
        "| protocol (true) | fitted | PSNR tri | PSNR true-model | PSNR fitted-model | "
        "dPSNR fitted - true [95 % CI] | SSIM tri | SSIM true-model | SSIM fitted-model | "
        "dSSIM [95 % CI] | within 0.5 dB / 0.01 |",
        "|" + "---|" * 11,
    ]
    for name in names:
        d = out / name
        true, fitted = slices(d, "eval_true_*"), slices(d, "eval_fitted_*")
        keys = ["specimen", "hr_slice"]
        both = true.merge(fitted, on=keys, suffixes=("_t", "_f"))
        dp, ds = _paired(both.psnr_sr_t, both.psnr_sr_f), _paired(both.ssim_sr_t, both.ssim_sr_f)
        ok = abs(dp["mean_diff"]) <= PSNR_TARGET and abs(ds["mean_diff"]) <= SSIM_TARGET
        lines.append(
            f"| {_fitted(d / 'true.json')} | {_fitted(d / 'fitted.json')} "
            f"| {both.psnr_lr_t.mean():.2f} | {both.psnr_sr_t.mean():.2f} | "
            f"{both.psnr_sr_f.mean():.2f} | {_ci(dp, 2)} | {both.ssim_lr_t.mean():.4f} | "
            f"{both.ssim_sr_t.mean():.4f} | {both.ssim_sr_f.mean():.4f} | {_ci(ds, 4)} | "
            f"{'yes' if ok else 'NO'} |"
        )
    n = len(both)
    lines.append(f"\n{n} HR slices of the test slabs per protocol; differences paired per slice.")
    return "\n".join(lines)


#: finetune.sh's models: (run name, label).
FINETUNE_MODELS = (
    ("none", "not fine-tuned (the LHDL demo's model, default protocol)"),
    ("scratch1", "from scratch, 1 pair"),
    ("ft1", "fine-tuned, 1 pair"),
    ("scratch2", "from scratch, 2 pairs"),
    ("ft2", "fine-tuned, 2 pairs"),
)
FINETUNE_PAIRS = (("ft1", "scratch1"), ("ft1", "none"), ("ft2", "scratch2"), ("ft2", "none"))


def finetune_table(out: Path) -> str:
    """Mean PSNR / SSIM (95 % CI) of each model on the held-out slabs, then paired contrasts."""
    frames = {name: slices(out, f"eval_{name}_*") for name, _ in FINETUNE_MODELS}
    tri = frames["none"]
    lines = ["| model | PSNR dB [95 % CI] | SSIM [95 % CI] |", "|---|---|---|"]
    rows = [("trilinear", tri.psnr_lr, tri.ssim_lr)]
    rows += [(label, frames[n].psnr_sr, frames[n].ssim_sr) for n, label in FINETUNE_MODELS]
    for label, p, s in rows:
        cp, cs = mean_ci(p.to_numpy()), mean_ci(s.to_numpy())
        lines.append(
            f"| {label} | {cp['mean']:.2f} [{cp['ci_low']:.2f}, {cp['ci_high']:.2f}] | "
            f"{cs['mean']:.4f} [{cs['ci_low']:.4f}, {cs['ci_high']:.4f}] |"
        )
    lines += ["", "| contrast (paired per slice) | dPSNR dB [95 % CI] | dSSIM [95 % CI] |",
              "|---|---|---|"]  # fmt: skip
    keys = ["specimen", "hr_slice"]
    for a, b in FINETUNE_PAIRS:
        both = frames[a].merge(frames[b], on=keys, suffixes=("_a", "_b"))
        dp = _paired(both.psnr_sr_b, both.psnr_sr_a)
        ds = _paired(both.ssim_sr_b, both.ssim_sr_a)
        lines.append(f"| {a} - {b} | {_ci(dp, 2)} | {_ci(ds, 4)} |")
    lines.append(f"\n{len(tri)} HR slices of the held-out test slabs.")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if len(argv) >= 3 and argv[0] == "fit":
        print(fit_table(Path(argv[1]), argv[2:]))
    elif len(argv) == 2 and argv[0] == "finetune":
        print(finetune_table(Path(argv[1])))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
