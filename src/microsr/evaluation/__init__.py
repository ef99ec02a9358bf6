"""One evaluation path: paired stacks on the HR grid, scored once.

- :mod:`~microsr.evaluation.stacks`: LR, SR and HR on one grid from volume files
  (:func:`volume_stacks`) or arrays; :mod:`~microsr.evaluation.dataset`: from a prepared
  dataset with a model's prediction (:func:`dataset_stacks`);
- :mod:`~microsr.evaluation.scores`: every score (:func:`score_stacks`);
- :mod:`~microsr.evaluation.run`: ``microsr evaluate``'s entry points (volumes, files, a
  dataset's split with a model);
- :mod:`~microsr.evaluation.summary`: the tables, ``summary.json`` and the printed summary.
"""

from microsr.evaluation.run import evaluate_dataset, evaluate_files, evaluate_volumes
from microsr.evaluation.scores import ScoreConfig, SpecimenScores, default_morphometry, score_stacks
from microsr.evaluation.stacks import PairedStacks, array_stacks, volume_stacks
from microsr.evaluation.summary import format_summary, summarize, write_evaluation

__all__ = [
    "PairedStacks",
    "ScoreConfig",
    "SpecimenScores",
    "array_stacks",
    "default_morphometry",
    "evaluate_dataset",
    "evaluate_files",
    "evaluate_volumes",
    "format_summary",
    "score_stacks",
    "summarize",
    "volume_stacks",
    "write_evaluation",
]
