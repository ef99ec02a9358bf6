"""Morphometry of LR, SR and HR on the same slices and the same grid.

Slice-wise: each LR slice ``k`` is paired with the nearest HR slice
(:func:`microsr.pairing.geometry.check_pair`) and the SR slice at the same z; LR is
upsampled bilinearly onto the HR in-plane grid (the same function as everywhere), and
all three are cut to their common in-plane area. The threshold is resolved once (Otsu:
on the paired HR slices) and the TA mask is the HR one, so BA/TA errors count bone only.

3D: the three images are compared on the **common grid** of the paired slices: in-plane
the HR grid, along z the LR (= SR) slice spacing; HR is brought to it by *picking its
paired slices* (no averaging), so HR thin structures are sampled, not blurred, along z.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from microsr.data.upsample import upsample_bilinear
from microsr.errors import MicrosrError
from microsr.morphometry.area import bone_area_fraction, total_area_mask
from microsr.morphometry.features3d import bone_features_3d
from microsr.morphometry.segment import MorphometryConfig, resolve_threshold, segment
from microsr.pairing.geometry import check_pair, nearest_slices
from microsr.volume import Volume

COMMON_GRID = (
    "LR, SR and HR compared on the paired slices: in-plane the HR grid (LR upsampled "
    "bilinearly), along z the LR/SR slice spacing (HR resampled by picking the HR slice "
    "nearest to each LR slice); TA mask from the HR segmentation"
)


def paired_stacks(hr: Volume, lr: Volume, sr: Volume | None, *, name: str) -> dict:
    """The paired slices ``(K, H, W)`` of ``lr`` (upsampled), ``sr`` and ``hr``, and their indices."""
    geo = check_pair(lr, hr, name=name)
    f = geo.factor
    h, w = min(lr.shape[1] * f, hr.shape[1]), min(lr.shape[2] * f, hr.shape[2])
    ok = geo.hr_index >= 0
    if sr is not None:
        sr_index = nearest_slices(lr, sr)
        ok &= sr_index >= 0
        h, w = min(h, sr.shape[1]), min(w, sr.shape[2])
    k = np.nonzero(ok)[0]
    if len(k) == 0:
        raise MicrosrError(f"{name}: no LR slice could be paired with an HR slice")
    out = {
        "lr_slice": k,
        "hr_slice": geo.hr_index[k],
        "hr": np.asarray(hr.array[geo.hr_index[k], :h, :w], np.float32),
        "lr": upsample_bilinear(np.asarray(lr.array[k], np.float32), factor=f)[:, :h, :w],
        "spacing_mm": (lr.spacing_mm[0], hr.spacing_mm[1], hr.spacing_mm[2]),
    }
    if sr is not None:
        out["sr"] = np.asarray(sr.array[sr_index[k], :h, :w], np.float32)
    return out


def paired_morphometry(
    hr: Volume,
    lr: Volume,
    sr: Volume | None = None,
    *,
    config: MorphometryConfig | None = None,
    name: str = "volume",
    features_3d: bool = True,
) -> tuple[pd.DataFrame, dict]:
    """Slice-wise BA/TA and 3D features of LR, SR (optional) and HR on paired slices.

    Returns
    -------
    slices
        One row per paired slice: ``specimen, lr_slice, hr_slice, ta`` (pixels) and
        ``ba_ta_lr, ba_ta_hr`` (and ``ba_ta_sr``).
    features
        ``{"lr": {...}, "sr": {...}, "hr": {...}, "grid": ..., "threshold": ...}``.

    Raises
    ------
    MicrosrError
        Bad pair geometry; an mg HA/cm3 threshold on an uncalibrated volume.
    """
    config = config or MorphometryConfig()
    st = paired_stacks(hr, lr, sr, name=name)
    ref = Volume(st["hr"], st["spacing_mm"], calibration=hr.calibration)
    threshold = resolve_threshold(ref, config, name=f"{name} (HR)")
    images = {"lr": lr, "hr": hr} | ({"sr": sr} if sr is not None else {})
    bones = {
        key: segment(
            st[key],
            threshold,
            sigma_vox=config.sigma_vox,
            calibration=vol.calibration,
            name=f"{name} ({key.upper()})",
        )
        for key, vol in images.items()
    }
    ta_mask = total_area_mask(bones["hr"], config)
    table = pd.DataFrame({"specimen": name, "lr_slice": st["lr_slice"], "hr_slice": st["hr_slice"]})
    pixel = st["spacing_mm"][1] * st["spacing_mm"][2]
    for key, bone in bones.items():
        frame = bone_area_fraction(bone, ta_mask, pixel_area_mm2=pixel)
        table["ta"] = frame["ta"].to_numpy()
        table[f"ba_ta_{key}"] = frame["ba_ta"].to_numpy()
    features: dict = {"grid": COMMON_GRID, "threshold": threshold.describe()}
    features["spacing_mm"] = list(st["spacing_mm"])
    if features_3d:
        for key, bone in bones.items():
            features[key] = bone_features_3d(bone, st["spacing_mm"], mask=ta_mask)
    return table, features
