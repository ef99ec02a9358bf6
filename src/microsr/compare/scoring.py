"""Scores of each candidate (and of interpolated LR) on a prepared test split.

Every number comes from the one evaluation path (:func:`microsr.evaluation.score_stacks` on
:func:`microsr.evaluation.dataset.dataset_stacks`): PSNR/SSIM on the dataset's intensity
window, BA/TA with the study's definition, intensity bias, 3D morphometry. Slice-level
metrics (``psnr``, ``ssim``, ``ba_ta_abserr``: |BA/TA - BA/TA(HR)|, a fraction, the name
and unit of :data:`microsr.evaluation.scores.BA_TA_ABSERR`; tables show it in percentage
points) and
specimen-level ones (also ``bias_bone``, ``bias_marrow``: mean image - HR as % of the
window; ``bv_tv_err`` and ``tb_th_err``: |3D BV/TV - HR's| in percentage points and
|local-thickness Tb.Th - HR's| in um, Hildebrand & Rüegsegger 1997,
doi:10.1046/j.1365-2818.1997.1340694.x; not itk's plate-model ``tb_th_mm``).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from microsr.evaluation import ScoreConfig, score_stacks
from microsr.evaluation.dataset import SCORING, dataset_stacks
from microsr.inference.checkpoint import LoadedModel
from microsr.inference.runner import image_fn
from microsr.morphometry.area import BA_TA_ABSERR, ba_ta_abserr

__all__ = ["SLICE_METRICS", "SPECIMEN_METRICS", "score_candidate", "time_prediction"]

SLICE_METRICS = ("psnr", "ssim", BA_TA_ABSERR)
SPECIMEN_METRICS = (*SLICE_METRICS, "bias_bone", "bias_marrow", "bv_tv_err", "tb_th_err")
#: 3D features compared (key in bone_features_3d, metric name, scale to the reported unit)
FEATURES = (("bv_tv", "bv_tv_err", 100.0), ("tb_th_lt_mm", "tb_th_err", 1000.0))


def _rows(result, image: str, name: str) -> tuple[pd.DataFrame, dict]:
    s = result.slices
    slices = pd.DataFrame({
        "candidate": name, "specimen": s["specimen"], "slice": s["hr_slice"],
        "at_lr_centre": s["at_lr_centre"], "psnr": s[f"psnr_{image}"], "ssim": s[f"ssim_{image}"],
        BA_TA_ABSERR: ba_ta_abserr(s, image),
    })  # fmt: skip
    summary = result.summary
    spec = {"candidate": name, "specimen": summary["specimen"]}
    spec |= {m: float(slices[m].mean()) for m in SLICE_METRICS}
    bias = summary["intensity_bias"][image]
    spec |= {"bias_bone": 100.0 * bias["bone"], "bias_marrow": 100.0 * bias["marrow"]}
    feats = summary.get("features_3d", {})
    for key, metric, scale in FEATURES:
        if image in feats and key in feats[image]:
            spec[metric] = scale * abs(feats[image][key] - feats["hr"][key])
    return slices, spec


def score_candidate(
    dataset_dir, info: dict, specimens: list[str], loaded: LoadedModel, *,
    name: str, config: ScoreConfig, baseline: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """Per-slice and per-specimen scores of ``loaded`` on ``specimens``.

    With ``baseline`` (a name, e.g. ``"bilinear"``), the interpolated LR's rows are returned
    too under that name (they are the same for every candidate).
    """
    slice_frames, spec_rows = [], []
    for sid in specimens:
        result = score_stacks(dataset_stacks(dataset_dir, info, sid, loaded), config)
        for image, label in (("sr", name), ("lr", baseline)):
            if label is not None:
                slices, spec = _rows(result, image, label)
                slice_frames.append(slices)
                spec_rows.append(spec)
    return pd.concat(slice_frames, ignore_index=True), pd.DataFrame(spec_rows)


def time_prediction(
    loaded: LoadedModel, shape: tuple[int, int], *, batch: int = 8, repeats: int = 3,
    tta: bool = False,
) -> float:  # fmt: skip
    """Best-of-``repeats`` wall time per slice (s) of the scoring model on ``(Y, X)`` slices."""
    fn = image_fn(loaded, SCORING.model_copy(update={"tta": tta}))
    channels = 2 * loaded.context_slices + 1
    x = torch.rand((batch, channels, *shape), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        fn(x[:1].to(loaded.device))  # warm-up (allocator, kernels)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            fn(x.to(loaded.device))
            best = min(best, time.perf_counter() - start)
    return best / batch


def mean_or_nan(values) -> float:
    values = np.asarray(values, float)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
