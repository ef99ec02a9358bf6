"""``microsr demo``: the whole pipeline on phantoms (or a user's HR volume) in a few minutes.

Phantom specimens (or slabs of one HR volume, as pseudo-specimens) -> simulated LR scans ->
``prepare`` -> ``train`` -> ``predict`` on the held-out test specimens -> ``evaluate``.

A top-level app over the library (only the CLI imports it): the specimens come from
:mod:`microsr.data.simulated`, the training config from :mod:`microsr.study.demo`.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from microsr.data.prepare import PrepareConfig, load_dataset_info, prepare_dataset
from microsr.data.prepare_config import file_prepare_config
from microsr.data.simulated import simulated_manifest
from microsr.errors import MicrosrError
from microsr.evaluation import evaluate_volumes, write_evaluation
from microsr.evaluation.dataset import SCORING
from microsr.evaluation.scores import dataset_scoring
from microsr.inference.predict import predict_file
from microsr.io import read_volume
from microsr.simulate import AcquisitionRanges
from microsr.simulate.acquisition_file import AcquisitionFile
from microsr.study.demo import demo_train_config
from microsr.training.train import train

log = logging.getLogger(__name__)

N_PHANTOMS = 6
N_SLABS = 8


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
    for sid in splits.test:
        lr_path, hr_path = out_dir / "data" / f"{sid}_lr.mha", out_dir / "data" / f"{sid}_hr.mha"
        sr_path = predict_file(
            out_dir / "best.ckpt", lr_path, out_dir / "predictions" / f"{sid}_sr.mha",
            options=SCORING, progress=False,
        )  # fmt: skip
        hr, lr, sr = read_volume(hr_path), read_volume(lr_path), read_volume(sr_path)
        results.append(evaluate_volumes(hr, lr, sr, name=sid, config=scoring))
    return write_evaluation(results, out_dir)
