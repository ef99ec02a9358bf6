"""The ``microsr`` command line: thin wrappers over the importable API.

Each module below registers its subcommands on the one Typer ``app``, in the order they
appear in ``microsr --help`` (pipeline first); nothing in the library imports this package.
"""
# ruff: noqa: I001, F401

from microsr.cli import acquire
from microsr.cli import fit
from microsr.cli import pipeline
from microsr.cli import scanco
from microsr.cli import study
from microsr.cli import compare
from microsr.cli import export
from microsr.cli._app import app, parse_spacing

__all__ = ["app", "parse_spacing"]
