"""Figures (PNG + PDF) and the self-contained HTML report of a study."""

from microsr.report.html import build_report

__all__ = ["build_report"]
