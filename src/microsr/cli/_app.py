"""The Typer app, shared options and the error handling of every subcommand."""

from __future__ import annotations

import functools
import logging
from contextlib import contextmanager
from typing import Annotated

import typer

from microsr.errors import MicrosrError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Super-resolution of microCT bone scans (LR -> HR-like), with the scores to prove it.",
)
log = logging.getLogger("microsr")

Spacing = Annotated[
    str | None,
    typer.Option(
        help="voxel size in mm: one number (isotropic) or z,y,x; "
        "required for files that store none (TIFF)"
    ),
]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda")]


def parse_spacing(text: str | None) -> float | tuple[float, float, float] | None:
    """``"0.0195"`` -> 0.0195; ``"0.03,0.02,0.02"`` -> (z, y, x)."""
    if text is None:
        return None
    try:
        parts = [float(p) for p in text.replace(" ", "").split(",")]
    except ValueError:
        raise MicrosrError(f"--spacing {text!r}: give a number in mm or z,y,x") from None
    if len(parts) not in (1, 3) or not all(p > 0 for p in parts):
        raise MicrosrError(f"--spacing {text!r}: give one positive number in mm or three (z,y,x)")
    return parts[0] if len(parts) == 1 else tuple(parts)  # type: ignore[return-value]


@contextmanager
def option_errors(name: str | None = None):
    """Turn a pydantic ``ValidationError`` raised while building a config from options into
    one ``MicrosrError`` naming the option (``name``, else ``--`` + the field path)."""
    from pydantic import ValidationError

    try:
        yield
    except ValidationError as exc:
        err = exc.errors()[0]
        label = name or "--" + "-".join(str(p) for p in err["loc"])
        raise MicrosrError(f"{label}: {err['msg']}") from None


def command(fn):
    """Register a subcommand that turns MicrosrError into one message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MicrosrError as exc:
            typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
            raise typer.Exit(2) from None

    return app.command()(wrapper)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
