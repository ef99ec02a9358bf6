"""Subject-level K-fold cross-validation of a study (``microsr study --folds K``).

Layout of a cross-validated study folder::

    study.json                 config (with ``folds``), manifest, software versions
    folds.json                 the K splits (:func:`microsr.data.splits.make_folds`)
    splits/fold_<i>.json       fold i's split, given to its sub-study as ``split_file``
    fold_<i>/                  a whole study (see :mod:`microsr.study.config`) of fold i:
                               prepared with its own split (the intensity window is fitted
                               on its training subjects only), trained, evaluated;
                               ``time.json``: its wall time (``cv_folds.csv``'s ``wall_s``)
    stats/                     pooled tables: every fold's primary analysis together
                               (slices, specimens, comparisons, ...) and ``cv_folds.csv``,
                               ``cv_subjects.csv``, ``cv_pooled.csv`` (with a truth mask:
                               ``truth.csv``, ``cv_truth.csv``)
    report/                    index.html

Each subject (the manifest's ``subject`` column; a specimen without one is its own) is
tested exactly once, by the model of the one fold that did not train or validate on it.
Per subject the scores are pooled over its test slices (means with 95 % t CIs over slices:
descriptive, slices of one bone are not independent); across subjects the subject means
are the unit (n = subjects).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pandas as pd

from microsr.data.manifest import SpecimenRow, read_manifest
from microsr.data.splits import make_folds, read_folds, write_folds, write_splits
from microsr.errors import MicrosrError
from microsr.io.atomic import atomic_path
from microsr.stats.describe import mean_ci
from microsr.stats.tables import TRUTH_IMAGES, TRUTH_METRICS, run_stats, truth_errors
from microsr.study.config import StudyConfig, StudyLayout
from microsr.study.single import run_single

log = logging.getLogger(__name__)

#: Slice-wise scores summarised per fold and per subject: (name, column or (a, b) = a - b).
CV_METRICS = {
    "psnr_lr": "psnr_lr",
    "psnr_sr": "psnr_sr",
    "psnr_gain": ("psnr_sr", "psnr_lr"),
    "ssim_lr": "ssim_lr",
    "ssim_sr": "ssim_sr",
    "ssim_gain": ("ssim_sr", "ssim_lr"),
    "ba_ta_abserr_lr": "ba_ta_abserr_lr",
    "ba_ta_abserr_sr": "ba_ta_abserr_sr",
}


def subjects_of(rows: list[SpecimenRow]) -> dict[str, str]:
    """Specimen id -> subject (the ``subject`` column, else the specimen id)."""
    return {r.specimen: r.extra.get("subject") or r.specimen for r in rows}


def fold_layout(root: Path, fold: int) -> StudyLayout:
    """The sub-study of fold ``fold`` (1-based)."""
    return StudyLayout(root / f"fold_{fold}")


def fold_splits(root: Path, rows: list[SpecimenRow], k: int, seed: int) -> list[Path]:
    """``folds.json`` and ``splits/fold_<i>.json`` (kept when they exist: resumed studies)."""
    folds = make_folds(subjects_of(rows), k=k, seed=seed)
    record = root / "folds.json"
    if record.is_file() and read_folds(record) != folds:
        raise MicrosrError(
            f"{record}: holds other folds than this manifest gives; use a new folder"
        )
    paths = []
    for fold in folds:
        path = root / "splits" / f"fold_{fold.fold}.json"
        if not path.is_file():
            with atomic_path(path) as tmp:
                write_splits(fold, tmp)
        paths.append(path)
    if not record.is_file():
        with atomic_path(record) as tmp:
            write_folds(folds, tmp)
    return paths


def run_folds(manifest: Path, root: Path, config: StudyConfig, *, progress: bool) -> list[str]:
    """Run every fold's sub-study; returns the problems (a failed fold does not stop the rest)."""
    rows = read_manifest(manifest)
    found: dict[str, list[int]] = {}  # problem -> the folds that had it
    paths = fold_splits(root, rows, config.folds, config.prepare.split_seed)
    for i, split_file in enumerate(paths, start=1):
        prepare = config.prepare.model_copy(update={"split_file": split_file.resolve()})
        sub = config.model_copy(update={"folds": None, "prepare": prepare})
        try:
            start = time.perf_counter()
            summary = run_single(manifest, fold_layout(root, i), sub, progress=progress)
            _record_time(fold_layout(root, i), time.perf_counter() - start)
            for problem in summary.get("problems", []):
                found.setdefault(problem, []).append(i)
        except Exception as exc:  # noqa: BLE001 - one fold's failure must not end the study
            log.error("fold %d failed: %s", i, exc)
            found.setdefault(f"not completed: {exc}", []).append(i)
    return [
        f"fold{'s' if len(f) > 1 else ''} {', '.join(map(str, f))}: {p}" for p, f in found.items()
    ]


