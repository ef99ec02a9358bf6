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
    threads: Threads = None,
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
    summary = run_study(manifest, out_dir, cfg)
    typer.echo(json.dumps(summary, indent=2))


@command
def study_demo(
    out_dir: Path,
    data: Annotated[
        Path | None, typer.Option(help="an HR scan cut into slabs (default: phantoms)")
    ] = None,
    spacing: Spacing = None,
    minutes: Minutes = None,
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
    threads: Threads = None,
) -> None:
    """Study demo: phantom femur + spine sites (or slabs of --data), then `study`."""
    from microsr.data.manifest import hr_is_density
    from microsr.study import phantom_manifest, run_study, slab_manifest, study_config
    from microsr.study.demo import frames_manifest

    use_threads(threads)
    manifest = out_dir / "data" / "manifest.csv"
    if not manifest.is_file():
        if frames:
            manifest = frames_manifest(
                out_dir / "data", n=per_site, data=data, spacing_mm=parse_spacing(spacing)
            )
        elif data is None:
            manifest = phantom_manifest(out_dir / "data", per_site=per_site)
        else:
            manifest = slab_manifest(data, out_dir / "data", spacing_mm=parse_spacing(spacing))
    cfg = study_config(minutes=minutes, device=device, calibrated=hr_is_density(manifest))
    typer.echo(f"manifest: {manifest}")
    typer.echo(json.dumps(run_study(manifest, out_dir / "study", cfg), indent=2))


@command
def report(study_dir: Path) -> None:
    """Write STUDY_DIR/report/index.html (figures, tables, config, versions) and CSVs."""
    from microsr.report import build_report

    typer.echo(build_report(study_dir))
