"""``fit-acquisition``: fit the acquisition simulator to a user's LR scan."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from microsr.cli._app import Overwrite, Spacing, command, parse_spacing
from microsr.errors import MicrosrError


@command
def fit_acquisition(
    lr_scan: Path,
    out_json: Path,
    spacing: Spacing = None,
    factor: Annotated[int, typer.Option(help="LR voxel / HR voxel of the protocol to fit")] = 2,
    mask: Annotated[
        Path | None, typer.Option(help="volume of the scan's shape: nonzero = region to use")
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option(
            help="HR volume to simulate candidates on (best: your HR data, at the scan's voxel "
            "size / factor); default: a femur phantom of the scan's field of view"
        ),
    ] = None,
    reference_spacing: Annotated[
        str | None, typer.Option(help="voxel size of --reference in mm, if its file has none")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the candidate simulations")] = 0,
    overwrite: Overwrite = False,
) -> None:
    """Estimate, from an LR scan alone, the simulator settings that make simulated LR scans
    look like it; writes OUT_JSON (an --acquisition file) and a figure OUT_JSON.png."""
    from microsr.io import read_volume
    from microsr.io.atomic import check_output
    from microsr.report.fit_figure import write_fit
    from microsr.simulate.fit import fit_acquisition as fit

    if factor < 1:
        raise MicrosrError(f"--factor {factor}: must be >= 1")
    if out_json.suffix.lower() != ".json":
        raise MicrosrError(f"{out_json}: the output must be a .json file")
    inputs = [p for p in (lr_scan, mask, reference) if p is not None]
    for out in (out_json, out_json.with_suffix(".png")):
        check_output(out, inputs=inputs, overwrite=overwrite)
    scan = read_volume(lr_scan, spacing_mm=parse_spacing(spacing))
    region = None
    if mask is not None:
        region = read_volume(mask, spacing_mm=scan.spacing_mm).array != 0
    ref = None
    if reference is not None:
        ref = read_volume(reference, spacing_mm=parse_spacing(reference_spacing))
    result = fit(scan, factor=factor, reference=ref, mask=region, seed=seed)
    for path in write_fit(result, out_json, scan_path=lr_scan, spacing_mm=scan.spacing_mm):
        typer.echo(path)