def _record_time(layout: StudyLayout, seconds: float) -> None:
    """``fold_<i>/time.json``: the wall time of the run that completed the fold (kept when a
    resumed run finds it complete: a resumed fold's time covers its last part only)."""
    path = layout.root / "time.json"
    if not path.is_file():
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"wall_s": round(seconds, 1)}))


def _fold_times(root: Path, k: int) -> dict[int, float]:
    out = {}
    for i in range(1, k + 1):
        path = fold_layout(root, i).root / "time.json"
        if path.is_file():
            out[i] = json.loads(path.read_text())["wall_s"]
    return out


def _read_fold(layout: StudyLayout, name: str) -> pd.DataFrame | None:
    path = layout.stats / f"{name}.csv"
    if not path.is_file():
        return None
    return pd.read_csv(path, dtype={"specimen": str, "site": str, "model": str})


def collect_folds(root: Path, k: int, subjects: dict[str, str]) -> dict[str, pd.DataFrame]:
    """Every fold's primary slices and their 3D features, sweep and truth rows, with
    ``fold`` and ``subject`` columns."""
    out: dict[str, list[pd.DataFrame]] = {}
    for i in range(1, k + 1):
        layout = fold_layout(root, i)
        slices = _read_fold(layout, "slices")
        if slices is None:
            continue
        tested = slices[["model", "specimen"]].drop_duplicates()
        for name in ("slices", "sweep", "features_3d", "fidelity"):
            frame = slices if name == "slices" else _read_fold(layout, name)
            if frame is None or frame.empty:
                continue
            frame = frame.merge(tested, on=["model", "specimen"])  # primary model only
            frame.insert(0, "fold", i)
            frame.insert(1, "subject", frame["specimen"].map(subjects))
            out.setdefault(name, []).append(frame)
    return {name: pd.concat(frames, ignore_index=True) for name, frames in out.items()}


def _metric(frame: pd.DataFrame, spec) -> pd.Series | None:
    if isinstance(spec, tuple):
        a, b = spec
        return frame[a] - frame[b] if a in frame and b in frame else None
    return frame.get(spec)


def _summary_rows(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per group of ``keys``: n slices and each CV metric's mean with its 95 % CI."""
    rows = []
    for ids, g in frame.groupby(keys, sort=True):
        row = dict(zip(keys, ids if isinstance(ids, tuple) else (ids,)))
        row |= {"n_specimens": g["specimen"].nunique(), "n_slices": len(g)}
        for name, spec in CV_METRICS.items():
            values = _metric(g, spec)
            if values is not None:
                ci = mean_ci(values)
                row |= {name: ci["mean"], f"{name}_ci_low": ci["ci_low"],
                        f"{name}_ci_high": ci["ci_high"]}  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows)


def _sweep_ratio(sweep: pd.DataFrame | None, keys: list[str]) -> pd.DataFrame | None:
    """Mean |BA/TA error| over the threshold sweep: SR, LR and their ratio per group."""
    if sweep is None or not {"abs_err_lr", "abs_err_sr"} <= set(sweep.columns):
        return None
    g = sweep.groupby(keys, sort=True)[["abs_err_lr", "abs_err_sr"]].mean().reset_index()
    g = g.rename(columns={"abs_err_lr": "sweep_err_lr", "abs_err_sr": "sweep_err_sr"})
    g["sweep_ratio_sr_lr"] = g["sweep_err_sr"] / g["sweep_err_lr"]
    return g


