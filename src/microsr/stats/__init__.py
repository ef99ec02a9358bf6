"""Statistics of the study: CIs, paired tests, Bland-Altman, generalisation matrix."""

from microsr.stats.agreement import bland_altman
from microsr.stats.describe import ALPHA, mean_ci
from microsr.stats.paired import paired_comparison
from microsr.stats.tables import (
    COMPARED,
    add_errors,
    agreement,
    candidate_table,
    comparisons,
    generalisation_matrix,
    run_stats,
    specimen_means,
)

__all__ = [
    "ALPHA",
    "COMPARED",
    "add_errors",
    "agreement",
    "bland_altman",
    "candidate_table",
    "comparisons",
    "generalisation_matrix",
    "mean_ci",
    "paired_comparison",
    "run_stats",
    "specimen_means",
]
