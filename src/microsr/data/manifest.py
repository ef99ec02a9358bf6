"""The specimen manifest: a CSV with one row per specimen.

Required columns: ``specimen, site, lr_path, hr_path``. Optional: ``lr_spacing_mm,
hr_spacing_mm, subject, acquisition, sex, treatment, frames, truth_path``. Relative paths are resolved
against the manifest's folder. Spacing columns supply spacing for files that store none
(TIFF): one number in mm (isotropic) or ``z,y,x``. ``subject`` names the physical bone when one bone has several rows (e.g. scanned
with two protocols): its rows always share a split. An empty ``lr_path`` is allowed where
the reader asks for it (``prepare`` then simulates the LR scan from the HR one).
``truth_path`` is an optional binary bone mask on the HR grid (e.g. the segmentation a grey
HR scan was made from, :mod:`microsr.simulate.from_mask`): the exact truth that evaluation
scores LR, SR and HR morphometry against.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from microsr.errors import InputFileError, MicrosrError
from microsr.io.files import format_spacing, parse_spacing

REQUIRED = ("specimen", "site", "lr_path", "hr_path")
OPTIONAL = ("lr_spacing_mm", "hr_spacing_mm", "sex", "treatment", "frames")
#: Specimen ids and site names become file and folder names: letters, digits, ``._-``, not
#: starting with a dot, so that no id can name a path outside the output folder.
_EXTRA = "\0extra"  # DictReader's key for the fields beyond the header
SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")


def check_name(value: str, *, what: str, where: str | Path, line: int | None = None) -> str:
    """``value`` if it is a safe file-name component (:data:`SAFE_NAME`), else InputFileError."""
    if not SAFE_NAME.fullmatch(value):
        at = f"line {line}: " if line is not None else ""
        raise InputFileError(
            where,
            f"{at}{what} {value!r} is not a valid name: use letters, digits, '.', '_' and '-' "
            "(not starting with '.'; at most 100 characters); it becomes a folder name",
        )
    return value


def read_csv_rows(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    """Header and ``(line, row)`` pairs of a UTF-8 CSV; one clear error for any problem.

    Raises
    ------
    InputFileError
        Missing file, bytes that are not UTF-8, a row with more fields than the header.
    """
    if not path.is_file():
        raise InputFileError(path, "manifest not found")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh, restkey=_EXTRA)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            rows = [(reader.line_num, r) for r in reader]
    except UnicodeDecodeError as exc:
        raise InputFileError(
            path, f"is not UTF-8 text (byte {exc.start}); save the manifest as UTF-8 CSV"
        ) from None
    except csv.Error as exc:
        raise InputFileError(path, f"is not a readable CSV file: {exc}") from None
    for line, row in rows:
        if _EXTRA in row:
            n = len(columns) + len(row[_EXTRA])
            raise InputFileError(
                path, f"line {line}: {n} fields, but the header has {len(columns)} columns "
                f"({', '.join(columns)})",
            )  # fmt: skip
    return columns, [
        (line, {(k or "").strip(): (v or "").strip() for k, v in r.items()}) for line, r in rows
    ]


@dataclass(frozen=True)
class SpecimenRow:
    """One manifest row, with paths resolved."""

    specimen: str
    site: str
    lr_path: Path | None  # None: no LR scan, simulated from the HR one
    hr_path: Path
    lr_spacing_mm: float | tuple[float, float, float] | None = None  # mm; one: isotropic
    hr_spacing_mm: float | tuple[float, float, float] | None = None
    extra: dict = field(default_factory=dict)
    truth_path: Path | None = None  # binary bone mask on the HR grid (exact truth)


def _spacing(
    value: str | None, manifest: Path, specimen: str, column: str
) -> float | tuple[float, float, float] | None:
    """A spacing cell: one number or ``z,y,x`` in mm (:func:`microsr.io.files.parse_spacing`)."""
    try:
        return parse_spacing(value, option=f"specimen {specimen!r}: {column}")
    except MicrosrError as exc:
        raise InputFileError(manifest, str(exc)) from None


def read_manifest(path: str | Path, *, allow_missing_lr: bool = False) -> list[SpecimenRow]:
    """Read and validate a manifest; every problem names the manifest and the row.

    ``allow_missing_lr``: an empty ``lr_path`` gives ``lr_path=None`` instead of an error.

    Raises
    ------
    InputFileError
        Missing file or columns, empty or duplicate specimen ids, missing volume files.
    """
    path = Path(path)
    columns, rows = read_csv_rows(path)
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise InputFileError(
            path, f"missing column(s) {', '.join(missing)}; need {', '.join(REQUIRED)}"
        )
    if not rows:
        raise InputFileError(path, "manifest has no specimen rows")
    out: list[SpecimenRow] = []
    seen: set[str] = set()
    for line, r in rows:
        sid = r["specimen"]
        if not sid:
            raise InputFileError(path, f"line {line}: empty specimen id")
        check_name(sid, what="specimen id", where=path, line=line)
        if r["site"]:
            check_name(r["site"], what="site", where=path, line=line)
        if sid in seen:
            raise InputFileError(path, f"line {line}: duplicate specimen id {sid!r}")
        seen.add(sid)
        paths = {}
        for col in ("lr_path", "hr_path"):
            if not r[col] and col == "lr_path" and allow_missing_lr:
                paths[col] = None
                continue
            if not r[col]:
                raise InputFileError(path, f"specimen {sid!r}: empty {col}")
            p = Path(r[col])
            p = p if p.is_absolute() else (path.parent / p)
            if not p.exists():
                raise InputFileError(path, f"specimen {sid!r}: {col} {p} does not exist")
            paths[col] = p
        extra = {
            k: v
            for k, v in r.items()
            if k not in REQUIRED + ("lr_spacing_mm", "hr_spacing_mm", "truth_path")
        }
        out.append(
            SpecimenRow(
                specimen=sid,
                site=r["site"] or "unknown",
                lr_path=paths["lr_path"],
                hr_path=paths["hr_path"],
                lr_spacing_mm=_spacing(r.get("lr_spacing_mm"), path, sid, "lr_spacing_mm"),
                hr_spacing_mm=_spacing(r.get("hr_spacing_mm"), path, sid, "hr_spacing_mm"),
                extra=extra,
                truth_path=_truth(r.get("truth_path"), path, sid),
            )
        )
    return out


def _truth(value: str | None, manifest: Path, specimen: str) -> Path | None:
    """The ``truth_path`` cell resolved against the manifest's folder (None if empty)."""
    if not value:
        return None
    p = Path(value)
    p = p if p.is_absolute() else manifest.parent / p
    if not p.exists():
        raise InputFileError(manifest, f"specimen {specimen!r}: truth_path {p} does not exist")
    return p


