"""A study manifest from a folder of binary bone masks (e.g. the DIDSR vertebral ROIs).

Each mask becomes one specimen: its central ``crop``-cube, painted as a grey HR scan
(:func:`microsr.simulate.grey_from_mask`: synthetic intensities on real architecture), an
LR scan simulated from that (:func:`microsr.simulate.simulate_acquisition`), and the mask
itself as the exact morphometry truth (the manifest's ``truth_path``). The subject (donor)
of a mask is the text after the last underscore of its file name (DIDSR:
``roi_<n>_<donor>.nrrd``), so a donor's regions share a cross-validation fold.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from microsr.data.manifest import SpecimenRow, write_manifest
from microsr.data.simulated import SimulationConfig, grey_seed, simulate_specimen_lr
from microsr.errors import MicrosrError
from microsr.evaluation.stacks import stacks_source
from microsr.io import write_volume
from microsr.simulate import MaskGreyConfig, grey_from_mask, read_mask
from microsr.simulate.from_mask import SYNTHETIC_NOTE, centre_crop
from microsr.volume import Volume

log = logging.getLogger(__name__)
MASK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd", ".nii", ".nii.gz", ".tif", ".tiff")
#: Default HR cube side (voxels) of the mask demo: small enough for a CPU fold in minutes.
DEFAULT_CROP = 96


def mask_files(folder: Path) -> list[Path]:
    """The mask volumes of ``folder`` (by extension), sorted by name."""
    if not folder.is_dir():
        raise MicrosrError(f"{folder}: not a folder of masks")
    files = sorted(p for p in folder.iterdir() if p.name.lower().endswith(MASK_SUFFIXES))
    if not files:
        raise MicrosrError(f"{folder}: no mask volumes ({', '.join(MASK_SUFFIXES)})")
    return files


def subject_of(path: Path) -> str:
    """The subject named by a mask's file name: the text after its last underscore."""
    stem = stacks_source(path)
    return stem.rsplit("_", 1)[-1] if "_" in stem else stem


def mask_manifest(
    mask_dir: str | Path,
    out_dir: str | Path,
    *,
    spacing_mm: float | tuple[float, float, float] | None,
    crop: int | None = DEFAULT_CROP,
    seed: int = 0,
    site: str = "vertebra",
) -> Path:
    """Grey HR, simulated LR and truth mask of every mask in ``mask_dir``; the manifest.

    Parameters
    ----------
    mask_dir
        Folder of binary masks (0/1 or 0/255), one region each.
    out_dir
        Receives ``<id>_hr.mha``, ``<id>_lr.mha``, ``<id>_truth.nrrd``, ``manifest.csv``
        (with ``subject`` and ``truth_path``) and ``data.json`` (what was made, and how).
    spacing_mm
        Voxel size of the masks in mm (needed when they store none, as the DIDSR NRRDs).
    crop
        Side of the central cube kept (HR voxels); ``None``: the whole mask.
    seed
        Seeds the grey levels and the LR scan of each mask, with its id
        (:mod:`microsr.data.simulated`: the one seeding rule), whatever the folder holds.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, specimens, simulation = [], {}, SimulationConfig(seed=seed)
    for path in mask_files(Path(mask_dir)):
        sid = stacks_source(path)
        mask, spacing = read_mask(path, spacing_mm=spacing_mm)
        mask = centre_crop(mask, crop)
        hr = grey_from_mask(
            mask, spacing, MaskGreyConfig(), seed=grey_seed(seed, sid), source=str(path)
        )
        lr, simulated = simulate_specimen_lr(hr, sid, simulation)
        truth = Volume(mask.astype(np.uint8), spacing)
        row = SpecimenRow(
            sid, site, write_volume(lr, out_dir / f"{sid}_lr.mha", overwrite=True),
            write_volume(hr, out_dir / f"{sid}_hr.mha", overwrite=True),
            extra={"subject": subject_of(path)},
            truth_path=write_volume(truth, out_dir / f"{sid}_truth.nrrd", overwrite=True),
        )  # fmt: skip
        rows.append(row)
        specimens[sid] = {
            "mask": str(path), "subject": subject_of(path), "shape": list(mask.shape),
            "spacing_mm": list(spacing), "bv_tv": float(mask.mean()),
            "grey": hr.metadata["from_mask"], "acquisition": simulated["acquisition"],
        }  # fmt: skip
        log.info("%s: HR %s (BV/TV %.3f) -> LR %s", sid, hr.shape, mask.mean(), lr.shape)
    record = {"note": SYNTHETIC_NOTE, "crop": crop, "specimens": specimens}
    (out_dir / "data.json").write_text(json.dumps(record, indent=2))
    return write_manifest(rows, out_dir / "manifest.csv")
