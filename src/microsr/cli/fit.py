"""``fit-acquisition``: fit the acquisition simulator to a user's LR scan."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from microsr.cli._app import Overwrite, Spacing, command, parse_spacing
from microsr.errors import MicrosrError

NO_REFERENCE = (
    "fit-acquisition needs --reference: an HR scan of bone with marrow (your HR data, any slab "
    "of it, at the LR voxel size / --factor). The candidates are simulated on it; fitted on a "
    "synthetic phantom instead, the acquisition made models worse than no fit on scans of "
    "real bone"
)


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
            help="required: your HR data (bone with marrow, at the scan's voxel size / factor), "
            "to simulate candidates on"
        ),
    ] = None,
    reference_spacing: Annotated[
        str | None, typer.Option(help="voxel size of --reference in mm, if its file has none")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the candidate simulations")] = 0,
    strict: Annotated[
        bool,
        typer.Option(
            help="a fit whose quality checks fail (fit.quality) is an error: nothing is written"
        ),
    ] = False,
    overwrite: Overwrite = False,
) -> None:
    """Estimate, from an LR scan and your HR data (--reference), the simulator settings that
    make simulated LR scans look like the scan; writes OUT_JSON (an --acquisition file) and a
    figure OUT_JSON.png. Checks the fit (fit.quality) and warns, naming each statistic the
    fitted simulation does not reproduce (--strict: an error)."""
    from microsr.io import read_volume
    from microsr.io.atomic import check_output
    from microsr.report.fit_figure import write_fit
    from microsr.simulate.fit import fit_acquisition as fit

    if factor < 1:
        raise MicrosrError(f"--factor {factor}: must be >= 1")
    if reference is None:
        raise MicrosrError(NO_REFERENCE)
    if out_json.suffix.lower() != ".json":
        raise MicrosrError(f"{out_json}: the output must be a .json file")
    inputs = [p for p in (lr_scan, mask, reference) if p is not None]
    for out in (out_json, out_json.with_suffix(".png")):
        check_output(out, inputs=inputs, overwrite=overwrite)
    scan = read_volume(lr_scan, spacing_mm=parse_spacing(spacing))
    region = None
    if mask is not None:
        region = read_volume(mask, spacing_mm=scan.spacing_mm).array != 0
    ref = read_volume(reference, spacing_mm=parse_spacing(reference_spacing))
    result = fit(scan, factor=factor, reference=ref, mask=region, seed=seed)
    if strict and result.quality is not None and not result.quality.passed:
        raise MicrosrError(f"{lr_scan}: --strict: {result.quality.message()}")
    for path in write_fit(result, out_json, scan_path=lr_scan, spacing_mm=scan.spacing_mm):
        typer.echo(path)
