"""Study subcommands: morphometry, study, study-demo, report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from microsr.cli._app import (
    Device,
    Frac,
    Grey,
    Mgha,
    Otsu,
    Spacing,
    Threads,
    command,
    morph_config,
    parse_spacing,
    use_threads,
)
from microsr.errors import MicrosrError

Sigma = Annotated[float, typer.Option(help="Gaussian sigma in in-plane voxels")]
_TA_HELP = (
    "total area: auto (fits the data) | envelope (filled periosteum) | roi (whole field or "
    "--mask) | nonzero (voxels != 0: a VOI exported with zeros outside its contour)"
)
Ta = Annotated[str, typer.Option(help=_TA_HELP)]


@command
def morphometry(
    volume: Path,
    out_dir: Path,
    threshold_mgha: Mgha = None,
    threshold: Grey = None,
    threshold_fraction: Frac = None,
    otsu: Otsu = False,
    sigma: Sigma = 1.2,
    ta: Ta = "auto",
    mask: Annotated[Path | None, typer.Option(help="ROI mask volume (nonzero = inside)")] = None,
    spacing: Spacing = None,
    no_3d: Annotated[bool, typer.Option("--no-3d", help="skip the 3D features")] = False,
) -> None:
    """Slice-wise BA/TA (slices.csv) and 3D morphometry (volume.json) of one volume."""
    import numpy as np

    from microsr.io import read_volume
    from microsr.io.atomic import check_output
    from microsr.morphometry import morphometry_volume, write_morphometry

    config = morph_config(
        threshold_mgha, threshold, threshold_fraction, otsu, sigma_vox=sigma, ta=ta
    )
    check_output(out_dir, inputs=[p for p in (volume, mask) if p], folder=True)
    vol = read_volume(volume, spacing_mm=parse_spacing(spacing))
    roi = (
        None
        if mask is None
        else np.asarray(read_volume(mask, spacing_mm=vol.spacing_mm).array) != 0
    )
    result = morphometry_volume(vol, config, mask=roi, features_3d=not no_3d, name=str(volume))
    typer.echo(write_morphometry(result, out_dir))
    typer.echo(f"TA: {result.info['ta_rule']} ({result.info['ta_reason']})")
    typer.echo(json.dumps(result.features, indent=2))


ConfigFile = Annotated[
    Path | None, typer.Option(help="StudyConfig JSON (as in study.json's 'config')")
]
Minutes = Annotated[float | None, typer.Option(help="training minutes per model (default 1)")]
Epochs = Annotated[int | None, typer.Option(help="training epochs per model")]
Title = Annotated[
    str | None,
    typer.Option(help="the report's title (saved in study.json; default: from the manifest)"),
]
Folds = Annotated[
    int | None,
    typer.Option(
        help="K-fold cross-validation by the manifest's 'subject' column: each fold trains "
        "on the other subjects and tests on its own; per-fold and pooled tables"
    ),
]


@command
def study(
    manifest: Path,
    out_dir: Path,
    config: ConfigFile = None,
    minutes: Minutes = None,
    epochs: Epochs = None,
    threshold_mgha: Mgha = None,
    threshold: Grey = None,
    threshold_fraction: Frac = None,
    otsu: Otsu = False,
    ta: Annotated[str | None, typer.Option(help=_TA_HELP + " (default auto)")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda")] = None,
    folds: Folds = None,
    threads: Threads = None,
    title: Title = None,
) -> None:
    """The whole study: prepare, train per site + pooled, predict, evaluate, morphometry,
    stats, report. Run it again (same options) to resume."""
    from microsr.study import run_study, study_config

    use_threads(threads)
    opts = (threshold_mgha, threshold, threshold_fraction)
    morph = None
    if any(v is not None for v in opts) or otsu or ta is not None:
        morph = morph_config(*opts, otsu, **({"ta": ta} if ta else {}))
    cfg = study_config(config, minutes=minutes, epochs=epochs, device=device, morphometry=morph)
    if folds is not None:
        cfg = cfg.model_copy(update={"folds": folds})
    summary = run_study(manifest, out_dir, cfg, title=title)
    typer.echo(json.dumps(summary, indent=2))


@command
def study_demo(
    out_dir: Path,
    data: Annotated[
        Path | None, typer.Option(help="an HR scan cut into slabs (default: phantoms)")
    ] = None,
    masks: Annotated[
        Path | None,
        typer.Option(
            help="a folder of binary bone masks (e.g. the DIDSR ROIs, subject after the last "
            "'_'): grey HR scans of their real architecture (synthetic intensities), simulated "
            "LR, the masks as morphometry truth, subject-level cross-validation"
        ),
    ] = None,
    crop: Annotated[
        int, typer.Option(help="--masks: central HR cube kept of each mask, voxels")
    ] = 96,
    spacing: Spacing = None,
    minutes: Minutes = None,
    folds: Annotated[
        int | None, typer.Option(help="cross-validation folds by subject (--masks: default 5)")
    ] = None,
    per_site: Annotated[int, typer.Option(help="phantoms per site")] = 8,
    frames: Annotated[
        bool,
        typer.Option(
            "--frames",
            help="the paper's frames experiment: the same bones at 1 and 3 frame averages and "
            "with randomised acquisitions (sites 1frame, 3frames, random: an acquisition x "
            "acquisition matrix)",
        ),
    ] = False,
    device: Device = "auto",
    acquisition: Annotated[
        Path | None,
        typer.Option(
            help="simulate the LR scans with this acquisition file (fit-acquisition; "
            "--frames: the base protocol)"
        ),
    ] = None,
    threads: Threads = None,
    title: Title = None,
) -> None:
    """Study demo: phantom femur + spine sites (or slabs of --data, or --masks), then `study`."""
    from microsr.cli._simulate import acquisition_file
    from microsr.data.manifest import hr_is_density
    from microsr.study import run_study, study_config

    use_threads(threads)
    if masks is not None and (data is not None or frames):
        raise MicrosrError("--masks goes alone: not with --data or --frames")
    if masks is not None and acquisition is not None:
        raise MicrosrError("--acquisition is not supported with --masks yet")
    if masks is not None and folds is None:
        folds = 5
    file = None if acquisition is None else acquisition_file(acquisition, False, None)
    manifest = out_dir / "data" / "manifest.csv"
    if not manifest.is_file():
        manifest = _demo_manifest(out_dir / "data", data, masks, frames, per_site, spacing, crop,
                                  file)  # fmt: skip
    cfg = study_config(
        minutes=minutes, device=device, calibrated=hr_is_density(manifest), acquisition=file
    )
    if folds is not None:
        cfg = cfg.model_copy(update={"folds": folds})
    typer.echo(f"manifest: {manifest}")
    if title is None:
        source = "phantoms" if data is None else f"slabs of {data.name}"
        source = f"grey scans of the masks in {masks.name}" if masks is not None else source
        title = f"microsr study demo: {'frames experiment, ' if frames else ''}{source}"
    summary = run_study(manifest, out_dir / "study", cfg, title=title)
    typer.echo(json.dumps(summary, indent=2))


def _demo_manifest(folder, data, masks, frames, per_site, spacing, crop, file) -> Path:
    from microsr.study import phantom_manifest, slab_manifest
    from microsr.study.demo import frames_manifest
    from microsr.study.masks import mask_manifest

    if masks is not None:
        return mask_manifest(masks, folder, spacing_mm=parse_spacing(spacing), crop=crop)
    if frames:
        return frames_manifest(
            folder, n=per_site, data=data, spacing_mm=parse_spacing(spacing), file=file
        )
    if data is None:
        return phantom_manifest(folder, per_site=per_site, file=file)
    return slab_manifest(data, folder, spacing_mm=parse_spacing(spacing), file=file)


@command
def report(
    study_dir: Path,
    title: Annotated[
        str | None, typer.Option(help="the page's title (default: the study's, study.json)")
    ] = None,
) -> None:
    """Write STUDY_DIR/report/index.html (figures, tables, config, versions) and CSVs."""
    from microsr.report import build_report

    typer.echo(build_report(study_dir, title=title))
