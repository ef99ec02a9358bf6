"""``microsr prepare``: manifest of LR/HR volumes -> a streamable dataset of slice pairs.

Layout of a prepared dataset folder::

    dataset.json              factor, z_factor, the fitted intensity normalisation, per-specimen
                              crop, HR-grid pairing (``hr_slices``, ``lr_t``) and provenance
    splits.json               specimen-level train/val/test split (seeded or user-given)
    specimens/<id>/lr.npy     (Z_lr, H, W) float32: every LR slice, bilinear-upsampled, raw units
    specimens/<id>/hr.npy     (N, H, W) float32: the HR slices inside the LR box, raw units
    specimens/<id>/lr_<d>.npy further simulated LR scans of a training specimen (``--draws``)

Manifest rows with an empty ``lr_path`` get an LR scan simulated from their HR scan
(:mod:`microsr.data.simulated`; optionally a randomised acquisition per specimen, and
several per training specimen), recorded under the specimen's ``"simulated"`` key in
``dataset.json`` (``acquisition``: draw 0; ``draws``: the further ones).

Every HR slice is a training pair (:mod:`microsr.data.specimen`). The ``.npy`` files are
memory-mapped when read, so training streams patches from disk. The intensity window is
fitted on the *training* specimens only (robust percentiles, :func:`fit_window`), so nothing
about the validation or test specimens leaks into training.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pydantic

from microsr import __version__
from microsr.calibration import WindowUnits, units_of
from microsr.data.manifest import read_manifest
from microsr.data.normalize import (
    NormalizationConfig,
    fit_minmax_inverse,
    fit_window,
)
from microsr.data.prepare_config import PrepareConfig
from microsr.data.records import DatasetInfo, SpecimenRecord, specimen_records
from microsr.data.simulated import simulate_specimen_lr
from microsr.data.specimen import (
    SpecimenSamples,
    bone_centre,
    roi_box,
    write_lr_draw,
    write_specimen,
)
from microsr.data.splits import Splits, make_splits, read_splits, write_splits
from microsr.errors import MicrosrError
from microsr.io import read_volume
from microsr.io.atomic import atomic_folder, check_output
from microsr.io.spacing import SPACING_SCALE_RTOL, spacing_off
from microsr.runtime import progress as make_progress

__all__ = [
    "DATASET_FORMAT",
    "PrepareConfig",
    "bone_centre",
    "fit_normalization",
    "load_dataset_info",
    "prepare_dataset",
    "roi_box",
]

log = logging.getLogger(__name__)
CHUNK = 16  # slices processed at once: bounds memory by the chunk, not the volume


DATASET_FORMAT = 2
#: The entries of a dataset folder that ``prepare --overwrite`` replaces.
OWNED = ("dataset.json", "splits.json", "specimens")


def fit_normalization(
    config: PrepareConfig, samples: list[SpecimenSamples], *, name: str = "training specimens"
) -> NormalizationConfig:
    """The dataset's :class:`NormalizationConfig`, from the training specimens' samples."""
    if not samples:
        raise MicrosrError(f"{name}: no training specimen to fit the intensity normalisation on")
    if config.normalize == "minmax":
        inverse = fit_minmax_inverse(
            np.concatenate([s.lr_stats for s in samples]),
            np.concatenate([s.hr_ranges for s in samples]),
        )
        return NormalizationConfig(
            mode="minmax", inverse=inverse,
            source=f"per-slice min-max; output range fitted on {inverse.n_slices} training pairs",
        )  # fmt: skip
    hr_voxels = np.concatenate([s.hr_voxels for s in samples])
    lr_voxels = np.concatenate([s.lr_voxels for s in samples])
    if config.window is not None:
        low, high, source = *config.window, "fixed window"
    else:
        low, high = fit_window(hr_voxels, name=f"HR voxels of the {name}")
        source = f"HR percentiles 0.1/99.9 (+5 %) of {len(samples)} training specimen(s)"
    lr_fit = fit_window(lr_voxels, name=f"LR voxels of the {name}")
    lr_low = lr_high = None
    if config.lr_window == "fit":
        lr_low, lr_high = lr_fit
    elif isinstance(config.lr_window, tuple):
        lr_low, lr_high = config.lr_window
    elif max(abs(lr_fit[0] - low), abs(lr_fit[1] - high)) > 0.25 * (high - low):
        log.warning(
            "%s: the LR intensities (%.4g..%.4g) differ from the HR window (%.4g..%.4g) by more "
            "than a quarter of its width; if LR and HR are not in the same units, prepare "
            "with --lr-window fit", name, *lr_fit, low, high,
        )  # fmt: skip
    return NormalizationConfig(
        mode="window", low=low, high=high, lr_low=lr_low, lr_high=lr_high, source=source
    )


def prepare_dataset(
    manifest: str | Path,
    out_dir: str | Path,
    config: PrepareConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Build a prepared dataset folder from a manifest (see the module docstring).

    All pairs are geometry-checked before their slices are written; the folder's entries
    appear only when every specimen succeeded. An existing non-empty folder needs
    ``overwrite``, which replaces only ``dataset.json``, ``splits.json`` and ``specimens/``.

    Raises
    ------
    MicrosrError
        Bad manifest, unreadable volume, inconsistent pair geometry or scale factor, an
        output that is an input or not writable, no intensity window computable.
    """
    out_dir = Path(out_dir)
    config = config or PrepareConfig()
    rows = read_manifest(manifest, allow_missing_lr=True)
    inputs = [manifest, *(p for r in rows for p in (r.lr_path, r.hr_path) if p is not None)]
    check_output(out_dir, inputs=inputs, overwrite=overwrite, folder=True, owned=OWNED)
    splits = _splits(rows, config)
    meta, samples = {}, []
    owned = lambda entry: entry.name in OWNED
    with atomic_folder(out_dir, overwrite=overwrite, replaceable=owned) as tmp:
        for row in make_progress(rows, desc="prepare", unit="specimen", disable=not progress):
            train = row.specimen in splits.train
            meta[row.specimen], sample = _specimen(row, tmp / "specimens", config, train)
            samples += [sample] if sample is not None else []
        norm = fit_normalization(config, samples)
        info = _dataset_info(manifest, meta, config, norm)
        (tmp / "dataset.json").write_text(json.dumps(info.to_json(), indent=2))
        write_splits(splits, tmp / "splits.json")
    log.info(
        "prepared %d specimens (%d HR-grid pairs; normalisation: %s) in %s",
        len(meta), sum(m.n_slices for m in meta.values()), norm.source, out_dir,
    )  # fmt: skip
    return out_dir


