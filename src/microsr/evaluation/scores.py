"""Every score of LR and SR against HR, computed once, on paired stacks.

:func:`score_stacks` is the one place that scores images: ``microsr evaluate``, ``compare``,
``study``, the demo and the report all call it, on :class:`~microsr.evaluation.stacks.PairedStacks`
in the HR scan's units.

Per slice: PSNR and SSIM (Wang et al. 2004, doi:10.1109/TIP.2003.819861; :mod:`microsr.metrics`)
of LR and SR against HR, on one intensity scale: ``"window"`` (default: one fixed window,
``data_range`` = its width, so intensity offsets count) or ``"minmax"`` (the paper's: every
image stretched to [0, 1] per slice); and the bone area fraction BA/TA of LR, SR and HR
(Bouxsein et al. 2010, doi:10.1002/jbmr.141) with *one* definition: Gaussian sigma 1.2
in-plane voxels, one threshold resolved on HR (mg HA/cm3 on calibrated data, a grey value,
or Otsu's threshold of the smoothed HR slices) applied alike to all three images, and one
total area (TA) mask chosen on HR (its segmentation and grey values; ``ta="auto"`` picks
envelope, ROI or the nonzero VOI contour, :func:`microsr.morphometry.choose_total_area`)
and used for LR, SR and HR alike; the rule and the reason are in the summary.

Per specimen: intensity fidelity (mean LR - HR and SR - HR inside HR bone and inside the
marrow/background of TA, as a fraction of the window width), the mean absolute BA/TA error
over a sweep of thresholds around the resolved one, and 3D morphometry of the three images
on the HR grid over the one TA (:func:`microsr.morphometry.bone_features_3d`: itk BV/TV,
Tb.N, BS/BV, plate-model Tb.Th/Tb.Sp; direct local-thickness ``tb_th_lt_mm``,
``tb_sp_lt_mm`` and ``conn_d_per_mm3``), each LR/SR feature also as ``<key>_err`` =
image - HR.

Inputs are read ``chunk`` slices at a time (files that ``predict`` streams stay on disk:
:func:`microsr.evaluation.run.evaluate_files`); what is kept whole are the bool masks (HR,
LR, SR bone and TA: 1 byte per voxel each; not the images), and the 3D features read them
block by block (:mod:`microsr.morphometry.blocks`, one extended block at a time). Every
pass reports progress (``progress``).

With an exact truth (stacks with ``has_truth``: a binary mask on the HR grid, e.g. the
segmentation a grey HR scan was made from) the mask is scored as one more image, never
segmented: slice-wise ``ba_ta_truth`` over the same TA, 3D features under ``"truth"``, and
LR, SR *and HR* features also as ``<key>_truth_err`` = image - truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from microsr.data.normalize import NormalizationConfig, fit_window, normalize, sample_voxels
from microsr.data.records import DatasetInfo
from microsr.errors import MicrosrError
from microsr.evaluation.stacks import PairedStacks
from microsr.metrics import psnr, ssim
from microsr.morphometry import (
    MorphometryConfig,
    ResolvedThreshold,
    TotalArea,
    bone_area_fraction,
    bone_features_3d,
    choose_total_area,
    segment,
)
from microsr.morphometry.config import default_morphometry
from microsr.morphometry.segment import fixed_threshold, require_density, smoothed_otsu
from microsr.runtime import progress as make_progress

IMAGES = ("lr", "sr")


_MINMAX = NormalizationConfig(mode="minmax")


class ScoreConfig(BaseModel):
    """How :func:`score_stacks` scores (saved with the results)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scale: str = Field("window", pattern="^(window|minmax)$")
    window: tuple[float, float] | None = Field(
        None, description="intensity window (HR units); None: robust percentiles of the HR"
    )
    morphometry: MorphometryConfig = MorphometryConfig()
    features_3d: bool = True
    sweep: tuple[float, ...] = (0.8, 0.9, 1.0, 1.1, 1.2)
    chunk: int = Field(16, ge=1)


@dataclass
class SpecimenScores:
    """Slice-wise table and per-specimen summary of one specimen's scores."""

    slices: pd.DataFrame
    summary: dict = field(default_factory=dict)


def dataset_window(normalization: dict | NormalizationConfig) -> tuple[float, float] | None:
    """A prepared dataset's HR window (its ``normalization`` record), ``None`` in minmax mode."""
    norm = NormalizationConfig.model_validate(normalization)
    return norm.hr_window if norm.mode == "window" else None


