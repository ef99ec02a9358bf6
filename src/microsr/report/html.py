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
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

from microsr.errors import MicrosrError
from microsr.evaluation.stacks import GRID_NOTE
from microsr.io.atomic import atomic_path
from microsr.report import figures
from microsr.stats.tables import primary_slices_note

log = logging.getLogger(__name__)
MAX_EXAMPLES = 3
CSS = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;font-size:14px}"
    "table{border-collapse:collapse;font-size:12px;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
    "img{max-width:100%}pre{background:#f5f5f5;padding:1em;overflow-x:auto;font-size:11px}"
)


def _read(stats: Path, name: str) -> pd.DataFrame | None:
    path = stats / f"{name}.csv"
    return (
        pd.read_csv(path, dtype={"specimen": str, "site": str, "model": str})
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


def _figures(study: Path, tables: dict, out: Path) -> list[tuple[str, str, Path]]:
    """Draw every figure whose data exist; returns (title, source CSV, PNG path)."""
    made = []
    slices, specimens = tables.get("slices"), tables.get("specimens")
    jobs = []
    if slices is not None:
        jobs.append(
            (
                "A. Example slices",
                "slices",
                "fig_a_examples",
                lambda: figures.fig_examples(_examples(study, slices)),
            )
        )
        jobs.append(
            (
                "C. Bland-Altman of slice-wise BA/TA",
                "slices",
                "fig_c_bland_altman",
                lambda: figures.fig_bland_altman(slices),
            )
        )
    if specimens is not None:
        jobs.append(
            (
                "B. Per-specimen SSIM and PSNR",
                "specimens",
                "fig_b_specimens",
                lambda: figures.fig_specimen_bars(specimens),
            )
        )
    if tables.get("training") is not None:
        jobs.append(
            (
                "Training curves",
                "training",
                "fig_training",
                lambda: figures.fig_training(tables["training"]),
            )
        )
    if tables.get("generalisation") is not None:
        jobs.append(
            (
                "Cross-site (or cross-acquisition) generalisation: model trained on a row, scored on a column",
                "generalisation",
                "fig_generalisation",
                lambda: figures.fig_generalisation(tables["generalisation"]),
            )
        )
    with matplotlib.rc_context(figures.RC):
        for title, source, name, draw in jobs:
            if name == "fig_a_examples" and not _examples(study, slices):
                continue
            png = figures.save(draw(), out, name)[0]
            made.append((title, source, png))
    return made


def _img(png: Path) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(png.stem)}" src="data:image/png;base64,{data}">'


def _table(frame: pd.DataFrame, max_rows: int = 60) -> str:
    shown = frame.head(max_rows)
    more = f"<p>({len(frame) - max_rows} more rows in the CSV)</p>" if len(frame) > max_rows else ""
    return shown.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="") + more


def _page(study: Path, record: dict, tables: dict, figs, problems: list[str]) -> str:
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>microsr study</title>"
        f"<style>{CSS}</style></head><body><h1>microsr study: {html.escape(study.name)}</h1>"
    ]
    parts.append(
        f"<p>Manifest: <code>{html.escape(record.get('manifest', '?'))}</code>. "
        f"{html.escape(primary_slices_note())} {html.escape(GRID_NOTE)}.</p>"
    )
    if problems:
        items = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
        parts.append(f"<h2>Problems</h2><ul>{items}</ul>")
    for title, source, png in figs:
        parts.append(
            f"<h2>{html.escape(title)}</h2>{_img(png)}"
            f"<p>Data: <code>tables/{source}.csv</code>; also "
            f"<code>figures/{png.stem}.pdf</code>.</p>"
        )
    tabled = (
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
        "<h2>Configuration</h2><pre>"
        + html.escape(json.dumps(record.get("config", {}), indent=2))
        + "</pre>"
    )
    parts.append(
        "<h2>Software</h2><pre>"
        + html.escape(json.dumps(record.get("software", {}), indent=2))
        + "</pre>"
    )
    parts.append("</body></html>")
    return "\n".join(parts)


def build_report(study_dir: str | Path) -> Path:
    """Write ``STUDY_DIR/report/`` (see the module docstring); returns ``index.html``.

    Raises
    ------
    MicrosrError
        ``study_dir`` holds no study (no ``study.json``) or no statistics yet.
    """
    study = Path(study_dir)
    if not (study / "study.json").is_file():
        raise MicrosrError(f"{study}: not a microsr study folder (no study.json)")
    stats = study / "stats"
    if not stats.is_dir():
        raise MicrosrError(f"{study}: no statistics yet (stats/ missing); run microsr study")
    record = json.loads((study / "study.json").read_text())
    problems = (
        json.loads((study / "problems.json").read_text())
        if (study / "problems.json").is_file()
        else []
    )
    names = [p.stem for p in sorted(stats.glob("*.csv"))]
    tables = {n: _read(stats, n) for n in names}
    with atomic_path(study / "report", directory=True, replace_folder=True) as tmp:  # ours
        figs = _figures(study, tables, tmp / "figures")
        (tmp / "tables").mkdir()
        for n in names:
            shutil.copyfile(stats / f"{n}.csv", tmp / "tables" / f"{n}.csv")
        (tmp / "index.html").write_text(
            _page(study, record, tables, figs, problems), encoding="utf-8"
        )
    log.info("report written to %s", study / "report" / "index.html")
    return study / "report" / "index.html"
