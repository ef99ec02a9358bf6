"""Pooled training across sources, and transfer both ways (issue 22, item 4).

Sources: the LHDL scan cut into z-slabs (one real bone, grey levels real, LR simulated),
the DIDSR vertebral ROIs (real architecture of 5 donors, synthetic intensities: see the
README's "Many bones"), and phantoms (femur + spine). Fixed held-out test sets: 3 of the 8
LHDL slabs, and 2 of the 5 DIDSR donors (all their regions). Each condition trains one
model on the training specimens of its sources (validation from the same sources) and is
scored on *both* test sets:

    lhdl                 -> does a model of one bone transfer to other donors?
    didsr                -> do the donors transfer to the LHDL bone?
    lhdl+didsr           -> does adding DIDSR donors help on held-out LHDL slabs,
                            and LHDL on held-out donors?
    lhdl+didsr+phantom   -> do phantoms add anything?

The sources come in different units (LHDL: uint8 grey values; DIDSR and phantoms: mg
HA/cm3), so every model uses the paper's per-slice min-max normalisation and bone is
segmented with Otsu's threshold of each HR scan. Output: ``OUT/transfer.csv`` and a Markdown
table (SR - LR PSNR and SSIM gains, and the slice-wise |BA/TA error| ratio SR/LR, mean
over test specimens with a 95 % t CI; LHDL slabs are one bone, so their CI is descriptive).

Every model trains for the same number of epochs (``--epochs``; an epoch draws one 64 px
patch from every training slice, so conditions with more sources take more steps), not a
wall time: the machine is shared and a wall-time budget gives different epochs under load.
Test specimens are predicted with each model's trained factors on their own voxel size
(``StudyConfig.keep_factors``, ``predict --keep-factors``), so a model trained at one
physical scale is scored at the other (LHDL: LR 39 -> HR 19.5 um; DIDSR: 102.6 -> 51.3 um);
those cells are transfers across scales as well as across bones. They cross units too: the
min-max output range (:class:`~microsr.data.normalize.MinmaxInverse`, an affine map from
each LR slice's statistics) is fitted on the training sources' units, so a DIDSR model
(mg HA/cm3) writes LHDL slabs (grey 0..255) on a mg HA/cm3-like scale (and an LHDL model
the other way round). PSNR, SSIM and BA/TA (SR thresholded at the HR scan's Otsu threshold)
of those cells then largely measure that intensity mismatch, not the structure.

Usage (about 4 conditions x (training + scoring); see the README for the full run):

    PYTHONPATH=src .venv/bin/python bench/pooled_transfer.py OUT [--epochs 15] [--crop 96]
        [--lhdl ../shared/data/lhdl_3155_D_4_bc] [--didsr ../shared/data/didsr_vertebra_rois]
        [--phantoms 4] [--conditions lhdl,didsr,lhdl+didsr,lhdl+didsr+phantom] [--device cpu]
        [--minutes M (also stop each model after M minutes; default: no wall-time cap)]

A smoke run: ``--epochs 1 --crop 48 --phantoms 1 --conditions lhdl,lhdl+didsr``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import pandas as pd

from microsr.data.manifest import read_manifest, write_manifest
from microsr.data.prepare import PrepareConfig
from microsr.data.splits import Splits, make_splits, write_splits
from microsr.morphometry import MorphometryConfig
from microsr.stats.describe import mean_ci
from microsr.study import StudyConfig, phantom_manifest, run_study, slab_manifest
from microsr.study.demo import demo_train_config
from microsr.study.masks import mask_manifest
from microsr.training.config import TrainConfig

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CONDITIONS = ("lhdl", "didsr", "lhdl+didsr", "lhdl+didsr+phantom")
TESTED = ("lhdl", "didsr")
#: Epochs per model: about 2 minutes of training for the largest condition on an idle 2-core
#: CPU. Estimated, not measured: lhdl+didsr+phantom draws ~550 patches an epoch (4 slabs x 24
#: + 3 regions x 96 + 7 phantoms x 24 slices), at 60-90 patches/s of 64 px (BENCHMARKS.md:
#: 2.3 slices/s of 400 px; the DIDSR folds' 6 epochs). Smaller conditions take less.
EPOCHS = 15


def sources(out: Path, args) -> dict[str, list]:
    """Every source's manifest rows (made once; ``source`` and ``subject`` in ``extra``)."""
    makers = {
        "lhdl": lambda d: slab_manifest(args.lhdl, d, n_slabs=8, spacing_mm=0.0195, site="lhdl"),
        "didsr": lambda d: mask_manifest(args.didsr, d, spacing_mm=0.0513, crop=args.crop),
        "phantom": lambda d: phantom_manifest(d, per_site=args.phantoms, shape=(24, 96, 96)),
    }
    out_rows = {}
    for name, make in makers.items():
        manifest = out / "data" / name / "manifest.csv"
        if not manifest.is_file():
            manifest = make(out / "data" / name)
        out_rows[name] = [
            replace(r, site="all", extra=r.extra | {"source": name,
                                                    "subject": r.extra.get("subject") or r.specimen})
            for r in read_manifest(manifest)
        ]  # fmt: skip
    return out_rows


