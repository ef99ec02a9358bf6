"""Model comparison subcommand (compare)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from microsr.cli._app import (
    Device,
    Spacing,
    Threads,
    command,
    option_errors,
    parse_spacing,
    use_threads,
)
from microsr.errors import MicrosrError


@command
def compare(
    out_dir: Path,
    data: Annotated[
        Path | None, typer.Option(help="HR volume cut into z-slabs (default: phantoms)")
    ] = None,
    spacing: Spacing = None,
    dataset: Annotated[
        Path | None, typer.Option(help="an already prepared dataset instead of simulating")
    ] = None,
    specimens: Annotated[int, typer.Option(help="phantoms or slabs to simulate")] = 10,
    minutes: Annotated[float, typer.Option(help="training wall time per candidate")] = 2.0,
    epochs: Annotated[int, typer.Option(help="epoch cap per candidate")] = 10_000,
    candidates: Annotated[
        str | None, typer.Option(help="comma-separated subset of the default candidates")
    ] = None,
    also_test: Annotated[
        list[Path] | None,
        typer.Option(
            help="another prepared dataset (e.g. another acquisition protocol) to score every "
            "candidate on as well, without retraining; repeatable"
        ),
    ] = None,
    tta: Annotated[bool, typer.Option(help="score with 8-fold flip/rot90 averaging")] = False,
    seed: int = 0,
    device: Device = "auto",
    acquisition: Annotated[
        Path | None,
        typer.Option(help="simulate the LR scans with this acquisition file (fit-acquisition)"),
    ] = None,
    threads: Threads = None,
) -> None:
    """Train each candidate model with the same budget; table of scores on test specimens."""
    from microsr.cli._simulate import acquisition_file
    from microsr.compare import DEFAULT_CANDIDATES, CompareConfig, make_compare_dataset, run_compare
    from microsr.compare.candidates import REFERENCE

    use_threads(threads)
    known = {c.name: c for c in DEFAULT_CANDIDATES}
    chosen = tuple(known) if candidates is None else tuple(candidates.split(","))
    unknown = [c for c in chosen if c not in known]
    if unknown:
        raise MicrosrError(f"--candidates: unknown {unknown}; choose from {list(known)}")
    with option_errors("compare options"):
        cfg = CompareConfig(
            candidates=tuple(known[c] for c in chosen),
            # the paper's model is the reference when chosen, else the first candidate
            reference=REFERENCE if REFERENCE in chosen else chosen[0],
            minutes=minutes,
            epochs=epochs,
            seed=seed,
            tta=tta,
            device=device,
        )
    if dataset is not None and acquisition is not None:
        raise MicrosrError("--acquisition simulates a new dataset: leave out --dataset")
    if dataset is None:
        file = None if acquisition is None else acquisition_file(acquisition, False, None)
        dataset = make_compare_dataset(
            out_dir, data=data, spacing_mm=parse_spacing(spacing), n_specimens=specimens,
            seed=seed, acquisition=file,
        )  # fmt: skip
    result = run_compare(dataset, out_dir, cfg, also_test=also_test or (), progress=False)
    typer.echo(result.markdown)
    typer.echo(f"\ntables: {out_dir / 'table.md'}  {out_dir / 'table.csv'}")
    for other in also_test or ():
        typer.echo(f"on {other}: {out_dir / 'cross' / other.name / 'table.md'}")
