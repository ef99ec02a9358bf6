"""Output of ``microsr fit-acquisition``: the acquisition file (JSON) and its figure (PNG).

The JSON (an acquisition file: :mod:`microsr.simulate.acquisition_file`) holds the fitted
:class:`~microsr.simulate.AcquisitionConfig` (``acquisition``), rough standard deviations
(``uncertainty``: photons relative, ``psf_sigma_bins`` and ``projections_ratio`` absolute,
the consistent ``filters``)
and the fit's record (``fit``: every statistic on the scan, on the fitted simulation and
their residual, the quality checks, the intensity maps, notes, warnings and the candidates
tried). The PNG beside it shows the NPS and the in-plane edge profile of the scan against
the fit, and names the failed quality checks in its title.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from microsr.io.atomic import atomic_path
from microsr.simulate.acquisition_file import ACQUISITION_FORMAT, ACQUISITION_VERSION
from microsr.simulate.fit import AcquisitionFit
from microsr.simulate.fit_search import other_filters
from microsr.simulate.fit_stats import EDGE_OFFSETS


def fit_record(fit: AcquisitionFit, *, scan_path: str, spacing_mm) -> dict:
    """The JSON-ready acquisition file content."""
    record = {
        "format": ACQUISITION_FORMAT,
        "version": ACQUISITION_VERSION,
        "acquisition": fit.acquisition.model_dump(mode="json"),
        "uncertainty": fit.uncertainty,
        "fit": {
            "scan": str(scan_path),
            "spacing_mm": [float(s) for s in spacing_mm],
            "reference": fit.reference,
            "statistics": fit.statistics(),
            "statistics_unavailable": fit.unavailable(),
            "intensity": fit.intensity,
            "filter_nps_distance": fit.templates["distance"],
            "filter_nps_distance_simulated": fit.templates.get("distance_simulated"),
            "filter_edge_width_no_psf_voxels": fit.templates.get("edge_widths"),
            "nps_frequency_cycles_per_voxel": [float(f) for f in fit.scan.nps_freq],
            "nps_patch_voxels": fit.scan.patch,
            "nps_patches": fit.scan.n_patches,
            "edges": fit.scan.n_edges,
            "views": None if fit.views is None else fit.views.as_dict(),
            "noise_floor": fit.floor,
            "psf_range": fit.psf_range,
            "filter_set": fit.filter_set,
            "quality": None if fit.quality is None else fit.quality.model_dump(mode="json"),
            "notes": fit.notes,
            "warnings": fit.warnings,
            "candidates": fit.trace,
        },
    }
    return _finite(record)


def _finite(value):
    """NaN / Inf -> None, numpy scalars -> Python numbers (strict JSON)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def fit_figure(fit: AcquisitionFit) -> Figure:
    """NPS (scan, fit, every filter's template) and in-plane edge profiles, scan vs fit."""
    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    ax_nps, ax_edge = fig.subplots(1, 2)
    freq = fit.scan.nps_freq
    for name, template in fit.templates["templates"].items():
        ax_nps.plot(freq, template, lw=0.8, ls=":", label=f"template {name}")
    ax_nps.plot(freq, fit.scan.noise_shape, "k-o", ms=3, label="scan")
    ax_nps.plot(freq, fit.fitted.noise_shape, "r-s", ms=3, label="fitted simulation")
    texture = f"noise texture: {fit.acquisition.filter_name}"
    if others := other_filters(fit.filter_set):
        texture += f" (or {', '.join(others)})"
    ax_nps.set(xlabel="frequency (cycles/voxel)", ylabel="NPS / mean", title=texture)
    ax_nps.legend(fontsize=7)
    for stats, style, label in ((fit.scan, "k-", "scan"), (fit.fitted, "r--", "fit")):
        if stats.edge_inplane is not None:
            width = f"{stats.width_inplane:.2f}" if stats.width_inplane else "?"
            ax_edge.plot(EDGE_OFFSETS, stats.edge_inplane, style, label=f"{label} (sigma {width})")
    psf = f"edge spread: psf {fit.acquisition.psf_sigma_bins:.2f} bins"
    if fit.psf_range:
        psf += f" (range {fit.psf_range['low']:.2f}-{fit.psf_range['high']:.2f})"
    ax_edge.set(xlabel="distance across the edge (voxels)", ylabel="(value - marrow) / contrast",
                title=psf)  # fmt: skip
    ax_edge.legend(fontsize=8)
    floor = ""
    if fit.floor:
        floor = (
            f"; floor {fit.floor['scale_over_reference']:.2f}x the reference's, "
            f"{100 * fit.floor['share_of_slice_difference_noise']:.0f} % of the scan's"
        )
    verdict = ""
    if fit.quality is not None:
        failed = fit.quality.failed()
        verdict = "\nquality: " + (f"FAILED ({', '.join(failed)})" if failed else "all checks pass")
    fig.suptitle(
        f"photons {fit.acquisition.photons:.4g}; slice-to-slice noise / scale: scan "
        f"{fit.scan.relative_photon_noise:.3g}, fit {fit.fitted.relative_photon_noise:.3g}"
        + floor
        + verdict,
        fontsize=9,
        color="firebrick" if fit.quality is not None and not fit.quality.passed else "black",
    )
    fig.tight_layout()
    return fig


def write_fit(fit: AcquisitionFit, out_json: str | Path, *, scan_path, spacing_mm) -> list[Path]:
    """Write ``out_json`` and the figure beside it (same name, ``.png``), atomically: both or
    neither. Returns both paths."""
    out_json = Path(out_json)
    out_png = out_json.with_suffix(".png")
    text = json.dumps(fit_record(fit, scan_path=scan_path, spacing_mm=spacing_mm), indent=1,
                      allow_nan=False)  # fmt: skip
    figure = fit_figure(fit)
    with atomic_path(out_json) as tmp_json, atomic_path(out_png) as tmp_png:
        figure.savefig(tmp_png, dpi=120, format="png")
        tmp_json.write_text(text + "\n")
    return [out_json, out_png]