def _splits(rows, config: PrepareConfig) -> Splits:
    """The user's split file, or a seeded split by specimen (by subject where given)."""
    specimens = {r.specimen: r.site for r in rows}
    if config.split_file is not None:
        return read_splits(config.split_file, set(specimens))
    subjects = {r.specimen: r.extra["subject"] for r in rows if r.extra.get("subject")}
    return make_splits(
        specimens, seed=config.split_seed, fractions=config.fractions, subjects=subjects
    )


def _specimen(row, folder: Path, config: PrepareConfig, train: bool):
    """Read (or simulate) one specimen's LR and HR and write its pairs into ``folder/<id>``."""
    hr = read_volume(row.hr_path, spacing_mm=row.hr_spacing_mm)
    if row.lr_path is not None:
        lr = read_volume(row.lr_path, spacing_mm=row.lr_spacing_mm)
        return write_specimen(lr, hr, row, folder / row.specimen, config, sample=train)
    sim = config.simulation
    lr, simulated = simulate_specimen_lr(hr, row.specimen, sim)
    record, sample = write_specimen(lr, hr, row, folder / row.specimen, config, sample=train)
    del lr  # one simulated scan in memory at a time
    draws = []  # the acquisitions of draws 1, 2... (draw 0: "acquisition")
    for d in range(1, sim.draws if train else 1):
        lr, more = simulate_specimen_lr(hr, row.specimen, sim, draw=d)
        write_lr_draw(lr, hr, row, folder / row.specimen, config, record, draw=d)
        draws.append(more["acquisition"])
        del lr
    simulated = {**simulated, "draws": draws}
    update = {"lr_path": None, "simulated": simulated, "n_lr_draws": 1 + len(draws)}
    return record.model_copy(update=update), sample


def _dataset_info(
    manifest, meta: dict[str, SpecimenRecord], config: PrepareConfig, norm: NormalizationConfig
) -> DatasetInfo:
    """``dataset.json``: one scale factor for all specimens, the window, every record."""
    factors = {(m.factor, m.z_factor) for m in meta.values()}
    if len(factors) != 1:
        hint = ""
        if config.simulation.acquisition_file is not None:
            factor = config.simulation.acquisition.factor
            hint = f" (the acquisition file's factor is {factor}: it must agree with the data's)"
        raise MicrosrError(
            f"{manifest}: specimens have different scale factors (in-plane, z) "
            f"{sorted(factors)}{hint}"
        )
    factor, z_factor = factors.pop()
    _warn_spacings(meta)
    return DatasetInfo(
        format="microsr-dataset",
        format_version=DATASET_FORMAT,
        microsr_version=__version__,
        factor=factor,
        z_factor=z_factor,
        z_grid="hr",
        config=json.loads(config.model_dump_json()),
        normalization=norm,
        specimens=meta,
    )


