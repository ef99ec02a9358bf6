"""``microsr evaluate``'s entry points: score volumes, volume files or a dataset's split.

Each returns :class:`~microsr.evaluation.scores.SpecimenScores`; the tables and the printed
summary are :mod:`microsr.evaluation.summary`'s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from microsr.data.prepare import load_dataset_info
from microsr.data.records import DatasetInfo
from microsr.errors import InputFileError, MicrosrError
from microsr.evaluation.dataset import dataset_stacks
from microsr.evaluation.scores import (
    ScoreConfig,
    SpecimenScores,
    dataset_scoring,
    default_morphometry,
    score_stacks,
)
from microsr.evaluation.stacks import stacks_source, volume_stacks
from microsr.inference.checkpoint import LoadedModel
from microsr.io.lazy import open_volume
from microsr.volume import Volume, is_density

SPLITS = ("train", "val", "test")


def evaluate_volumes(
    hr: Volume,
    lr: Volume,
    sr: Volume | None = None,
    *,
    name: str = "volume",
    config: ScoreConfig | None = None,
    mask: np.ndarray | None = None,
    truth: np.ndarray | None = None,
    progress: bool = True,
) -> SpecimenScores:
    """Scores of LR (interpolated) and optionally SR against HR, on every paired HR slice.

    Without ``config``: the default scores, bone at 500 mg HA/cm3 when HR is calibrated,
    else at Otsu's threshold of HR. ``truth``: a ``(Z, Y, X)`` bool bone mask on the HR
    grid; LR, SR and HR morphometry are then also scored against it (``ba_ta_truth``,
    ``<feature>_truth_err``). ``progress``: every pass reports progress (a bar on a
    terminal, log lines otherwise).
    """
    config = config or ScoreConfig(morphometry=default_morphometry(is_density(hr.calibration)))
    stacks = volume_stacks(hr, lr, sr, name=name, truth=truth)
    return score_stacks(stacks, config, mask=mask, progress=progress)


def evaluate_files(
    hr: str | Path,
    lr: str | Path,
    sr: str | Path | None = None,
    *,
    spacing_mm: float | tuple[float, float, float] | None = None,
    config: ScoreConfig | None = None,
    default_threshold: bool = True,
    truth: str | Path | None = None,
    progress: bool = True,
) -> list[SpecimenScores]:
    """Read and score three volume files (``microsr evaluate --hr --lr --sr [--truth]``).

    ``default_threshold``: segment bone at 500 mg HA/cm3 when HR is calibrated, else with
    Otsu's threshold of HR (instead of ``config``'s morphometry threshold). ``truth``: a
    binary bone mask on the HR grid (:func:`read_truth`).
    """
    # streamable files (OME-Zarr, TIFF, uncompressed MetaImage/NIfTI: those predict streams)
    # stay on disk: the scores read them slab by slab (stacks.read)
    vols = [
        open_volume(p, spacing_mm=spacing_mm, any_format=True) if p else None for p in (hr, lr, sr)
    ]
    config = config or ScoreConfig()
    if default_threshold:
        morph = default_morphometry(is_density(vols[0].calibration))
        config = config.model_copy(update={"morphometry": morph})
    mask = read_truth(truth, vols[0]) if truth else None
    return [
        evaluate_volumes(
            *vols, name=stacks_source(lr), config=config, truth=mask, progress=progress
        )
    ]


def read_truth(path: str | Path, hr: Volume) -> np.ndarray:
    """A binary truth mask (0/1 or 0/255) on ``hr``'s grid, bool ``(Z, Y, X)``.

    Raises
    ------
    InputFileError
        Unreadable, not binary, empty or all bone, or another shape than HR.
    """
    from microsr.simulate.from_mask import read_mask

    mask, _ = read_mask(path, spacing_mm=hr.spacing_mm)
    if mask.shape != hr.shape:
        raise InputFileError(path, f"truth mask shape {mask.shape} is not the HR shape {hr.shape}")
    return mask


def evaluate_dataset(
    dataset_dir: str | Path,
    model: LoadedModel | str | Path,
    *,
    split: str = "test",
    device: str = "auto",
    config: ScoreConfig | None = None,
    default_threshold: bool = True,
    progress: bool = True,
) -> list[SpecimenScores]:
    """Scores of a model on every specimen of a prepared dataset's ``split``.

    ``model``: a loaded model, a checkpoint, or a run folder (its ``best.ckpt``). The
    intensity window of the scores is the dataset's HR window (window mode), so every
    specimen is scored on one scale; ``default_threshold`` as in :func:`evaluate_files`.
    """
    if split not in SPLITS:
        raise MicrosrError(f"--split {split!r}: use one of {', '.join(SPLITS)}")
    info, splits = load_dataset_info(dataset_dir)
    loaded = model if isinstance(model, LoadedModel) else _load(Path(model), device)
    factor = DatasetInfo.of(info).factor
    if loaded.factor != factor:
        raise MicrosrError(
            f"{loaded.path}: model factor {loaded.factor} != dataset factor {factor}"
        )
    if not splits[split]:
        raise MicrosrError(f"{dataset_dir}: the {split} split has no specimens")
    config, dataset = config or ScoreConfig(), dataset_scoring(info)
    if config.window is None:
        config = config.model_copy(update={"window": dataset.window})
    if default_threshold:
        config = config.model_copy(update={"morphometry": dataset.morphometry})
    return [
        score_stacks(dataset_stacks(dataset_dir, info, sid, loaded), config, progress=progress)
        for sid in splits[split]
    ]


def _load(path: Path, device: str) -> LoadedModel:
    from microsr.device import resolve_device
    from microsr.inference.checkpoint import load_checkpoint

    return load_checkpoint(
        path / "best.ckpt" if path.is_dir() else path, device=resolve_device(device)
    )
