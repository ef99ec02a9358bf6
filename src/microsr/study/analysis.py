"""The study's statistics stage: collect every evaluation and write ``stats/*.csv``.

The **primary analysis** scores each test specimen with the model of its own site (as
the paper: femur model on femurs, spine model on spines); a site without its own model
falls back to the pooled one. The generalisation matrix uses every model x site.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import pandas as pd

from microsr.io.atomic import atomic_path
from microsr.stats.tables import (
    add_errors,
    generalisation_matrix,
    run_stats,
    specimen_means,
    truth_errors,
)
from microsr.study.config import POOLED, StudyLayout

log = logging.getLogger(__name__)


@dataclass
class Collected:
    """Everything the evaluations of a study wrote."""

    slices: pd.DataFrame  # slice-wise scores of every (model, specimen)
    features: pd.DataFrame  # 3D features (itk, local thickness, Conn.D, <key>_err vs HR), long
    fidelity: pd.DataFrame  # per (model, specimen): TA rule, threshold, intensity bias
    sweep: pd.DataFrame  # per (model, specimen, threshold factor): |BA/TA error| of LR and SR
    problems: list[str]


def collect(layout: StudyLayout) -> Collected:
    """All slice-wise evaluations and specimen summaries, and the problems recorded."""
    frames, features, fidelity, sweep, problems = [], [], [], [], []
    for model in layout.models():
        folder = layout.model(model) / "evaluation"
        for csv in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
            frame = pd.read_csv(csv, dtype={"specimen": str, "site": str, "model": str})
            frames.append(frame)
            meta = json.loads(csv.with_suffix(".json").read_text())
            problems += meta.get("problems", [])
            base = {k: frame[k].iloc[0] for k in ("model", "site", "specimen")}
            for image, values in meta.get("features_3d", {}).items():
                features.append(base | {"image": image} | values)
            bias = meta.get("intensity_bias", {})
            fidelity.append(
                base | {"ta_rule": meta.get("ta_rule"), "ta_reason": meta.get("ta_reason"),
                        "threshold": meta.get("threshold")}
                | {f"bias_{r}_{i}": v for i, d in bias.items() for r, v in d.items()}
            )  # fmt: skip
            sweep += [base | row for row in meta.get("sweep", [])]
    slices = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return Collected(
        slices, pd.DataFrame(features), pd.DataFrame(fidelity), pd.DataFrame(sweep), problems
    )


def primary(slices: pd.DataFrame) -> pd.DataFrame:
    """Rows where the model is the specimen's own site (pooled where the site has none)."""
    own = slices[slices["model"] == slices["site"]]
    missing = set(slices["site"]) - set(own["site"])
    fallback = slices[(slices["model"] == POOLED) & slices["site"].isin(missing)]
    return pd.concat([own, fallback], ignore_index=True)


def _write(frame: pd.DataFrame, path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def training_curves(layout: StudyLayout) -> pd.DataFrame:
    """Per-epoch ``train_loss``, ``val_loss``, ``val_psnr``, ``val_ssim`` of every model."""
    frames = []
    for model in layout.models():
        csv = layout.run(model) / "logs" / "metrics.csv"
        if csv.is_file():
            m = pd.read_csv(csv).groupby("epoch", as_index=False).mean(numeric_only=True)
            frames.append(m.assign(model=model))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_stats(layout: StudyLayout, problems: list[str]) -> dict:
    """Compute and write every table into ``stats/``; returns a short summary."""
    found = collect(layout)
    slices, features = found.slices, found.features
    problems = problems + found.problems
    layout.stats.mkdir(parents=True, exist_ok=True)
    summary: dict = {"n_evaluations": 0}
    if slices.empty:
        problems.append("no specimen was evaluated: no statistics")
    else:
        tables = run_stats(primary(slices))
        truth = truth_errors(features, tables["slices"])
        if not truth.empty:  # a truth mask (the manifest's truth_path) was given
            tables["truth"] = truth
        for name, frame in tables.items():
            _write(frame, layout.stats / f"{name}.csv")
        every = specimen_means(add_errors(slices))
        _write(every, layout.stats / "all_specimens.csv")
        sites = sorted(slices["site"].unique())
        if len(sites) > 1:
            _write(generalisation_matrix(every), layout.stats / "generalisation.csv")
        else:
            problems.append(
                f"one site only ({sites[0]}): no cross-site generalisation matrix; "
                "give a manifest with two or more sites in its 'site' column"
            )
        summary = {"n_evaluations": len(every), "sites": sites, "models": layout.models()}
    for name, frame in (("features_3d", features), ("fidelity", found.fidelity),
                        ("sweep", found.sweep)):  # fmt: skip
        if not frame.empty:
            _write(frame, layout.stats / f"{name}.csv")
    curves = training_curves(layout)
    if not curves.empty:
        _write(curves, layout.stats / "training.csv")
    with atomic_path(layout.problems) as tmp:
        tmp.write_text(json.dumps(problems, indent=2))
    for p in problems:
        log.warning("%s", p)
    return summary | {"problems": problems}