def dataset_scoring(
    info: dict | DatasetInfo, *, morphometry: MorphometryConfig | None = None
) -> ScoreConfig:
    """How a prepared dataset (``dataset.json``) is scored: on its HR window, with
    ``morphometry`` or, by default, the threshold its units call for
    (:func:`default_morphometry`: every specimen calibrated or not)."""
    typed = DatasetInfo.of(info)
    return ScoreConfig(
        window=dataset_window(typed.normalization),
        morphometry=morphometry or default_morphometry(typed.calibrated),
    )


def _chunks(
    stacks: PairedStacks, size: int, keys: tuple[str, ...] = ("lr", "sr", "hr"), *,
    desc: str = "", progress: bool = False,
):  # fmt: skip
    """``(start, stop, {key: (n, H, W)})`` chunks of the stacks, with progress over slices
    (a bar on a terminal, log lines otherwise) when ``progress`` and ``desc`` are given."""
    bar = make_progress(
        total=len(stacks), desc=f"{stacks.name}: {desc}", unit="slice",
        disable=not (progress and desc),
    )  # fmt: skip
    with bar:
        for s in range(0, len(stacks), size):
            e = min(s + size, len(stacks))
            yield s, e, stacks.read(s, e, keys)
            bar.update(e - s)


def _reference(
    stacks: PairedStacks, config: ScoreConfig, progress: bool = False
) -> tuple[ResolvedThreshold, tuple]:
    """The threshold (resolved on HR) and the intensity window of the scores.

    Raises
    ------
    MicrosrError
        The threshold cannot be resolved (e.g. mg HA/cm3 on uncalibrated data); the error
        carries the window as ``window``.
    """
    morph = config.morphometry
    raw: list[np.ndarray] = []

    def hr_chunks():  # one pass over HR: the window's sample on the way
        chunks = _chunks(stacks, config.chunk, ("hr",), desc="HR window", progress=progress)
        for _, _, chunk in chunks:
            raw.append(sample_voxels(chunk["hr"], max_voxels=4_000_000))
            yield chunk["hr"]

    name = f"{stacks.name} (HR)"
    try:
        if (
            morph.threshold == "otsu"
        ):  # on the smoothed HR voxels (a strided sample of large stacks)
            value = smoothed_otsu(hr_chunks(), morph.sigma_vox, max_voxels=4_000_000, name=name)
            threshold = ResolvedThreshold("grey", value)
        else:
            for _ in hr_chunks():
                pass
            if morph.threshold == "mgha":
                require_density(stacks.calibration, name)
            threshold = fixed_threshold(morph)
    except MicrosrError as exc:
        exc.window = config.window or fit_window(np.concatenate(raw), name=name)
        raise
    window = config.window or fit_window(np.concatenate(raw), name=name)
    return threshold, window


def _segment(image: np.ndarray, threshold: ResolvedThreshold, stacks, morph) -> np.ndarray:
    return segment(
        image, threshold, sigma_vox=morph.sigma_vox, calibration=stacks.calibration,
        name=stacks.name,
    )  # fmt: skip


def _quality(chunk: dict, window: tuple[float, float], scale: str) -> dict[str, np.ndarray]:
    """Per-slice PSNR and SSIM of each image against HR on the chosen scale."""
    out = {}
    hr = chunk["hr"]
    if scale == "minmax":
        hr = normalize(hr, _MINMAX)
    for key in (k for k in IMAGES if k in chunk):
        img = normalize(chunk[key], _MINMAX) if scale == "minmax" else chunk[key]
        rng = 1.0 if scale == "minmax" else window[1] - window[0]
        out[f"psnr_{key}"] = np.atleast_1d(psnr(img, hr, data_range=rng))
        out[f"ssim_{key}"] = np.atleast_1d(ssim(img, hr, data_range=rng))
    return out


def _bias_sums(chunk: dict, bone: np.ndarray, ta: np.ndarray) -> dict[str, float]:
    """Sums of (image - HR) and voxel counts inside HR bone and marrow (within TA)."""
    sums = {"n_bone": float(bone.sum()), "n_marrow": float((ta & ~bone).sum())}
    for key in (k for k in IMAGES if k in chunk):
        diff = chunk[key].astype(np.float64) - chunk["hr"]
        sums[f"{key}_bone"] = float(diff[bone].sum())
        sums[f"{key}_marrow"] = float(diff[ta & ~bone].sum())
    return sums


