"""Batch prediction of many scans with one loaded model, resumable after a kill.

Jobs come from a manifest CSV (columns ``input,output``, optional ``spacing_mm``; relative
paths are relative to the manifest's folder) or from several inputs and an output folder.
An output that exists is complete: every write is atomic (temporary sibling, then rename;
:mod:`microsr.io.atomic`), so a killed run leaves only hidden ``.microsr-tmp-*`` names, never
a file at the final path. A rerun therefore skips existing outputs and redoes the rest.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from microsr.data.manifest import read_csv_rows
from microsr.device import resolve_device
from microsr.errors import InputFileError, MicrosrError
from microsr.inference.checkpoint import load_checkpoint
from microsr.inference.engine import predict_stream
from microsr.inference.runner import PredictOptions
from microsr.io import format_suffix, open_slices, output_suffix
from microsr.runtime import progress as make_progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictJob:
    """One scan: LR ``input`` -> SR ``output`` (spacing in mm for files that store none)."""

    input: Path
    output: Path
    spacing_mm: float | tuple[float, float, float] | None = None


def read_predict_manifest(path: str | Path) -> list[PredictJob]:
    """Jobs from a CSV with header ``input,output[,spacing_mm]``.

    Raises
    ------
    InputFileError
        Missing file or columns, empty or duplicate outputs, a bad spacing.
    """
    path = Path(path)
    columns, rows = read_csv_rows(path)
    if not rows or not {"input", "output"} <= set(columns):
        raise InputFileError(path, "needs a header with the columns input,output[,spacing_mm]")
    jobs = []
    for line, row in rows:
        if not (row.get("input") or "").strip() or not (row.get("output") or "").strip():
            raise InputFileError(path, f"line {line}: empty input or output")
        sp = (row.get("spacing_mm") or "").strip()
        try:
            spacing = float(sp) if sp else None
        except ValueError:
            raise InputFileError(path, f"line {line}: spacing_mm {sp!r} is not a number") from None
        jobs.append(
            PredictJob(
                path.parent / row["input"].strip(), path.parent / row["output"].strip(), spacing
            )
        )
    _check_unique(jobs, path)
    return jobs


def jobs_for_folder(
    inputs: Sequence[str | Path], out_dir: str | Path, *, suffix: str | None = None
) -> list[PredictJob]:
    """One job per input, output ``out_dir/<input name>`` (``suffix`` changes the format).

    A folder input (TIFF slices or DICOM series) gives a TIFF-slice folder of the same name
    unless ``suffix`` (e.g. ``".mha"``) is given.
    """
    jobs = []
    for p in map(Path, inputs):
        stem = p.name[: -len(format_suffix(p))] if format_suffix(p) and p.is_file() else p.name
        name = stem + suffix if suffix else p.name
        jobs.append(PredictJob(p, Path(out_dir) / name))
    _check_unique(jobs, Path(out_dir))
    return jobs


def _check_unique(jobs: list[PredictJob], where: Path) -> None:
    seen: dict[Path, Path] = {}
    for job in jobs:
        key = job.output.resolve()
        if key in seen:
            raise InputFileError(
                where, f"{seen[key]} and {job.input} would both be written to {job.output}"
            )
        seen[key] = job.input
        if job.input.resolve() == key:
            raise InputFileError(job.input, "output would overwrite the input")
        output_suffix(job.output)  # an unknown output format fails before any prediction


def plan_jobs(
    inputs: Sequence[str | Path],
    *,
    out_dir: str | Path | None = None,
    manifest: str | Path | None = None,
    out_suffix: str | None = None,
    spacing_mm: float | tuple[float, float, float] | None = None,
) -> list[PredictJob]:
    """The jobs of a batch: from a manifest, or from input volumes and an output folder.

    Raises
    ------
    MicrosrError
        Both or neither of ``manifest`` and ``out_dir`` given, inputs with a manifest, no
        inputs with ``out_dir``; and the errors of :func:`read_predict_manifest` and
        :func:`jobs_for_folder`.
    """
    if (manifest is None) == (out_dir is None):
        raise MicrosrError("give either --manifest CSV or LR volumes with --out-dir DIR")
    if manifest is not None:
        if inputs:
            raise MicrosrError("--manifest takes no LR volumes and no --out-dir")
        return read_predict_manifest(manifest)
    if not inputs:
        raise MicrosrError("--out-dir needs one or more LR volumes")
    jobs = jobs_for_folder(inputs, out_dir, suffix=out_suffix)
    return [replace(j, spacing_mm=spacing_mm) for j in jobs] if spacing_mm is not None else jobs


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)``: part ``I`` (0-based) of ``N``.

    Raises
    ------
    MicrosrError
        Not two integers with ``0 <= I < N``.
    """
    try:
        index, count = (int(p) for p in text.replace(" ", "").split("/"))
    except ValueError:
        raise MicrosrError(f"--shard {text!r}: give I/N, e.g. 0/4 (0-based I)") from None
    if count < 1 or not 0 <= index < count:
        raise MicrosrError(f"--shard {text!r}: need 0 <= I < N (I is 0-based)")
    return index, count


