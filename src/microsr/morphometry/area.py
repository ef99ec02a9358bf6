"""Slice-wise bone area fraction BA/TA.

BA is the number of bone pixels of a slice inside the total area, TA the number of
pixels of the total area (chosen by
:func:`~microsr.morphometry.total_area.choose_total_area`). Nomenclature of Bouxsein et al.
2010, doi:10.1002/jbmr.141.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from microsr.morphometry.config import MorphometryConfig
from microsr.morphometry.total_area import choose_total_area

#: The one name of the absolute BA/TA error of an image against HR (a fraction, not %):
#: column ``ba_ta_abserr_<image>`` = ``|ba_ta_<image> - ba_ta_hr|`` (:func:`ba_ta_abserr`).
BA_TA_ABSERR = "ba_ta_abserr"


def ba_ta_abserr(slices: pd.DataFrame, image: str) -> pd.Series:
    """``|BA/TA(image) - BA/TA(HR)|`` per row of a slice table (``ba_ta_<image>``, ``ba_ta_hr``)."""
    return (slices[f"ba_ta_{image}"] - slices["ba_ta_hr"]).abs()


def total_area_mask(
    bone: np.ndarray,
    config: MorphometryConfig,
    mask: np.ndarray | None = None,
    *,
    image: np.ndarray | None = None,
) -> np.ndarray:
    """TA mask ``(N, Y, X)`` bool of :func:`~microsr.morphometry.total_area.choose_total_area`."""
    return choose_total_area(bone, config, mask, image=image).mask


def bone_area_fraction(
    bone: np.ndarray,
    ta_mask: np.ndarray,
    *,
    pixel_area_mm2: float = 1.0,
    slices: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per slice: ``slice, ba, ta, ba_ta, ba_mm2, ta_mm2``.

    Parameters
    ----------
    bone, ta_mask
        ``(N, Y, X)`` bool masks; BA counts ``bone & ta_mask``.
    pixel_area_mm2
        In-plane pixel area in mm2 (for the ``*_mm2`` columns).
    slices
        ``(N,)`` slice indices to report (default ``0..N-1``).

    Returns
    -------
    pandas.DataFrame
        ``ba``, ``ta`` in pixels; ``ba_ta`` is NaN where TA is empty.
    """
    bone = np.asarray(bone, bool)
    ta_mask = np.asarray(ta_mask, bool)
    if bone.shape != ta_mask.shape:
        raise ValueError(f"bone {bone.shape} and TA mask {ta_mask.shape} shapes differ")
    ba = (bone & ta_mask).reshape(len(bone), -1).sum(axis=1)
    ta = ta_mask.reshape(len(bone), -1).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(ta > 0, ba / np.maximum(ta, 1), np.nan)
    return pd.DataFrame(
        {
            "slice": np.arange(len(bone)) if slices is None else np.asarray(slices),
            "ba": ba,
            "ta": ta,
            "ba_ta": frac,
            "ba_mm2": ba * pixel_area_mm2,
            "ta_mm2": ta * pixel_area_mm2,
        }
    )
