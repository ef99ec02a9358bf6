"""The specimen manifest: a CSV with one row per specimen.

Required columns: ``specimen, site, lr_path, hr_path``. Optional: ``lr_spacing_mm,
hr_spacing_mm, sex, treatment, frames``. Relative paths are resolved against the
manifest's folder. Spacing columns supply spacing for files that store none (TIFF).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from microsr.errors import InputFileError

REQUIRED = ("specimen", "site", "lr_path", "hr_path")
OPTIONAL = ("lr_spacing_mm", "hr_spacing_mm", "sex", "treatment", "frames")


@dataclass(frozen=True)
class SpecimenRow:
    """One manifest row, with paths resolved."""

    specimen: str
    site: str
    lr_path: Path
    hr_path: Path
    lr_spacing_mm: float | None = None
    hr_spacing_mm: float | None = None
    extra: dict = field(default_factory=dict)


def _spacing(value: str, manifest: Path, specimen: str, column: str) -> float | None:
    if value is None or value.strip() == "":
        return None
    try:
        out = float(value)
    except ValueError:
        raise InputFileError(
            manifest, f"specimen {specimen!r}: {column} {value!r} is not a number"
        ) from None
    if not out > 0:
        raise InputFileError(manifest, f"specimen {specimen!r}: {column} must be > 0, got {out}")
    return out


def read_manifest(path: str | Path) -> list[SpecimenRow]:
    """Read and validate a manifest; every problem names the manifest and the row.

    Raises
    ------
    InputFileError
        Missing file or columns, empty or duplicate specimen ids, missing volume files.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "manifest not found")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED if c not in columns]
        if missing:
            raise InputFileError(
                path, f"missing column(s) {', '.join(missing)}; need {', '.join(REQUIRED)}"
            )
        rows = [{(k or "").strip(): (v or "").strip() for k, v in r.items()} for r in reader]
    if not rows:
        raise InputFileError(path, "manifest has no specimen rows")
    out: list[SpecimenRow] = []
    seen: set[str] = set()
    for line, r in enumerate(rows, start=2):
        sid = r["specimen"]
        if not sid:
            raise InputFileError(path, f"line {line}: empty specimen id")
        if sid in seen:
            raise InputFileError(path, f"line {line}: duplicate specimen id {sid!r}")
        seen.add(sid)
        paths = {}
        for col in ("lr_path", "hr_path"):
            if not r[col]:
                raise InputFileError(path, f"specimen {sid!r}: empty {col}")
            p = Path(r[col])
            p = p if p.is_absolute() else (path.parent / p)
            if not p.exists():
                raise InputFileError(path, f"specimen {sid!r}: {col} {p} does not exist")
            paths[col] = p
        extra = {
            k: v for k, v in r.items() if k not in REQUIRED + ("lr_spacing_mm", "hr_spacing_mm")
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
            )
        )
    return out


def write_manifest(rows: list[SpecimenRow], path: str | Path) -> Path:
    """Write rows as a manifest CSV with paths relative to its folder when possible."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = list(REQUIRED) + ["lr_spacing_mm", "hr_spacing_mm"]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in rows:
            rel = []
            for p in (r.lr_path, r.hr_path):
                try:
                    rel.append(str(Path(p).resolve().relative_to(path.parent.resolve())))
                except ValueError:
                    rel.append(str(p))
            w.writerow([r.specimen, r.site, *rel, r.lr_spacing_mm or "", r.hr_spacing_mm or ""])
    return path
