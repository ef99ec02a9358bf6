"""Scanco/DICOM, density calibration and registration subcommands (info, convert, register)."""

from __future__ import annotations
