"""``microsr export``: a checkpoint as a bioimage.io model package (deepImageJ, napari)."""

from __future__ import annotations

from pathlib import Path

import typer

from microsr.cli._app import Overwrite, command


@command
def export(checkpoint: Path, out_zip: Path, overwrite: Overwrite = False) -> None:
    """Write a bioimage.io model package (TorchScript, window inside, test tensors, card)."""
    from microsr.inference.export import export_package

    typer.echo(export_package(checkpoint, out_zip, overwrite=overwrite))
