"""Per-slice scores of a model (or of bilinear interpolation) on a prepared test split.

Every image is scored as :func:`microsr.evaluation.evaluate_dataset` does: against the
normalised HR slice with ``data_range = 1``, the model image re-normalised per slice in
min-max mode. Besides PSNR and SSIM, two structure-oriented scores use a bone mask from
Otsu's threshold of the HR slice (Otsu 1979, doi:10.1109/TSMC.1979.4310076):

* ``mae_bone``: mean absolute error inside the HR bone mask (the issue's stand-in for a
  bone-area-fraction error until :mod:`microsr.morphometry` exists);
* ``baf_err``: absolute difference, in percentage points, of the bone area fraction
  (pixels above the HR slice's Otsu threshold / all pixels) of the image and of HR.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
from skimage.filters import threshold_otsu

from microsr.data.dataset import SlicePairs
from microsr.data.normalize import NormalizationConfig, normalize
from microsr.inference.checkpoint import LoadedModel
from microsr.inference.predict import model_images
from microsr.metrics import psnr, ssim

__all__ = ["METRICS", "score_images", "score_split", "time_prediction"]

METRICS = ("psnr", "ssim", "mae_bone", "baf_err")


def score_images(pred: np.ndarray, hr: np.ndarray) -> dict[str, np.ndarray]:
    """PSNR (dB), SSIM, bone-mask MAE and |BA/TA error| (%) of ``(N, H, W)`` images in [0, 1]."""
    out = {
        "psnr": np.atleast_1d(psnr(pred, hr, data_range=1.0)),
        "ssim": np.atleast_1d(ssim(pred, hr, data_range=1.0)),
    }
    mae, baf = [], []
    for p, h in zip(pred, hr, strict=True):
        level = threshold_otsu(h) if np.ptp(h) > 0 else 0.5
        mask = h > level
        mae.append(float(np.abs(p - h)[mask].mean()) if mask.any() else np.nan)
        baf.append(100.0 * abs(float((p > level).mean()) - float(mask.mean())))
    out["mae_bone"], out["baf_err"] = np.asarray(mae), np.asarray(baf)
    return out


def _batches(pairs: SlicePairs, batch_size: int):
    for s in range(0, len(pairs), batch_size):
        idx = list(range(s, min(s + batch_size, len(pairs))))
        lr = np.stack([np.asarray(pairs.pair(i)[0]) for i in idx]).astype(np.float32)
        hr = np.stack([np.asarray(pairs.pair(i)[1]) for i in idx]).astype(np.float32)
        yield idx, (lr if lr.ndim == 4 else lr[:, None]), hr


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
        for idx, lr, hr in _batches(pairs, batch_size):
            if loaded is None:
                image = lr[:, lr.shape[1] // 2]
            else:
                x = torch.from_numpy(lr)
                image = model_images(loaded, x, tta=tta)[:, 0].numpy()
                image = normalize(image, norm) if norm.mode == "minmax" else image
            cols = {"candidate": name, "specimen": sid, "slice": idx}
            frames.append(pd.DataFrame({**cols, **score_images(image, hr)}))
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