def write_manifest(rows: list[SpecimenRow], path: str | Path) -> Path:
    """Write rows as a manifest CSV with paths relative to its folder when possible.

    The rows' ``extra`` fields (e.g. ``subject``) become further columns.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extras = sorted({k for r in rows for k in r.extra})
    truth = ["truth_path"] if any(r.truth_path for r in rows) else []
    cols = list(REQUIRED) + ["lr_spacing_mm", "hr_spacing_mm", *truth, *extras]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in rows:
            rel = []
            for p in (r.lr_path, r.hr_path, *([r.truth_path] if truth else [])):
                if p is None:
                    rel.append("")
                    continue
                try:
                    rel.append(str(Path(p).resolve().relative_to(path.parent.resolve())))
                except ValueError:
                    rel.append(str(p))
            spacing = [format_spacing(r.lr_spacing_mm), format_spacing(r.hr_spacing_mm)]
            cells = [r.specimen, r.site, *rel[:2], *spacing, *rel[2:]]
            w.writerow([*cells, *(r.extra.get(k, "") for k in extras)])
    return path


def hr_is_density(path: str | Path) -> bool:
    """Whether every HR scan of the manifest ``path`` is density-calibrated
    (:attr:`microsr.volume.Calibration.is_density`; only file headers are read)."""
    from microsr.io import open_slices
    from microsr.volume import is_density

    rows = read_manifest(path, allow_missing_lr=True)
    return bool(rows) and all(
        is_density(open_slices(r.hr_path, spacing_mm=r.hr_spacing_mm).calibration) for r in rows
    )
