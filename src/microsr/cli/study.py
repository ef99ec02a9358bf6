"""Study subcommands: morphometry, study, report."""

from __future__ import annotations
