"""``microsr report STUDY_DIR``: one self-contained HTML page plus the CSV of every number.

``STUDY_DIR/report/`` receives ``index.html`` (figures embedded as base64 PNG, tables,
the exact config and software versions), ``figures/`` (PNG + PDF) and ``tables/`` (a copy
of ``STUDY_DIR/stats/*.csv``: each figure is drawn from one of them).
"""

from __future__ import annotations

import base64
import html
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from microsr.errors import MicrosrError
from microsr.evaluation.stacks import GRID_NOTE
from microsr.io.atomic import atomic_path
from microsr.report import bland_altman, figures
from microsr.report.checks import outside_axes
from microsr.report.record import StudyRecord
from microsr.stats.tables import primary_slices_note

log = logging.getLogger(__name__)
CV_NOTE = (
    "Subject-level cross-validation: each fold's model is scored on its own test subjects "
    "only (never trained or validated on them). cv_subjects: per subject, means over its "
    "test slices with 95 % t CIs (descriptive: slices of one bone are not independent); "
    "cv_pooled: over subjects (subject means, n = subjects); cv_folds: per fold. Other "
    "tables pool every fold's primary analysis."
)
MAX_EXAMPLES = 3
CSS = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;font-size:14px}"
    "table{border-collapse:collapse;font-size:12px;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
    "div.t{overflow-x:auto}img{max-width:100%}"
    "pre{background:#f5f5f5;padding:1em;overflow-x:auto;font-size:11px}"
)


def _read(stats: Path, name: str) -> pd.DataFrame | None:
    path = stats / f"{name}.csv"
    return (
        pd.read_csv(path, dtype={"specimen": str, "site": str, "model": str, "subject": str})
        if path.is_file()
        else None
    )


def _examples(study: Path, slices: pd.DataFrame) -> list[tuple[str, dict]]:
    """The first specimen of each site (then further ones), up to ``MAX_EXAMPLES``."""
    firsts = slices.drop_duplicates(["site", "specimen"]).sort_values(["site", "specimen"])
    order = firsts.groupby("site").cumcount()
    out = []
    for _, row in firsts.assign(order=order).sort_values(["order", "site"]).iterrows():
        path = (
            study / "models" / str(row["model"]) / "evaluation" / f"{row['specimen']}_example.npz"
        )
        if path.is_file():
            with np.load(path) as npz:
                out.append((f"{row['specimen']} [{row['model']}]", {k: npz[k] for k in npz.files}))
        if len(out) == MAX_EXAMPLES:
            break
    return out


class FigureJob(NamedTuple):
    """One figure of the report: its section title, source table, file name, caption, drawer."""

    title: str
    source: str
    name: str
    caption: str
    draw: Callable[[], Figure]


CAPTIONS = {
    "examples": "The middle paired slice of the first test specimens of each site, on the "
    "score window: LR interpolated trilinearly onto the HR grid, SR (predicted by the model "
    "in brackets), HR. Yellow: the zoomed centre.",
    "specimens": "Mean over each test specimen's paired slices, with its 95 % CI (t) over "
    "slices; each specimen scored by its own site's model.",
    "bland_altman": bland_altman.CAPTION,
    "training": "Per epoch and model: training loss (mean over the epoch's steps), validation "
    "loss and validation PSNR.",
    "generalisation": "Mean over test specimens of the per-specimen means; colour: SR, "
    "brackets: LR (trilinear) of the same specimens.",
}


def sr_label(record: StudyRecord) -> str:
    """``"SR (<architecture>)"`` from the study's config, else ``"SR"``."""
    return f"SR ({record.model_name})" if record.model_name else "SR"


def figure_jobs(study: Path, tables: dict, record: StudyRecord) -> list[FigureJob]:
    """Every figure whose data exist, in section order A, B, C, D, E."""
    slices, specimens = tables.get("slices"), tables.get("specimens")
    training, matrix = tables.get("training"), tables.get("generalisation")
    examples = _examples(study, slices) if slices is not None else []
    jobs = [
        ("A. Example slices", "slices", "fig_a_examples", "examples",
         bool(examples), lambda: figures.fig_examples(examples, sr_label(record))),
        ("B. Per-specimen SSIM and PSNR", "specimens", "fig_b_specimens", "specimens",
         specimens is not None, lambda: figures.fig_specimen_bars(specimens)),
        ("C. Bland-Altman of slice-wise BA/TA", "slices", "fig_c_bland_altman", "bland_altman",
         slices is not None, lambda: figures.fig_bland_altman(slices)),
        ("D. Training curves", "training", "fig_d_training", "training",
         training is not None, lambda: figures.fig_training(training)),
        ("E. Cross-site (or cross-acquisition) generalisation: model trained on a row, "
         "scored on a column", "generalisation", "fig_e_generalisation", "generalisation",
         matrix is not None, lambda: figures.fig_generalisation(matrix)),
    ]  # fmt: skip
    return [
        FigureJob(title, source, name, CAPTIONS[key], draw)
        for title, source, name, key, present, draw in jobs
        if present
    ]


def _figures(jobs: list[FigureJob], out: Path) -> list[tuple[FigureJob, Path]]:
    """Draw and save every figure; returns each job with its PNG."""
    made = []
    with matplotlib.rc_context(figures.RC):
        for job in jobs:
            fig = job.draw()
            for problem in outside_axes(fig):  # a figure that hides data: say so
                log.warning("%s: data outside the axes: %s", job.name, problem)
            made.append((job, figures.save(fig, out, job.name)[0]))
    return made


