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
from microsr.data.simulated import SimulationConfig
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
from microsr.simulate.acquisition_file import (
    AcquisitionFile,
    draw_within_uncertainty,
    write_acquisition_file,
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


def specimen_acquisition(
    sid: str,
    index: int,
    acq: AcquisitionConfig,
    ranges: AcquisitionRanges | None = None,
    file: AcquisitionFile | None = None,
    randomize: bool = False,
) -> AcquisitionConfig:
    """The acquisition of the ``index``-th specimen ``sid``.

    ``file`` (an acquisition file): its protocol (``acq`` gives the seed only), with
    ``randomize`` drawn within its uncertainty (seeded by the seed and ``sid``). Else ``acq``,
    or with ``ranges`` a draw from them (seeded the same way). Fixed protocols get the noise
    seed ``acq.seed + index``.
    """
    if file is not None:
        base = file.acquisition.model_copy(update={"seed": acq.seed})
        if randomize:
            return draw_within_uncertainty(file, specimen_rng(acq.seed, sid), base)
        return base.model_copy(update={"seed": acq.seed + index})
    if ranges is not None:
        return draw_acquisition(ranges, acq, specimen_rng(acq.seed, sid))
    return acq.model_copy(update={"seed": acq.seed + index})


def make_pairs(
    specimens,
    data_dir: Path,
    acq: AcquisitionConfig,
    ranges: AcquisitionRanges | None = None,
    *,
    file: AcquisitionFile | None = None,
    randomize: bool = False,
) -> Path:
    """Simulate LR scans, write LR/HR volumes and a manifest; returns the manifest path.

    Each specimen's acquisition: :func:`specimen_acquisition`. ``data_dir/acquisitions.json``
    records every specimen's settings and attenuation rule, ``data_dir/acquisition_file.json``
    a copy of ``file``.
    """
    rows, records = [], {}
    data_dir.mkdir(parents=True, exist_ok=True)
    for sid, site, hr in specimens:
        this = specimen_acquisition(sid, len(rows), acq, ranges, file, randomize)
        lr = simulate_acquisition(hr, this)
        records[sid] = {
            "randomized": ranges is not None or (file is not None and randomize),
            "acquisition": draw_record(this),
            "attenuation": lr.metadata["acquisition_resolved"]["attenuation"],
        }
        hr_path = write_volume(hr, data_dir / f"{sid}_hr.mha")
        lr_path = write_volume(lr, data_dir / f"{sid}_lr.mha")
        rows.append(SpecimenRow(sid, site, lr_path, hr_path))
        log.info("simulated %s: HR %s -> LR %s", sid, hr.shape, lr.shape)
    (data_dir / "acquisitions.json").write_text(json.dumps(records, indent=2))
    if file is not None:
        write_acquisition_file(file, data_dir / "acquisition_file.json")
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
    file: AcquisitionFile | None = None,
    randomize: bool = False,
) -> Path:
    """Phantom femur specimens (``data=None``) or ``n_specimens`` z-slabs of the HR volume
    ``data`` (pseudo-specimens of ``site``), with simulated LR scans, written to ``out_dir``
    with a manifest; returns the manifest path.

    The simulator works in physical attenuation (``reference_value="auto"``: a calibrated
    volume's own, else the 99.5th percentile taken as bone), so the noise level is
    plausible whatever the grey-value range. ``ranges``: randomised acquisitions; ``file``:
    an acquisition file's protocol (``randomize``: drawn within its uncertainty), see
    :func:`specimen_acquisition`.
    """
    acq = (
        AcquisitionConfig(seed=seed)
        if file is None
        else file.acquisition.model_copy(update={"seed": seed})
    )
    if data is None:
        specimens = phantom_specimens(n_specimens, seed=seed)
    else:
        hr = read_volume(data, spacing_mm=spacing_mm)
        specimens = slab_specimens(hr, n_specimens, factor=acq.factor, site=site)
    return make_pairs(specimens, Path(out_dir), acq, ranges, file=file, randomize=randomize)


def file_prepare_config(
    config: PrepareConfig, file: AcquisitionFile | None, randomize: bool = False, seed: int = 0
) -> PrepareConfig:
    """``config`` recording the acquisition file the demos simulated their LR scans with
    (``simulation``: what dataset.json and the checkpoints record; the manifest's rows have
    their LR scans, so nothing is simulated again)."""
    if file is None:
        return config
    sim = SimulationConfig.from_file(file, randomize=randomize, seed=seed)
    return config.model_copy(update={"simulation": sim})


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
    acquisition: AcquisitionFile | None = None,
) -> dict:
    """Run the demo; leaves ``best.ckpt`` and ``summary.json`` (test specimens) in ``out_dir``.

    ``randomize``: every specimen's LR scan gets its own acquisition drawn from the default
    :class:`~microsr.simulate.AcquisitionRanges` (recorded in ``data/acquisitions.json``).
    ``acquisition``: every LR scan is simulated with that acquisition file's protocol (with
    ``randomize``: drawn within its uncertainty instead); the dataset and the checkpoint
    record the file (:func:`file_prepare_config`).

    The SR volumes (``predictions/<id>_sr.mha``) are on the HR grid and in the HR scan's
    units; they are scored against HR on every HR slice (:mod:`microsr.evaluation`).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise MicrosrError(f"{out_dir}: output folder exists and is not empty")
    n = N_PHANTOMS if data is None else N_SLABS
    manifest = simulated_manifest(
        out_dir / "data", data=data, spacing_mm=spacing_mm, n_specimens=n, seed=seed,
        ranges=AcquisitionRanges() if randomize and acquisition is None else None,
        file=acquisition, randomize=randomize,
    )  # fmt: skip
    prepare = file_prepare_config(PrepareConfig(split_seed=seed), acquisition, randomize, seed)
    dataset = prepare_dataset(manifest, out_dir / "dataset", prepare, progress=progress)
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
