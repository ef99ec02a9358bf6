"""``microsr evaluate``: score volumes or a dataset's split, write the tables, print a summary.

Outputs (:func:`write_evaluation`): ``slices.csv`` (one row per paired HR-grid slice),
``specimens.csv`` (per-specimen means, intensity bias, 3D features) and ``summary.json``
(means over all slices, over the slices at and between LR slice centres, and per specimen).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from microsr.data.prepare import load_dataset_info
from microsr.errors import MicrosrError
from microsr.evaluation.dataset import dataset_stacks
from microsr.evaluation.scores import (
    BA_TA_ABSERR,
    ScoreConfig,
    SpecimenScores,
    ba_ta_abserr,
    dataset_scoring,
    default_morphometry,
    score_stacks,
)
from microsr.evaluation.stacks import stacks_source, volume_stacks
from microsr.inference.checkpoint import LoadedModel
from microsr.io import read_volume
from microsr.io.atomic import atomic_path
from microsr.volume import Volume, is_density

METRICS = ("psnr_lr", "psnr_sr", "ssim_lr", "ssim_sr", "ba_ta_lr", "ba_ta_sr", "ba_ta_hr")
SPLITS = ("train", "val", "test")


def evaluate_volumes(
    hr: Volume,
    lr: Volume,
    sr: Volume | None = None,
    *,
    name: str = "volume",
    config: ScoreConfig | None = None,
    mask: np.ndarray | None = None,
) -> SpecimenScores:
    """Scores of LR (interpolated) and optionally SR against HR, on every paired HR slice.

    Without ``config``: the default scores, bone at 500 mg HA/cm3 when HR is calibrated,
    else at Otsu's threshold of HR.
    """
    config = config or ScoreConfig(morphometry=default_morphometry(is_density(hr.calibration)))
    return score_stacks(volume_stacks(hr, lr, sr, name=name), config, mask=mask)


def evaluate_files(
    hr: str | Path,
    lr: str | Path,
    sr: str | Path | None = None,
    *,
    spacing_mm: float | tuple[float, float, float] | None = None,
    config: ScoreConfig | None = None,
    default_threshold: bool = True,
) -> list[SpecimenScores]:
    """Read and score three volume files (``microsr evaluate --hr --lr --sr``).

    ``default_threshold``: segment bone at 500 mg HA/cm3 when HR is calibrated, else with
    Otsu's threshold of HR (instead of ``config``'s morphometry threshold).
    """
    vols = [read_volume(p, spacing_mm=spacing_mm) if p else None for p in (hr, lr, sr)]
    config = config or ScoreConfig()
    if default_threshold:
        morph = default_morphometry(is_density(vols[0].calibration))
        config = config.model_copy(update={"morphometry": morph})
    return [evaluate_volumes(*vols, name=stacks_source(lr), config=config)]


def evaluate_dataset(
    dataset_dir: str | Path,
    model: LoadedModel | str | Path,
    *,
    split: str = "test",
    device: str = "auto",
    config: ScoreConfig | None = None,
    default_threshold: bool = True,
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
    if loaded.factor != info["factor"]:
        raise MicrosrError(
            f"{loaded.path}: model factor {loaded.factor} != dataset factor {info['factor']}"
        )
    if not splits[split]:
        raise MicrosrError(f"{dataset_dir}: the {split} split has no specimens")
    config, dataset = config or ScoreConfig(), dataset_scoring(info)
    if config.window is None:
        config = config.model_copy(update={"window": dataset.window})
    if default_threshold:
        config = config.model_copy(update={"morphometry": dataset.morphometry})
    return [
        score_stacks(dataset_stacks(dataset_dir, info, sid, loaded), config)
        for sid in splits[split]
    ]


def _load(path: Path, device: str) -> LoadedModel:
    from microsr.device import resolve_device
    from microsr.inference.checkpoint import load_checkpoint

    return load_checkpoint(
        path / "best.ckpt" if path.is_dir() else path, device=resolve_device(device)
    )


def _means(frame: pd.DataFrame) -> dict:
    out = {m: float(np.mean(frame[m].to_numpy(float))) for m in METRICS if m in frame}
    for key in ("lr", "sr"):
        if f"ba_ta_{key}" in frame:
            err = ba_ta_abserr(frame, key).to_numpy(float)
            out[f"{BA_TA_ABSERR}_{key}"] = float(np.nanmean(err)) if len(err) else float("nan")
    return out | {"n_slices": len(frame)}


def summarize(results: list[SpecimenScores]) -> dict:
    """Means over all slices, over the slices at / between LR slice centres, and per specimen."""
    slices = pd.concat([r.slices for r in results], ignore_index=True)
    centre = slices["at_lr_centre"].astype(bool)
    summary = _means(slices)
    summary["slices_at_lr_centres"] = _means(slices[centre])
    summary["slices_between_lr_centres"] = _means(slices[~centre])
    summary["per_specimen"] = {
        str(r.summary.get("specimen", r.slices["specimen"].iloc[0])): _means(r.slices) | {
            k: v for k, v in r.summary.items() if k != "specimen"
        }
        for r in results
    }  # fmt: skip
    return summary


def _specimen_table(summary: dict) -> pd.DataFrame:
    rows = []
    for sid, d in summary["per_specimen"].items():
        row = {"specimen": sid, **{k: v for k, v in d.items() if not isinstance(v, dict | list)}}
        for image, regions in d.get("intensity_bias", {}).items():
            row |= {f"bias_{region}_{image}": v for region, v in regions.items()}
        for image, feats in d.get("features_3d", {}).items():
            row |= {f"{name}_{image}": v for name, v in feats.items()}
        rows.append(row)
    return pd.DataFrame(rows)


def write_evaluation(results: list[SpecimenScores], out_dir: str | Path) -> dict:
    """Write ``slices.csv``, ``specimens.csv`` and ``summary.json`` into ``out_dir`` (atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(results)
    slices = pd.concat([r.slices for r in results], ignore_index=True)
    with atomic_path(out_dir / "slices.csv") as tmp:
        slices.to_csv(tmp, index=False, float_format="%.6f")
    with atomic_path(out_dir / "specimens.csv") as tmp:
        _specimen_table(summary).to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(out_dir / "summary.json") as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2, allow_nan=True))
    return summary


