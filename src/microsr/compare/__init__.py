"""``microsr compare``: train candidate models on one split with one budget, score them fairly.

:mod:`~microsr.compare.candidates` lists what is compared, :mod:`~microsr.compare.scoring`
scores each model (and bilinear) per test slice, :mod:`~microsr.compare.table` turns the
scores into means, 95% CIs and paired tests, :mod:`~microsr.compare.run` ties them together.
"""

from microsr.compare.candidates import DEFAULT_CANDIDATES, Candidate, CompareConfig
from microsr.compare.run import make_compare_dataset, run_compare
from microsr.compare.table import format_table, summary_table

__all__ = [
    "DEFAULT_CANDIDATES",
    "Candidate",
    "CompareConfig",
    "format_table",
    "make_compare_dataset",
    "run_compare",
    "summary_table",
]