def slurm_shard(env: dict[str, str] | None = None) -> tuple[int, int] | None:
    """``(I, N)`` of a SLURM job array task, or ``None`` outside one.

    ``I`` is the task's rank in the array (``(SLURM_ARRAY_TASK_ID - MIN) / STEP``, so an
    array ``--array=1-8`` gives 0..7) and ``N`` its size (``SLURM_ARRAY_TASK_COUNT``, else
    from ``SLURM_ARRAY_TASK_MIN/MAX/STEP``).
    """
    env = os.environ if env is None else env
    if "SLURM_ARRAY_TASK_ID" not in env:
        return None
    try:
        task = int(env["SLURM_ARRAY_TASK_ID"])
        low, step = (
            int(env.get("SLURM_ARRAY_TASK_MIN", 0)),
            int(env.get("SLURM_ARRAY_TASK_STEP", 1)),
        )
        if "SLURM_ARRAY_TASK_COUNT" in env:
            count = int(env["SLURM_ARRAY_TASK_COUNT"])
        else:
            count = (int(env["SLURM_ARRAY_TASK_MAX"]) - low) // step + 1
    except (KeyError, ValueError):
        raise MicrosrError(
            "SLURM_ARRAY_TASK_ID is set but the array's size is not (SLURM_ARRAY_TASK_COUNT "
            "or SLURM_ARRAY_TASK_MIN/MAX); give --shard I/N"
        ) from None
    index = (task - low) // max(step, 1)
    if count < 1 or not 0 <= index < count:
        raise MicrosrError(f"SLURM array task {task} is not in 0..{count - 1}; give --shard I/N")
    return index, count


def shard(jobs: Sequence[PredictJob], index: int, count: int) -> list[PredictJob]:
    """Part ``index`` (0-based) of ``count`` consecutive, near-equal parts of ``jobs``.

    The parts of ``0..count-1`` cover every job exactly once (no overlap, no gap); sizes
    differ by at most one.
    """
    n = len(jobs)
    return list(jobs[index * n // count : (index + 1) * n // count])


def select_shard(jobs: Sequence[PredictJob], text: str | None = None) -> list[PredictJob]:
    """The jobs of ``--shard I/N`` (``text``), else of the SLURM array task, else all."""
    found = parse_shard(text) if text is not None else slurm_shard()
    if found is None:
        return list(jobs)
    index, count = found
    part = shard(jobs, index, count)
    source = "--shard" if text is not None else "SLURM array"
    log.info("shard %d/%d (%s): %d of %d jobs", index, count, source, len(part), len(jobs))
    return part


def predict_batch(
    checkpoint: str | Path,
    jobs: Sequence[PredictJob],
    *,
    device: str = "auto",
    options: PredictOptions | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, list[Path]]:
    """Predict every job with one loaded model; skip outputs that already exist.

    A job that fails (bad input file) is logged and the batch goes on; the failures are
    raised together at the end as one :class:`MicrosrError`.

    Returns
    -------
    dict
        ``{"written": [...], "skipped": [...]}`` output paths.
    """
    loaded = load_checkpoint(checkpoint, device=resolve_device(device))
    done: dict[str, list[Path]] = {"written": [], "skipped": []}
    failed: list[str] = []
    for job in make_progress(jobs, desc="scans", unit="scan", disable=not progress):
        if job.output.exists() and not overwrite:
            log.info("skip %s: %s exists (complete: written atomically)", job.input, job.output)
            done["skipped"].append(job.output)
            continue
        try:
            source = open_slices(job.input, spacing_mm=job.spacing_mm)
            predict_stream(
                loaded, source, job.output, options=options, overwrite=overwrite, progress=False
            )
        except MicrosrError as exc:
            log.error("%s", exc)
            failed.append(str(exc))
            continue
        done["written"].append(job.output)
    if failed:
        raise MicrosrError(f"{len(failed)} of {len(jobs)} scans failed:\n  " + "\n  ".join(failed))
    return done
