"""Scanco/DICOM, density calibration and registration subcommands (info, convert, register)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from microsr.cli._app import Overwrite, Spacing, command, parse_spacing
from microsr.errors import MicrosrError


@command
def info(
    volume: Path,
    spacing: Spacing = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Shape, dtype, spacing (mm), origin, value range and density calibration."""
    from microsr.calibration import describe_volume, format_info
    from microsr.io import read_volume

    details = describe_volume(read_volume(volume, spacing_mm=parse_spacing(spacing)))
    typer.echo(json.dumps(details, indent=2) if as_json else format_info(details))


@command
def convert(
    in_volume: Path,
    out_volume: Path,
    units: Annotated[str, typer.Option(help="native | mu (1/cm) | hu | mgha (mg HA/cm3)")] = (
        "native"
    ),
    slope: Annotated[float | None, typer.Option(help="your calibration: density slope")] = None,
    intercept: Annotated[float, typer.Option(help="your calibration: density intercept")] = 0.0,
    spacing: Spacing = None,
    overwrite: Overwrite = False,
) -> None:
    """Write a volume in another format (by extension) and unit (an OME-Zarr input streams)."""
    from microsr.calibration import UNITS, with_calibration
    from microsr.io import check_volume_output, write_volume
    from microsr.io.lazy import convert_units, open_volume

    if units not in UNITS:
        raise MicrosrError(f"--units {units!r}: use one of {', '.join(UNITS)}")
    check_volume_output(out_volume, inputs=[in_volume], overwrite=overwrite)
    volume = open_volume(in_volume, spacing_mm=parse_spacing(spacing))  # .zarr: slab by slab
    if slope is not None:
        volume = with_calibration(volume, slope, intercept)
    out = write_volume(convert_units(volume, units), out_volume, overwrite=overwrite)  # type: ignore[arg-type]
    typer.echo(out)


@command
def register(
    lr_volume: Path,
    hr_volume: Path,
    out: Annotated[Path | None, typer.Option(help="write LR resampled onto the HR grid")] = None,
    metric: Annotated[str, typer.Option(help="correlation | mattes")] = "correlation",
    lr_spacing: Spacing = None,
    hr_spacing: Spacing = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    overwrite: Overwrite = False,
) -> None:
    """Rigidly register LR onto HR; report translation, rotation and similarity."""
    from pydantic import ValidationError

    from microsr.io import check_volume_output, read_volume, write_volume
    from microsr.pairing.registration import RegistrationConfig, register_pair, resample_to_hr

    try:
        config = RegistrationConfig(metric=metric)  # type: ignore[arg-type]
    except ValidationError:
        raise MicrosrError(f"--metric {metric!r}: use correlation or mattes") from None
    if out is not None:
        check_volume_output(out, inputs=[lr_volume, hr_volume], overwrite=overwrite)
    lr = read_volume(lr_volume, spacing_mm=parse_spacing(lr_spacing))
    hr = read_volume(hr_volume, spacing_mm=parse_spacing(hr_spacing))
    result = register_pair(lr, hr, config, name=lr_volume.name)
    if out is not None:
        write_volume(resample_to_hr(lr, hr, result), out, overwrite=overwrite)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    typer.echo(
        f"translation  {result.translation_um} um (z, y, x) = "
        f"{result.translation_hr_voxels} HR voxels\n"
        f"rotation     {result.rotation_deg} deg about (z, y, x)\n"
        f"NCC          {result.ncc_before} before -> {result.ncc_after} after"
        + (f"\nwrote        {out}" if out else "")
    )
