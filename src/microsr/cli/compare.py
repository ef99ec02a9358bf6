"""Model comparison subcommand (compare)."""

from __future__ import annotations
