"""Batch prediction of many scans with one loaded model, resumable after a kill.

Jobs come from a manifest CSV (columns ``input,output``, optional ``spacing_mm``; relative
paths are relative to the manifest's folder) or from several inputs and an output folder.
An output that exists is complete: every write is atomic (temporary sibling, then rename;
:mod:`microsr.io.atomic`), so a killed run leaves only hidden ``.microsr-tmp-*`` names, never
a file at the final path. A rerun therefore skips existing outputs and redoes the rest.
"""

from __future__ import annotations

import logging
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
