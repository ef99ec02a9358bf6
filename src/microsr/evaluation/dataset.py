"""Paired stacks of a prepared dataset's specimens, with a model's prediction as SR.

``microsr evaluate DATASET RUN OUT`` and ``microsr compare`` score models here: the model
sees exactly the inputs it was trained on (the dataset's HR-grid pairs, cropped to the ROI)
and its output is mapped back to HR units by the same function as ``predict``
(:func:`microsr.inference.engine.super_resolve`), so the scores are those of an SR file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from microsr.data.dataset import SlicePairs
from microsr.data.normalize import lr_in_hr_units
from microsr.data.records import DatasetInfo
from microsr.evaluation.stacks import PairedStacks, centre_flags
from microsr.inference.checkpoint import LoadedModel
from microsr.inference.engine import super_resolve_batched
from microsr.inference.runner import PredictOptions, image_fn

#: The one precision rule of scored predictions: ``evaluate DATASET``, ``compare``, ``study``
#: and ``demo`` run the model as loaded, in fp32 (no bf16 autocast, no BatchNorm folding, no
#: channels-last), so one model gets one score whatever the command. Only ``predict`` (SR
#: files for use, not for scores) defaults to ``precision="auto"`` (bf16 where the CPU/GPU has it).
SCORING = PredictOptions(fuse_bn=False, precision="32", channels_last=False)


def dataset_stacks(
    dataset_dir: str | Path,
    info: dict | DatasetInfo,
    specimen: str,
    loaded: LoadedModel | None = None,
    *,
    options: PredictOptions = SCORING,
    batch: int = 8,
) -> PairedStacks:
    """Paired stacks of one prepared specimen; SR from ``loaded`` (``None``: no SR)."""
    k = 0 if loaded is None else loaded.context_slices
    pairs = SlicePairs(dataset_dir, info, [specimen], context=k)
    typed = DatasetInfo.of(info)
    norm, meta = typed.normalization, typed.specimens[specimen]
    fn = None if loaded is None else image_fn(loaded, options)
    model_norm = None if loaded is None else loaded.meta.normalization

    def read(start: int, stop: int, keys=("lr", "sr", "hr")) -> dict[str, np.ndarray]:
        raw = [pairs.raw_pair(i) for i in range(start, stop)]
        out = {}
        if "hr" in keys:
            out["hr"] = np.stack([hr for _, hr in raw])
        if "lr" in keys:
            out["lr"] = lr_in_hr_units(np.stack([lr[k] for lr, _ in raw]), norm)
        if fn is not None and "sr" in keys:
            stacks = torch.from_numpy(np.stack([lr for lr, _ in raw]))
            with torch.inference_mode():
                out["sr"] = super_resolve_batched(
                    fn, stacks, model_norm, options=options, compute_device=loaded.device,
                    batch=batch,
                ).numpy()  # fmt: skip
        return out

    return PairedStacks(
        specimen, np.asarray(meta.hr_slices), np.asarray(meta.lr_t),
        centre_flags(np.asarray(meta.lr_t), meta.n_lr_slices),
        meta.hr_spacing_mm, meta.density_calibration, loaded is not None, read,
    )  # fmt: skip
