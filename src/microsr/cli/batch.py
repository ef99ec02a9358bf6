"""Batch/scale-out subcommands (reserved for the speed-and-scale work)."""

from __future__ import annotations