def _fmt(value: float, digits: int) -> str:
    return "inf" if math.isinf(value) else ("–" if math.isnan(value) else f"{value:.{digits}f}")


def format_summary(summary: dict) -> str:
    """A short table: interpolated LR vs model, PSNR (dB), SSIM and |BA/TA error|."""
    has_sr = "psnr_sr" in summary
    cols = [("psnr", 2, "PSNR"), ("ssim", 4, "SSIM"), (BA_TA_ABSERR, 4, "|dBA/TA|")]
    head = f"{'specimen':<22}{'slices':>7}"
    for _, _, label in cols:
        head += f"{label + ' LR':>14}" + (f"{label + ' SR':>14}" if has_sr else "")
    lines = [head, "-" * len(head)]

    def row(name: str, d: dict) -> str:
        out = f"{name:<22}{d['n_slices']:>7}"
        for key, digits, _ in cols:
            out += f"{_fmt(d.get(f'{key}_lr', math.nan), digits):>14}"
            out += f"{_fmt(d.get(f'{key}_sr', math.nan), digits):>14}" if has_sr else ""
        return out

    for sid, d in summary["per_specimen"].items():
        lines.append(row(sid, d))
    lines.append(row("all slices", summary))
    if summary["slices_between_lr_centres"]["n_slices"]:
        lines.append(row("  between LR centres", summary["slices_between_lr_centres"]))
        lines.append(row("  at LR centres", summary["slices_at_lr_centres"]))
    return "\n".join(lines + _bias_lines(summary))


def _bias_lines(summary: dict) -> list[str]:
    """Mean image - HR inside bone and marrow, in % of the HR window, per specimen."""
    images = sorted(
        {i for d in summary["per_specimen"].values() for i in d.get("intensity_bias", {})} - {"hr"}
    )
    if not images:
        return []
    head = f"{'intensity bias, % of window':<29}" + "".join(
        f"{region + ' ' + image.upper():>13}" for region in ("bone", "marrow") for image in images
    )
    lines = ["", head, "-" * len(head)]
    for sid, d in summary["per_specimen"].items():
        bias = d.get("intensity_bias", {})
        cells = [
            100 * bias.get(image, {}).get(region, math.nan)
            for region in ("bone", "marrow")
            for image in images
        ]
        lines.append(f"{sid:<29}" + "".join(f"{_fmt(c, 2):>13}" for c in cells))
    return lines