def score_stacks(
    stacks: PairedStacks,
    config: ScoreConfig | None = None,
    *,
    mask: np.ndarray | None = None,
    strict: bool = True,
    progress: bool = True,
) -> SpecimenScores:
    """Score one specimen's paired stacks (see the module notes).

    Parameters
    ----------
    stacks
        LR, HR (and SR) on the HR grid, in HR units.
    config
        Scale, window, segmentation/TA and what to compute.
    mask
        Optional ``(K, H, W)`` bool region of interest restricting TA.
    strict
        ``False``: when bone cannot be segmented (e.g. an mg HA/cm3 threshold on
        uncalibrated data) still score PSNR/SSIM, and record the problem in the summary.
    progress
        Progress of every pass (a bar on a terminal, log lines otherwise:
        :func:`microsr.runtime.progress`); the 3D features report per block.

    Returns
    -------
    SpecimenScores
        ``slices``: one row per paired slice: ``specimen, hr_slice, lr_t, at_lr_centre``,
        ``psnr_*``, ``ssim_*``, ``ta`` (pixels), ``ba_ta_lr, ba_ta_hr`` (and ``*_sr``);
        ``summary``: threshold, TA rule, window, intensity bias, sweep and 3D features.
    """
    config = config or ScoreConfig()
    morph = config.morphometry
    try:
        threshold, window = _reference(stacks, config, progress)
    except MicrosrError as exc:
        if strict:
            raise
        return _quality_only(stacks, config, exc.window, str(exc), progress)
    bone_hr, total, truth = _hr_bone_and_ta(stacks, config, threshold, mask, progress)
    ta = total.mask
    bones = {"hr": bone_hr} | {
        k: np.zeros_like(bone_hr) for k in IMAGES if stacks.has_sr or k == "lr"
    }
    if truth is not None:  # the exact truth: scored as an image, never segmented
        bones["truth"] = truth
    rows, sums, sweep = [], [], _Sweep(config.sweep, threshold)
    scored = _chunks(stacks, config.chunk, desc="PSNR, SSIM, BA/TA", progress=progress)
    for s, e, chunk in scored:
        rows.append(pd.DataFrame(_quality(chunk, window, config.scale)))
        for key in bones.keys() - {"hr", "truth"}:
            bones[key][s:e] = _segment(chunk[key], threshold, stacks, morph)
        sums.append(_bias_sums(chunk, bone_hr[s:e], ta[s:e]))
        sweep.add(chunk, ta[s:e], stacks, morph, {k: b[s:e] for k, b in bones.items()})
    table = _slice_table(stacks, pd.concat(rows, ignore_index=True), bones, ta)
    summary = {
        "specimen": stacks.name,
        "n_slices": len(stacks),
        "threshold": threshold.describe(),
        "threshold_value": threshold.value,
        "ta_rule": total.rule,
        "ta_reason": total.reason,
        "scale": config.scale,
        "window": list(window),
        "spacing_mm": list(stacks.spacing_mm),
        "intensity_bias": _bias(sums, window),
        "sweep": sweep.result(),
    }
    if config.features_3d:
        summary["features_3d"] = _features_3d(
            bones, stacks.spacing_mm, ta, progress=progress, name=stacks.name
        )
    return SpecimenScores(table, summary)


def _features_3d(
    bones: dict, spacing_mm, ta: np.ndarray, *, progress: bool = False, name: str = ""
) -> dict[str, dict[str, float]]:
    """3D features of each image over the one TA (block by block); LR/SR also as
    ``<key>_err`` = image - HR, and with a truth mask LR/SR/HR as ``<key>_truth_err`` =
    image - truth."""
    base = {
        key: bone_features_3d(
            bone, spacing_mm, mask=ta, progress=progress, name=f"{name} {key.upper()}"
        )
        for key, bone in bones.items()
    }
    feats = {key: dict(values) for key, values in base.items()}
    for key in (k for k in IMAGES if k in base):
        feats[key] |= {f"{k}_err": v - base["hr"][k] for k, v in base[key].items()}
    if "truth" in base:
        for key in (k for k in ("lr", "sr", "hr") if k in base):
            feats[key] |= {f"{k}_truth_err": v - base["truth"][k] for k, v in base[key].items()}
    return feats


def _quality_only(
    stacks: PairedStacks, config: ScoreConfig, window, problem: str, progress: bool = False
):
    """PSNR/SSIM alone, with the reason morphometry was not possible."""
    chunks = _chunks(stacks, config.chunk, desc="PSNR, SSIM", progress=progress)
    rows = [pd.DataFrame(_quality(c, window, config.scale)) for _, _, c in chunks]
    table = _slice_table(stacks, pd.concat(rows, ignore_index=True), None, None)
    summary = {"specimen": stacks.name, "n_slices": len(stacks), "scale": config.scale,
               "window": list(window), "problems": [f"{stacks.name}: no morphometry: {problem}"]}  # fmt: skip
    return SpecimenScores(table, summary)


