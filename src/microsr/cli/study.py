"""Study subcommands: morphometry, study, study-demo, report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from microsr.cli._app import Device, Spacing, command, parse_spacing
from microsr.errors import MicrosrError


def _morph_config(threshold_mgha, threshold, threshold_fraction, otsu, sigma, ta):
    from microsr.morphometry import MorphometryConfig

    options = (("mgha", threshold_mgha), ("value", threshold), ("fraction", threshold_fraction))
    given = [(k, v) for k, v in options if v is not None] + ([("otsu", None)] if otsu else [])
    if len(given) > 1:
        raise MicrosrError(
            "give one of --threshold-mgha, --threshold, --threshold-fraction, --otsu"
        )
    kind, value = given[0] if given else ("mgha", 500.0)
    try:
        return MorphometryConfig(threshold=kind, threshold_value=value, sigma_vox=sigma, ta=ta)
    except ValueError as exc:
        raise MicrosrError(f"morphometry options: {exc}") from None


Mgha = Annotated[
    float | None, typer.Option(help="threshold in mg HA/cm3, calibrated data (default 500)")
]
Grey = Annotated[float | None, typer.Option("--threshold", help="threshold as a grey value")]
Frac = Annotated[
    float | None, typer.Option(help="threshold as a fraction of the per-slice min-max range")
]
Otsu = Annotated[bool, typer.Option("--otsu", help="Otsu threshold (of the HR scan in a study)")]
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
    from microsr.morphometry import morphometry_volume, write_morphometry

    config = _morph_config(threshold_mgha, threshold, threshold_fraction, otsu, sigma, ta)
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


def _study_config(config_file, minutes, epochs, device, calibrated_default, morph):
    from microsr.study import StudyConfig, demo_config

    if config_file is not None:
        try:
            cfg = StudyConfig.model_validate_json(config_file.read_text())
        except (OSError, ValueError) as exc:
            raise MicrosrError(f"{config_file}: not a study config ({exc})") from None
    else:
        cfg = demo_config(minutes=minutes or 1.0, calibrated=calibrated_default)
        if epochs is not None:
            cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": epochs})})
        if minutes is None and epochs is not None:
            cfg = cfg.model_copy(
                update={"train": cfg.train.model_copy(update={"max_minutes": None})}
            )
    if morph is not None:
        cfg = cfg.model_copy(update={"morphometry": morph})
    return cfg if device is None else cfg.model_copy(update={"device": device})


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
) -> None:
    """The whole study: prepare, train per site + pooled, predict, evaluate, morphometry,
    stats, report. Run it again (same options) to resume."""
    from microsr.study import run_study

    opts = (threshold_mgha, threshold, threshold_fraction)
    morph = None
    if any(v is not None for v in opts) or otsu or ta is not None:
        morph = _morph_config(*opts, otsu, 1.2, ta or "auto")
    cfg = _study_config(config, minutes, epochs, device, True, morph)
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
    device: Device = "auto",
) -> None:
    """Study demo: phantom femur + spine sites (or slabs of --data), then `study`."""
    from microsr.study import phantom_manifest, run_study, slab_manifest

    manifest = out_dir / "data" / "manifest.csv"
    if not manifest.is_file():
        if data is None:
            manifest = phantom_manifest(out_dir / "data", per_site=per_site)
        else:
            manifest = slab_manifest(data, out_dir / "data", spacing_mm=parse_spacing(spacing))
    cfg = _study_config(None, minutes, None, device, data is None, None)
    typer.echo(f"manifest: {manifest}")
    typer.echo(json.dumps(run_study(manifest, out_dir / "study", cfg), indent=2))


@command
def report(study_dir: Path) -> None:
    """Write STUDY_DIR/report/index.html (figures, tables, config, versions) and CSVs."""
    from microsr.report import build_report

    typer.echo(build_report(study_dir))
