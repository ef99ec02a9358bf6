"""``microsr demo``: the whole pipeline on phantoms (or a user's HR volume) in a few minutes.

Phantom specimens (or slabs of one HR volume, as pseudo-specimens) -> simulated LR scans ->
``prepare`` -> ``train`` -> ``predict`` on the held-out test specimens -> ``evaluate``.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from microsr.data.manifest import SpecimenRow, write_manifest
from microsr.data.prepare import PrepareConfig, load_dataset_info, prepare_dataset
from microsr.errors import MicrosrError
from microsr.evaluation import evaluate_volumes, write_evaluation
from microsr.evaluation.scores import dataset_scoring
from microsr.inference.predict import predict_file
from microsr.io import read_volume, write_volume
from microsr.simulate import (
    AcquisitionConfig,
    AcquisitionRanges,
    draw_acquisition,
    draw_record,
    make_phantom,
    simulate_acquisition,
)
from microsr.simulate.randomize import specimen_rng
from microsr.training.config import TrainConfig
from microsr.training.train import train
from microsr.volume import Volume

log = logging.getLogger(__name__)

PHANTOM_SHAPE = (48, 160, 160)  # HR voxels (Z, Y, X) at 10 um
N_PHANTOMS = 6
N_SLABS = 8


def phantom_specimens(n: int, *, seed: int) -> list[tuple[str, str, Volume]]:
    """``n`` femur-like phantom HR volumes at 10 um, as ``(id, site, volume)``."""
    return [
        (
            f"phantom{i:02d}",
            "femur",
            make_phantom(PHANTOM_SHAPE, spacing_mm=0.01, site="femur", seed=seed + i),
        )
        for i in range(n)
    ]


def slab_specimens(
    hr: Volume, n: int, *, factor: int, site: str = "user"
) -> list[tuple[str, str, Volume]]:
    """Cut an HR volume along z into ``n`` slabs (pseudo-specimens) of equal thickness."""
    thick = (hr.shape[0] // n) // factor * factor
    if thick < factor:
        raise MicrosrError(f"volume has {hr.shape[0]} slices: too few for {n} slabs")
    out = []
    for i in range(n):
        z0 = i * thick
        origin = (hr.origin_mm[0] + z0 * hr.spacing_mm[0],) + hr.origin_mm[1:]
        arr = np.ascontiguousarray(hr.array[z0 : z0 + thick], dtype=np.float32)
        out.append((f"slab{i:02d}", site, hr.with_array(arr, origin_mm=origin)))
    return out


def make_pairs(
    specimens, data_dir: Path, acq: AcquisitionConfig, ranges: AcquisitionRanges | None = None
) -> Path:
    """Simulate LR scans, write LR/HR volumes and a manifest; returns the manifest path.

    With ``ranges``, each specimen's acquisition is drawn from them (seeded by ``acq.seed``
    and the specimen id). ``data_dir/acquisitions.json`` records every specimen's settings
    and attenuation rule.
    """
    rows, records = [], {}
    data_dir.mkdir(parents=True, exist_ok=True)
    for sid, site, hr in specimens:
        if ranges is not None:
            this = draw_acquisition(ranges, acq, specimen_rng(acq.seed, sid))
        else:
            this = acq.model_copy(update={"seed": acq.seed + len(rows)})
        lr = simulate_acquisition(hr, this)
        records[sid] = {
            "randomized": ranges is not None,
            "acquisition": draw_record(this),
            "attenuation": lr.metadata["acquisition_resolved"]["attenuation"],
        }
        hr_path = write_volume(hr, data_dir / f"{sid}_hr.mha")
        lr_path = write_volume(lr, data_dir / f"{sid}_lr.mha")
        rows.append(SpecimenRow(sid, site, lr_path, hr_path))
        log.info("simulated %s: HR %s -> LR %s", sid, hr.shape, lr.shape)
    (data_dir / "acquisitions.json").write_text(json.dumps(records, indent=2))
    return write_manifest(rows, data_dir / "manifest.csv")


def simulated_manifest(
    out_dir: str | Path,
    *,
    data: str | Path | None = None,
    spacing_mm: float | tuple[float, float, float] | None = None,
    n_specimens: int,
    seed: int = 0,
    site: str = "user",
    ranges: AcquisitionRanges | None = None,
) -> Path:
    """Phantom femur specimens (``data=None``) or ``n_specimens`` z-slabs of the HR volume
    ``data`` (pseudo-specimens of ``site``), with simulated LR scans, written to ``out_dir``
    with a manifest; returns the manifest path.

    The simulator works in physical attenuation (``reference_value="auto"``: a calibrated
    volume's own, else the 99.5th percentile taken as bone), so the noise level is
    plausible whatever the grey-value range. ``ranges``: randomised acquisitions.
    """
    acq = AcquisitionConfig(seed=seed)
    if data is None:
        specimens = phantom_specimens(n_specimens, seed=seed)
    else:
        hr = read_volume(data, spacing_mm=spacing_mm)
        specimens = slab_specimens(hr, n_specimens, factor=acq.factor, site=site)
    return make_pairs(specimens, Path(out_dir), acq, ranges)


def demo_train_config(*, minutes: float, seed: int = 0) -> TrainConfig:
    """The demos' training: the default model and loss, 64 px patches, a wall-time budget."""
    return TrainConfig(
        epochs=10_000, max_minutes=minutes, patch=64, batch_size=8, seed=seed, device="auto"
    )


def run_demo(
    out_dir: str | Path,
    *,
    data: str | Path | None = None,
    spacing_mm: float | None = None,
    minutes: float = 3.0,
    seed: int = 0,
    progress: bool = True,
    randomize: bool = False,
) -> dict:
    """Run the demo; leaves ``best.ckpt`` and ``summary.json`` (test specimens) in ``out_dir``.

    ``randomize``: every specimen's LR scan gets its own acquisition drawn from the default
    :class:`~microsr.simulate.AcquisitionRanges` (recorded in ``data/acquisitions.json``).

    The SR volumes (``predictions/<id>_sr.mha``) are on the HR grid and in the HR scan's
    units; they are scored against HR on every HR slice (:mod:`microsr.evaluation`).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise MicrosrError(f"{out_dir}: output folder exists and is not empty")
    n = N_PHANTOMS if data is None else N_SLABS
    manifest = simulated_manifest(
        out_dir / "data", data=data, spacing_mm=spacing_mm, n_specimens=n, seed=seed,
        ranges=AcquisitionRanges() if randomize else None,
    )  # fmt: skip
    dataset = prepare_dataset(
        manifest, out_dir / "dataset", PrepareConfig(split_seed=seed), progress=progress
    )
    cfg = demo_train_config(minutes=minutes, seed=seed)
    result = train(dataset, out_dir / "run", cfg, progress=progress)
    shutil.copyfile(result.best, out_dir / "best.ckpt")
    info, splits = load_dataset_info(dataset)
    scoring = dataset_scoring(info)
    results = []
    for sid in splits["test"]:
        lr_path, hr_path = out_dir / "data" / f"{sid}_lr.mha", out_dir / "data" / f"{sid}_hr.mha"
        sr_path = predict_file(
            out_dir / "best.ckpt", lr_path, out_dir / "predictions" / f"{sid}_sr.mha",
            progress=False,
        )  # fmt: skip
        hr, lr, sr = read_volume(hr_path), read_volume(lr_path), read_volume(sr_path)
        results.append(evaluate_volumes(hr, lr, sr, name=sid, config=scoring))
    return write_evaluation(results, out_dir)