def _hr_bone_and_ta(
    stacks: PairedStacks,
    config: ScoreConfig,
    threshold: ResolvedThreshold,
    mask,
    progress: bool = False,
) -> tuple[np.ndarray, TotalArea, np.ndarray | None]:
    """HR's segmentation, the one TA (chosen on it and HR's exact zeros) with its rule, and
    the truth mask when the stacks carry one."""
    bone_hr, nonzero_hr, truth = [], [], []
    keys = ("hr", "truth") if stacks.has_truth else ("hr",)
    for _, _, c in _chunks(stacks, config.chunk, keys, desc="HR bone, TA", progress=progress):
        bone_hr.append(_segment(c["hr"], threshold, stacks, config.morphometry))
        nonzero_hr.append(c["hr"] != 0)
        if "truth" in c:
            truth.append(c["truth"])
    bone_hr = np.concatenate(bone_hr)
    total = choose_total_area(
        bone_hr, config.morphometry, mask, image=np.concatenate(nonzero_hr),
        name=f"{stacks.name} (HR)",
    )  # fmt: skip
    return bone_hr, total, (np.concatenate(truth) if truth else None)


def _slice_table(stacks: PairedStacks, quality: pd.DataFrame, bones: dict, ta) -> pd.DataFrame:
    pixel = stacks.spacing_mm[1] * stacks.spacing_mm[2]
    table = pd.DataFrame(
        {
            "specimen": stacks.name,
            "hr_slice": stacks.hr_slice,
            "lr_t": np.round(stacks.lr_t, 6),
            "at_lr_centre": stacks.at_lr_centre,
        }
    )
    table = pd.concat([table, quality], axis=1)
    keys = ["lr", "sr", "hr"] if stacks.has_sr else ["lr", "hr"]
    if bones is not None and "truth" in bones:
        keys.append("truth")  # ba_ta_truth: the mask's own BA/TA over the one TA
    for key in keys:
        if bones is None:  # no segmentation possible: the columns exist, empty
            table["ta"] = table[f"ba_ta_{key}"] = np.nan
            continue
        frame = bone_area_fraction(bones[key], ta, pixel_area_mm2=pixel)
        table["ta"] = frame["ta"].to_numpy()
        table[f"ba_ta_{key}"] = frame["ba_ta"].to_numpy()
    return table


def _bias(sums: list[dict], window: tuple[float, float]) -> dict:
    """Mean image - HR in bone and marrow, as a fraction of the window width."""
    total = pd.DataFrame(sums).sum()
    width = window[1] - window[0]
    out = {}
    for key in IMAGES:
        if f"{key}_bone" in total:
            out[key] = {
                region: float(total[f"{key}_{region}"] / total[f"n_{region}"] / width)
                if total[f"n_{region}"] > 0
                else float("nan")
                for region in ("bone", "marrow")
            }
    return out


class _Sweep:
    """BA/TA of each image at thresholds ``factor * t`` around the resolved ``t``."""

    def __init__(self, factors: tuple[float, ...], threshold: ResolvedThreshold) -> None:
        self.levels = [ResolvedThreshold(threshold.space, threshold.value * f) for f in factors]
        self.factors = factors
        self.errors: dict[tuple[int, str], list[np.ndarray]] = {}

    def add(self, chunk: dict, ta: np.ndarray, stacks: PairedStacks, morph, bones: dict) -> None:
        """Errors of one chunk; ``bones``: its segmentation at the resolved threshold (reused
        for factor 1.0 instead of segmenting again)."""
        for i, (factor, level) in enumerate(zip(self.factors, self.levels)):
            fractions = {}
            for key in (k for k in ("hr", *IMAGES) if k in chunk):
                bone = bones[key] if factor == 1.0 else _segment(chunk[key], level, stacks, morph)
                # an empty TA counts as BA/TA 0 in every image (agreement), as it always has
                fractions[key] = bone_area_fraction(bone, ta)["ba_ta"].fillna(0.0).to_numpy()
            for key in (k for k in IMAGES if k in chunk):
                err = np.abs(fractions[key] - fractions["hr"])
                self.errors.setdefault((i, key), []).append(err)

    def result(self) -> list[dict]:
        out = []
        for i, (factor, level) in enumerate(zip(self.factors, self.levels)):
            row = {"factor": factor, "threshold": level.value}
            for key in IMAGES:
                if (i, key) in self.errors:
                    row[f"abs_err_{key}"] = float(np.mean(np.concatenate(self.errors[(i, key)])))
            out.append(row)
        return out