def subject_table(found: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """``cv_subjects.csv``: one row per subject (its fold, slices, CIs, sweep ratio)."""
    table = _summary_rows(found["slices"], ["subject", "fold"])
    ratio = _sweep_ratio(found.get("sweep"), ["subject", "fold"])
    return table if ratio is None else table.merge(ratio, on=["subject", "fold"], how="left")


def fold_table(found: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """``cv_folds.csv``: one row per fold (its test subjects, slices, CIs, sweep ratio)."""
    table = _summary_rows(found["slices"], ["fold"])
    names = found["slices"].groupby("fold")["subject"].agg(lambda s: " ".join(sorted(set(s))))
    table.insert(1, "test_subjects", table["fold"].map(names))
    ratio = _sweep_ratio(found.get("sweep"), ["fold"])
    return table if ratio is None else table.merge(ratio, on="fold", how="left")


def pooled_table(subjects: pd.DataFrame) -> pd.DataFrame:
    """``cv_pooled.csv``: each metric over subjects (subject means, n = subjects, 95 % CI)
    and on how many subjects SR beat LR."""
    rows = []
    better = {"psnr_gain": 0.0, "ssim_gain": 0.0}
    for col in [c for c in subjects.columns if c in CV_METRICS or c.startswith("sweep_")]:
        ci = mean_ci(subjects[col])
        row = {"metric": col, "n_subjects": ci["n"], "mean": ci["mean"],
               "ci_low": ci["ci_low"], "ci_high": ci["ci_high"]}  # fmt: skip
        if col in better:
            row["subjects_sr_better"] = int((subjects[col] > better[col]).sum())
            low = subjects.get(f"{col}_ci_low")
            row["subjects_sr_better_ci"] = int((low > 0).sum()) if low is not None else None
        rows.append(row)
    return pd.DataFrame(rows)


def truth_subject_table(truth: pd.DataFrame, subjects: dict[str, str]) -> pd.DataFrame:
    """``cv_truth.csv``: per subject and metric, |LR|, |SR| and |grey HR| - truth errors
    (mean over the subject's specimens) and whether SR is closer to the truth than LR."""
    frame = truth.assign(subject=truth["specimen"].map(subjects))
    rows = []
    for subject, g in frame.groupby("subject", sort=True):
        for metric in (m for m in TRUTH_METRICS if f"{m}_abserr" in g):
            by_image = g.groupby("image")[f"{metric}_abserr"].mean()
            row = {"subject": subject, "metric": metric}
            row |= {f"abserr_{i}": float(by_image.get(i, float("nan"))) for i in TRUTH_IMAGES}
            row["sr_closer_than_lr"] = bool(row["abserr_sr"] < row["abserr_lr"])
            rows.append(row)
    return pd.DataFrame(rows)


def truth_pooled_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Rows for ``cv_pooled.csv``: each metric's |error| over subjects, per image, and on
    how many subjects SR is closer to the truth than LR."""
    rows = []
    for metric, g in table.groupby("metric", sort=False):
        for image in TRUTH_IMAGES:
            ci = mean_ci(g[f"abserr_{image}"])
            row = {"metric": f"truth_abserr_{metric}_{image}", "n_subjects": ci["n"],
                   "mean": ci["mean"], "ci_low": ci["ci_low"], "ci_high": ci["ci_high"]}  # fmt: skip
            if image == "sr":
                row["subjects_sr_better"] = int(g["sr_closer_than_lr"].sum())
            rows.append(row)
    return pd.DataFrame(rows)


def _write(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def write_cv_stats(root: Path, k: int, rows: list[SpecimenRow], problems: list[str]) -> dict:
    """Pool the folds into ``stats/`` (see the module notes); returns a short summary."""
    layout = StudyLayout(root)
    found = collect_folds(root, k, subjects_of(rows))
    layout.stats.mkdir(parents=True, exist_ok=True)
    summary: dict = {"folds": k, "n_evaluations": 0}
    if "slices" not in found:
        problems = problems + ["no fold was evaluated: no statistics"]
    else:
        tables = run_stats(found["slices"])
        subjects = subject_table(found)
        pooled = pooled_table(subjects)
        truth = truth_errors(found.get("features_3d"), tables["slices"])
        if not truth.empty:
            tables["truth"] = truth
            tables["cv_truth"] = truth_subject_table(truth, subjects_of(rows))
            pooled = pd.concat([pooled, truth_pooled_rows(tables["cv_truth"])], ignore_index=True)
        per_fold = fold_table(found)
        per_fold["wall_s"] = per_fold["fold"].map(_fold_times(root, k))
        tables |= {"cv_folds": per_fold, "cv_subjects": subjects, "cv_pooled": pooled}
        for name in ("sweep", "features_3d", "fidelity"):
            if name in found:
                tables[name] = found[name]
        for name, frame in tables.items():
            _write(frame, layout.stats / f"{name}.csv")
        summary |= {
            "n_evaluations": int(found["slices"][["fold", "specimen"]].drop_duplicates().shape[0]),
            "subjects": sorted(subjects["subject"].astype(str)),
        }
    with atomic_path(layout.problems) as tmp:
        tmp.write_text(json.dumps(problems, indent=2))
    return summary | {"problems": problems}
