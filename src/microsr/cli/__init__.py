"""The ``microsr`` command line: thin wrappers over the importable API.

Each module below registers its subcommands on the one Typer ``app``; nothing in the
library imports this package.
"""

from microsr.cli import batch, compare, pipeline, scanco, study  # noqa: F401  (registers commands)
from microsr.cli._app import app, parse_spacing

__all__ = ["app", "parse_spacing"]