def _warn_spacings(meta: dict[str, SpecimenRecord]) -> None:
    """Warn about specimens whose LR voxel is more than ``SPACING_SCALE_RTOL`` (10 %) off the
    median LR voxel (per axis):
    the model learns one physical scale, and ``predict`` compares inputs with the median."""
    median = _median_spacings(meta.values()).get("lr_spacing_mm")
    for sid, m in meta.items():
        off = [
            f"{a} {s:.4g} vs {t:.4g} mm"
            for a, s, t in zip("zyx", m.lr_spacing_mm or (), median or ())
            if spacing_off(s, t, SPACING_SCALE_RTOL)
        ]
        if off:
            log.warning(
                "%s: LR voxel size more than %d %% off the dataset's median LR voxel (%s); "
                "the model will learn structures at mixed physical scales", sid,
                round(100 * SPACING_SCALE_RTOL), "; ".join(off),
            )  # fmt: skip


def training_spacings(info: dict | DatasetInfo, specimens=None) -> dict:
    """``{"lr_spacing_mm": (z, y, x), "hr_spacing_mm": (z, y, x)}``: the median voxel sizes
    (mm) of a dataset's specimens, which a checkpoint records; ``{}`` if none are recorded,
    and ``{}`` (with a warning) when the specimens' HR voxels differ by more than 10 % on an
    axis: pooled sources of several physical scales have no one HR target, so ``predict``
    then keeps the trained factors relative to each input (:mod:`microsr.inference.scale`).

    ``info`` is a :class:`~microsr.data.records.DatasetInfo` or its JSON, whose specimen
    records may lack the voxel sizes (then not counted); ``specimens``: the ids counted
    (None: all; a checkpoint counts its training split's, not the test specimens'; ids that
    are not in the dataset count nothing, never the other specimens instead)."""
    return _median_spacings(_records(info, specimens).values())


def _records(info, specimens) -> dict:
    records = specimen_records(info)
    if specimens is None:
        return records
    wanted = set(specimens)
    return {k: m for k, m in records.items() if k in wanted}  # none: none counted


def _median_spacings(specimens) -> dict:
    """:func:`training_spacings` of typed specimen records."""
    found = {
        key: np.asarray([getattr(m, key) for m in specimens if getattr(m, key, None)], float)
        for key in ("lr_spacing_mm", "hr_spacing_mm")
    }
    hr = found["hr_spacing_mm"]
    if len(hr) and any(map(spacing_off, hr.max(axis=0), hr.min(axis=0), [SPACING_SCALE_RTOL] * 3)):
        log.warning(
            "the specimens' HR voxel sizes differ by more than %d %% (%s to %s mm): the "
            "checkpoint records no HR target, and predict keeps the trained factors",
            round(100 * SPACING_SCALE_RTOL), hr.min(axis=0).round(5).tolist(),
            hr.max(axis=0).round(5).tolist(),
        )  # fmt: skip
        return {}
    return {
        key: [float(v) for v in np.median(values, axis=0)]
        for key, values in found.items()
        if len(values)
    }


def dataset_units(info: dict | DatasetInfo) -> WindowUnits | None:
    """The units of a dataset's HR window (:class:`~microsr.calibration.WindowUnits`):
    mg HA/cm3 (``--units mgha`` or density-valued scans), native values with the
    specimens' calibration, or grey values; ``None`` when specimens disagree."""
    found = {}
    for sid, m in specimen_records(info).items():
        meta = {"value_units": "mgha"} if m.units == "mgha" else {}
        found.setdefault(units_of(m.density_calibration, meta).model_dump_json(), sid)
    if len(found) != 1:
        log.warning(
            "the specimens' HR scans come in %d different units (e.g. %s): the checkpoint "
            "records none, and predict takes inputs to be in the model's units",
            len(found), ", ".join(list(found.values())[:3]),
        )  # fmt: skip
        return None
    return WindowUnits.model_validate_json(next(iter(found)))


def load_dataset_info(dataset_dir: str | Path) -> tuple[DatasetInfo, Splits]:
    """Read ``dataset.json`` (typed: :class:`~microsr.data.records.DatasetInfo`) and
    ``splits.json`` (typed: :class:`~microsr.data.splits.Splits`) of a prepared dataset."""
    dataset_dir = Path(dataset_dir)
    try:
        info = json.loads((dataset_dir / "dataset.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MicrosrError(f"{dataset_dir}: not a prepared microsr dataset ({exc})") from None
    if info.get("format") != "microsr-dataset":
        raise MicrosrError(f"{dataset_dir}/dataset.json: not a microsr dataset")
    if info.get("format_version") != DATASET_FORMAT:
        raise MicrosrError(
            f"{dataset_dir}: prepared by microsr {info.get('microsr_version', '?')} (dataset "
            f"format {info.get('format_version')}); prepare it again with this version"
        )
    try:
        typed = DatasetInfo.model_validate(info)
    except pydantic.ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(x) for x in problem["loc"])
        raise MicrosrError(f"{dataset_dir}/dataset.json: {where}: {problem['msg']}") from None
    # a study model's dataset lists its site's specimens only: no check that all are split
    return typed, read_splits(dataset_dir / "splits.json")
