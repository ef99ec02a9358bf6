"""Data for demonstration studies: phantom femur and spine sites, or slabs of one scan.

``microsr study-demo OUT_DIR`` writes ``OUT_DIR/data/manifest.csv`` (HR phantoms or slabs
and their simulated LR scans) and runs the study into ``OUT_DIR/study``.
"""

from __future__ import annotations

from pathlib import Path

from microsr.data.prepare import PrepareConfig
from microsr.data.prepare_config import file_prepare_config
from microsr.data.simulated import (
    SimulationConfig,
    phantom_specimens,
    simulate_pairs,
    simulated_manifest,
    slab_specimens,
)
from microsr.errors import MicrosrError
from microsr.io import read_volume
from microsr.morphometry.config import MorphometryConfig, default_morphometry
from microsr.simulate import AcquisitionConfig
from microsr.simulate.acquisition_file import AcquisitionFile
from microsr.study.acquisitions import FRAMES_PROTOCOLS, acquisition_manifest
from microsr.study.config import StudyConfig
from microsr.training.config import TrainConfig

#: Train/val/test fractions of the demos: 8 specimens per site -> 4 / 1 / 3.
DEMO_FRACTIONS = (0.5, 0.125, 0.375)


def phantom_manifest(
    out_dir: str | Path,
    *,
    per_site: int = 8,
    shape: tuple[int, int, int] = (24, 128, 128),
    seed: int = 0,
    quick: bool = False,
    file: AcquisitionFile | None = None,
) -> Path:
    """Phantom "femur" (thick cortex, sparse rods) and "spine" (thin cortex, dense plates)
    specimens at 10 um with simulated 20 um LR scans (``file``: that acquisition file's
    protocol); returns the manifest path."""
    specimens = [
        spec
        for site in ("femur", "spine")
        for spec in phantom_specimens(per_site, seed=seed, shape=shape, site=site, prefix=site)
    ]
    acq = AcquisitionConfig(seed=seed, quick=quick)
    if file is not None:
        sim = SimulationConfig.from_file(file, seed=seed)
    else:
        sim = SimulationConfig(acquisition=acq, seed=seed)
    return simulate_pairs(specimens, out_dir, sim)


def slab_manifest(
    volume: str | Path,
    out_dir: str | Path,
    *,
    n_slabs: int = 8,
    spacing_mm: float | None = None,
    site: str = "user",
    seed: int = 0,
    file: AcquisitionFile | None = None,
) -> Path:
    """Slabs of one HR scan as pseudo-specimens of one site, with simulated LR scans
    (``file``: that acquisition file's protocol)."""
    return simulated_manifest(
        out_dir, data=volume, spacing_mm=spacing_mm, n_specimens=n_slabs, seed=seed, site=site,
        file=file,
    )  # fmt: skip


def frames_manifest(
    out_dir: str | Path,
    *,
    n: int = 8,
    data: str | Path | None = None,
    spacing_mm: float | None = None,
    seed: int = 0,
    file: AcquisitionFile | None = None,
) -> Path:
    """The paper's frames experiment: ``n`` phantom femurs (or slabs of ``data``), each
    simulated with 1 and with 3 frame averages (:data:`FRAMES_PROTOCOLS`), starting from
    the simulator's defaults or ``file``'s protocol."""
    base = AcquisitionConfig(seed=seed)
    if file is not None:
        base = file.acquisition.model_copy(update={"seed": seed})
    if data is None:
        specimens = phantom_specimens(n, seed=seed)
    else:
        specimens = slab_specimens(read_volume(data, spacing_mm=spacing_mm), n, factor=base.factor)
    return acquisition_manifest(specimens, out_dir, FRAMES_PROTOCOLS, base=base)


def demo_train_config(*, minutes: float, seed: int = 0) -> TrainConfig:
    """The demos' training: the default model and loss, 64 px patches, a wall-time budget."""
    return TrainConfig(
        epochs=10_000, max_minutes=minutes, patch=64, batch_size=8, seed=seed, device="auto"
    )


def demo_config(
    *, minutes: float = 1.0, calibrated: bool = True, seed: int = 0, features_3d: bool = True
) -> StudyConfig:
    """A study config that trains each model for ``minutes`` on a CPU.

    Intensities: the default of ``prepare`` (one window fitted on the training specimens), so
    SR files are in the HR scan's units and are thresholded like HR. Bone: 500 mg HA/cm3 on
    calibrated data (the phantoms), Otsu's threshold of the HR scan on uncalibrated data.
    """
    return StudyConfig(
        prepare=PrepareConfig(roi=400, split_seed=seed, fractions=DEMO_FRACTIONS),
        train=demo_train_config(minutes=minutes, seed=seed),
        morphometry=default_morphometry(calibrated),
        features_3d=features_3d,
    )


def study_config(
    config_file: str | Path | None = None,
    *,
    minutes: float | None = None,
    epochs: int | None = None,
    device: str | None = None,
    calibrated: bool = True,
    morphometry: MorphometryConfig | None = None,
    acquisition: AcquisitionFile | None = None,
) -> StudyConfig:
    """The config of ``microsr study`` / ``study-demo``: a saved StudyConfig JSON, or
    :func:`demo_config` with ``minutes`` (default 1) or ``epochs`` per model; then the
    given morphometry and device; ``acquisition``: the acquisition file the data were
    simulated with, recorded in the prepare config (dataset.json, checkpoints).

    Raises
    ------
    MicrosrError
        ``config_file`` unreadable or not a StudyConfig.
    """
    if config_file is not None:
        try:
            cfg = StudyConfig.model_validate_json(Path(config_file).read_text())
        except (OSError, ValueError) as exc:
            raise MicrosrError(f"{config_file}: not a study config ({exc})") from None
    else:
        cfg = demo_config(minutes=minutes or 1.0, calibrated=calibrated)
        train = {"epochs": epochs} if epochs is not None else {}
        if minutes is None and epochs is not None:
            train["max_minutes"] = None
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update=train)})
    if morphometry is not None:
        cfg = cfg.model_copy(update={"morphometry": morphometry})
    if acquisition is not None:
        cfg = cfg.model_copy(update={"prepare": file_prepare_config(cfg.prepare, acquisition)})
    return cfg if device is None else cfg.model_copy(update={"device": device})