def fixed_splits(rows: dict[str, list], seed: int) -> dict[str, Splits]:
    """Per source: train/val/test specimen ids (LHDL 4/1/3 slabs, DIDSR by donor, phantoms
    all training but one)."""
    lhdl = make_splits({r.specimen: "lhdl" for r in rows["lhdl"]}, seed=seed,
                       fractions=(0.5, 0.125, 0.375))  # fmt: skip
    didsr = make_splits(
        {r.specimen: "didsr" for r in rows["didsr"]}, seed=seed, fractions=(0.4, 0.2, 0.4),
        subjects={r.specimen: r.extra["subject"] for r in rows["didsr"]},
    )  # fmt: skip
    ids = sorted(r.specimen for r in rows["phantom"])
    phantom = Splits(seed=seed, train=ids[1:], val=ids[:1], test=[])
    return {"lhdl": lhdl, "didsr": didsr, "phantom": phantom}


def train_config(args) -> TrainConfig:
    """The demo's training (default model and loss, 64 px patches, batch 8), ``--epochs``
    epochs; ``--minutes``: also a wall-time cap (default none)."""
    demo = demo_train_config(minutes=1.0, seed=args.seed)
    return demo.model_copy(update={"epochs": args.epochs, "max_minutes": args.minutes})


def run_condition(out: Path, name: str, rows, splits, args) -> pd.DataFrame:
    """Train on ``name``'s sources, score every test specimen of LHDL and DIDSR."""
    used = name.split("+")
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    keep = [r for s in rows for r in rows[s] if s in used or r.specimen in splits[s].test]
    split = {"seed": args.seed, "train": [], "val": [], "test": []}
    for s in rows:
        split["test"] += splits[s].test if s in TESTED else []
        if s in used:
            split["train"] += splits[s].train
            split["val"] += splits[s].val
    write_splits(Splits(**split), folder / "splits.json")
    manifest = write_manifest(keep, folder / "manifest.csv")
    config = StudyConfig(
        prepare=PrepareConfig(roi=400, normalize="minmax", split_file=folder / "splits.json"),
        train=train_config(args),
        morphometry=MorphometryConfig(threshold="otsu"),
        pooled=False,
        features_3d=False,
        keep_factors=True,
        device=args.device,
    )
    run_study(manifest, folder / "study", config, report=False)
    slices = pd.read_csv(folder / "study" / "stats" / "slices.csv", dtype={"specimen": str})
    source = {r.specimen: s for s in rows for r in rows[s]}
    return slices.assign(trained_on=name, tested_on=slices["specimen"].map(source))


def table(slices: pd.DataFrame) -> pd.DataFrame:
    """Per (trained_on, tested_on): mean over test specimens of each gain, with 95 % CI."""
    per = slices.assign(
        psnr_gain=slices["psnr_sr"] - slices["psnr_lr"],
        ssim_gain=slices["ssim_sr"] - slices["ssim_lr"],
        ba_err_lr=(slices["ba_ta_lr"] - slices["ba_ta_hr"]).abs(),
        ba_err_sr=(slices["ba_ta_sr"] - slices["ba_ta_hr"]).abs(),
    )
    keys = ["trained_on", "tested_on", "specimen"]
    per = per.groupby(keys)[["psnr_gain", "ssim_gain", "ba_err_lr", "ba_err_sr"]].mean()
    per["ba_ratio"] = per["ba_err_sr"] / per["ba_err_lr"]
    rows = []
    for (trained, tested), g in per.reset_index().groupby(["trained_on", "tested_on"]):
        row = {"trained_on": trained, "tested_on": tested, "n_specimens": len(g)}
        for col in ("psnr_gain", "ssim_gain", "ba_ratio"):
            ci = mean_ci(g[col])
            row |= {col: ci["mean"], f"{col}_ci_low": ci["ci_low"], f"{col}_ci_high": ci["ci_high"]}
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame) -> str:
    lines = ["| trained on | tested on | n | PSNR gain, dB | SSIM gain | BA/TA err SR/LR |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for _, r in frame.iterrows():
        cells = [f"{r[c]:.3g} [{r[c + '_ci_low']:.3g}, {r[c + '_ci_high']:.3g}]"
                 for c in ("psnr_gain", "ssim_gain", "ba_ratio")]  # fmt: skip
        lines.append(f"| {r['trained_on']} | {r['tested_on']} | {r['n_specimens']} | "
                     + " | ".join(cells) + " |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="epochs per model")
    parser.add_argument("--minutes", type=float, default=None, help="wall-time cap per model")
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--phantoms", type=int, default=4, help="per site (femur, spine)")
    parser.add_argument("--lhdl", type=Path, default=SHARED / "lhdl_3155_D_4_bc")
    parser.add_argument("--didsr", type=Path, default=SHARED / "didsr_vertebra_rois")
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = sources(args.out, args)
    splits = fixed_splits(rows, args.seed)
    (args.out / "splits.json").write_text(
        json.dumps({source: s.to_json() for source, s in splits.items()}, indent=2)
    )
    frames = [run_condition(args.out, c, rows, splits, args) for c in args.conditions.split(",")]
    result = table(pd.concat(frames, ignore_index=True))
    result.to_csv(args.out / "transfer.csv", index=False, float_format="%.6g")
    print(markdown(result))


if __name__ == "__main__":
    main()