def report_title(record: StudyRecord, title: str | None = None) -> str:
    """``title``, else the study's own (``study.json``'s ``title``), else from its manifest."""
    title = title or record.title
    if title:
        return str(title)
    manifest = Path(record.manifest or "study")
    name = (
        manifest.stem if manifest.stem != "manifest" else f"{manifest.parent.name}/{manifest.name}"
    )
    return f"microsr study: {name}"


def _summary(tables: dict) -> str:
    """One line: sites, test specimens, slices of the primary analysis."""
    slices = tables.get("slices")
    if slices is None or slices.empty:
        return ""
    sites = ", ".join(sorted(slices["site"].astype(str).unique())) if "site" in slices else "?"
    return (
        f"Sites: {sites}; {slices['specimen'].nunique()} test specimens, "
        f"{len(slices)} paired slices."
    )


def _img(png: Path) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(png.stem)}" src="data:image/png;base64,{data}">'


def _table(frame: pd.DataFrame, max_rows: int = 60) -> str:
    shown = frame.head(max_rows)
    more = f"<p>({len(frame) - max_rows} more rows in the CSV)</p>" if len(frame) > max_rows else ""
    table = shown.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="")
    return f"<div class='t'>{table}</div>{more}"


def _page(title: str, record: StudyRecord, tables: dict, figs, problems: list[str]) -> str:
    head = html.escape(title)
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{head}</title>"
        f"<style>{CSS}</style></head><body><h1>{head}</h1>"
    ]
    parts.append(
        f"<p>Manifest: <code>{html.escape(record.manifest or '?')}</code>. "
        f"{html.escape(_summary(tables))}</p>"
        f"<p>{html.escape(primary_slices_note())} {html.escape(GRID_NOTE)}.</p>"
    )
    if problems:
        items = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
        parts.append(f"<h2>Problems</h2><ul>{items}</ul>")
    for job, png in figs:
        parts.append(
            f"<h2>{html.escape(job.title)}</h2>{_img(png)}"
            f"<p>{html.escape(job.caption)} Data: <code>tables/{job.source}.csv</code>; "
            f"also <code>figures/{png.stem}.pdf</code>.</p>"
        )
    if record.folds:
        parts.append(f"<p>{html.escape(CV_NOTE)}</p>")
    tabled = (
        "cv_pooled",
        "cv_subjects",
        "cv_folds",
        "cv_truth",
        "truth",
        "comparisons",
        "bland_altman",
        "specimens",
        "fidelity",
        "sweep",
        "generalisation",
        "features_3d",
    )  # fidelity: intensity bias + BA/TA error per specimen
    for name in tabled:
        if tables.get(name) is not None:
            parts.append(f"<h2>Table: {name}</h2>{_table(tables[name])}")
    parts.append(
        "<h2>Configuration</h2><pre>" + html.escape(json.dumps(record.config, indent=2)) + "</pre>"
    )
    parts.append(
        "<h2>Software</h2><pre>" + html.escape(json.dumps(record.software, indent=2)) + "</pre>"
    )
    parts.append("</body></html>")
    return "\n".join(parts)


def load_study(study: Path) -> tuple[StudyRecord, list[str], dict[str, pd.DataFrame]]:
    """``study.json``, ``problems.json`` and every ``stats/*.csv`` (by name) of a study.

    Raises
    ------
    MicrosrError
        ``study`` holds no study (no ``study.json``) or no statistics yet.
    """
    if not (study / "study.json").is_file():
        raise MicrosrError(f"{study}: not a microsr study folder (no study.json)")
    stats = study / "stats"
    if not stats.is_dir():
        raise MicrosrError(f"{study}: no statistics yet (stats/ missing); run microsr study")
    record = StudyRecord.read(study / "study.json")
    problems = (
        json.loads((study / "problems.json").read_text())
        if (study / "problems.json").is_file()
        else []
    )
    tables = {p.stem: _read(stats, p.stem) for p in sorted(stats.glob("*.csv"))}
    return record, problems, tables


def build_report(study_dir: str | Path, *, title: str | None = None) -> Path:
    """Write ``STUDY_DIR/report/`` (see the module docstring); returns ``index.html``.

    Parameters
    ----------
    study_dir
        A study folder (``microsr study``).
    title
        The page's title; default: the study's (``study.json``), else from its manifest.

    Raises
    ------
    MicrosrError
        ``study_dir`` holds no study (no ``study.json``) or no statistics yet.
    """
    study = Path(study_dir)
    record, problems, tables = load_study(study)
    with atomic_path(study / "report", directory=True, replace_folder=True) as tmp:  # ours
        figs = _figures(figure_jobs(study, tables, record), tmp / "figures")
        (tmp / "tables").mkdir()
        for n in tables:
            shutil.copyfile(study / "stats" / f"{n}.csv", tmp / "tables" / f"{n}.csv")
        page = _page(report_title(record, title), record, tables, figs, problems)
        (tmp / "index.html").write_text(page, encoding="utf-8")
    log.info("report written to %s", study / "report" / "index.html")
    return study / "report" / "index.html"
