"""Per-slice scores of a model (or of bilinear interpolation) on a prepared test split.

Every image is scored as :func:`microsr.evaluation.evaluate_dataset` does: against the
normalised HR slice with ``data_range = 1``, the model image re-normalised per slice in
min-max mode. Besides PSNR and SSIM, two structure scores segment bone with
:mod:`microsr.morphometry` (Gaussian sigma 1.2 px, then Otsu's threshold of the smoothed HR
slices of the specimen, applied alike to HR and to the image; TA = the whole ROI):

* ``baf_err``: absolute bone-area-fraction error ``|BA/TA(image) - BA/TA(HR)|`` in
  percentage points (Bouxsein et al. 2010, doi:10.1002/jbmr.141);
* ``mae_bone``: mean absolute grey-value error inside the HR bone mask.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from microsr.data.dataset import SlicePairs
from microsr.data.normalize import NormalizationConfig, normalize
from microsr.inference.checkpoint import LoadedModel
from microsr.inference.predict import model_images
from microsr.metrics import psnr, ssim
from microsr.morphometry import (
    MorphometryConfig,
    bone_area_fraction,
    resolve_threshold,
    segment,
)

__all__ = ["BAF_CONFIG", "METRICS", "score_images", "score_split", "time_prediction"]

METRICS = ("psnr", "ssim", "mae_bone", "baf_err")


BAF_CONFIG = MorphometryConfig(threshold="otsu", threshold_value=None, ta="roi", sigma_vox=1.2)


def score_images(
    pred: np.ndarray, hr: np.ndarray, *, morphometry: MorphometryConfig = BAF_CONFIG
) -> dict[str, np.ndarray]:
    """Per-slice PSNR (dB), SSIM, bone-mask MAE and BA/TA error (%) of ``(N, H, W)`` in [0, 1].

    The bone threshold is resolved once on all ``hr`` slices (pass one specimen at a time).
    """
    out = {
        "psnr": np.atleast_1d(psnr(pred, hr, data_range=1.0)),
        "ssim": np.atleast_1d(ssim(pred, hr, data_range=1.0)),
    }
    threshold = resolve_threshold(hr, morphometry, name="HR slices")
    sigma = morphometry.sigma_vox
    bone_hr = segment(hr, threshold, sigma_vox=sigma)
    bone_pred = segment(pred, threshold, sigma_vox=sigma)
    roi = np.ones(hr.shape, bool)
    baf_hr = bone_area_fraction(bone_hr, roi)["ba_ta"].to_numpy()
    baf_pred = bone_area_fraction(bone_pred, roi)["ba_ta"].to_numpy()
    out["baf_err"] = 100.0 * np.abs(baf_pred - baf_hr)
    error = np.abs(pred - hr)
    with np.errstate(invalid="ignore"):  # a slice without bone: NaN, dropped by the stats
        out["mae_bone"] = (error * bone_hr).sum(axis=(1, 2)) / bone_hr.sum(axis=(1, 2))
    return out


def _batches(pairs: SlicePairs, batch_size: int):
    for s in range(0, len(pairs), batch_size):
        idx = list(range(s, min(s + batch_size, len(pairs))))
        lr = np.stack([np.asarray(pairs.pair(i)[0]) for i in idx]).astype(np.float32)
        hr = np.stack([np.asarray(pairs.pair(i)[1]) for i in idx]).astype(np.float32)
        yield (lr if lr.ndim == 4 else lr[:, None]), hr


def score_split(
    dataset_dir,
    info: dict,
    specimens: list[str],
    loaded: LoadedModel | None,
    *,
    name: str,
    tta: bool = False,
    batch_size: int = 8,
) -> pd.DataFrame:
    """Per-slice scores of ``loaded`` (``None``: bilinear input) on ``specimens``.

    Returns
    -------
    pandas.DataFrame
        Columns ``candidate, specimen, slice`` and :data:`METRICS`, one row per slice.
    """
    norm = NormalizationConfig.model_validate(info["normalization"])
    context = 0 if loaded is None else int(loaded.meta.get("context_slices", 0))
    frames = []
    for sid in specimens:
        pairs = SlicePairs(dataset_dir, info, [sid], context=context)
        images, targets = [], []
        for lr, hr in _batches(pairs, batch_size):
            if loaded is None:
                image = lr[:, lr.shape[1] // 2]
            else:
                image = model_images(loaded, torch.from_numpy(lr), tta=tta)[:, 0].numpy()
                image = normalize(image, norm) if norm.mode == "minmax" else image
            images.append(image)
            targets.append(hr)
        scores = score_images(np.concatenate(images), np.concatenate(targets))
        cols = {"candidate": name, "specimen": sid, "slice": np.arange(len(pairs))}
        frames.append(pd.DataFrame({**cols, **scores}))
    return pd.concat(frames, ignore_index=True)


def time_prediction(
    loaded: LoadedModel, shape: tuple[int, int], *, batch: int = 8, repeats: int = 3,
    tta: bool = False,
) -> float:  # fmt: skip
    """Best-of-``repeats`` wall time per slice (s) of :func:`model_images` on ``(Y, X)`` slices.

    The minimum over repeats is the least noisy estimate on a shared machine.
    """
    channels = 2 * int(loaded.meta.get("context_slices", 0)) + 1
    x = torch.rand((batch, channels, *shape), generator=torch.Generator().manual_seed(0))
    model_images(loaded, x[:1], tta=tta)  # warm-up (allocator, kernels)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model_images(loaded, x, tta=tta)
        best = min(best, time.perf_counter() - start)
    return best / batch
