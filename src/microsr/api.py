"""The Python API: what a notebook user does, in one place (``import microsr``).

Every function here is a thin layer over the library function that ``microsr`` (the
command line) calls, so a notebook gets the same checks, geometry and units rules as the
shell. Arrays are ``(Z, Y, X)``, spacing and origin ``(z, y, x)`` in mm, densities in mg
HA/cm3 (a :class:`~microsr.volume.Volume` carries them with its calibration). Inputs may be
a :class:`~microsr.volume.Volume` or a volume file (its format by extension,
:data:`microsr.io.SUPPORTED_FORMATS`); ``spacing_mm`` is needed only for files that store
none (plain TIFF).

This module imports only numpy at import time: torch, ITK and the configs (:data:`CONFIGS`)
load on the first call or attribute that needs them, so ``import microsr`` stays fast.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from microsr import _CONFIGS, _FUNCTIONS
from microsr.errors import MicrosrError
from microsr.volume import Calibration, Volume  # noqa: F401 (Calibration: re-exported)

if TYPE_CHECKING:  # for the signatures only (torch-free at run time)
    import numpy as np

    from microsr.data.prepare_config import PrepareConfig
    from microsr.evaluation import ScoreConfig, SpecimenScores
    from microsr.inference.checkpoint import LoadedModel
    from microsr.inference.distributed import DaskConfig
    from microsr.inference.runner import PredictOptions
    from microsr.morphometry import MorphometryConfig, MorphometryResult
    from microsr.simulate import AcquisitionConfig
    from microsr.simulate.acquisition_file import AcquisitionFile
    from microsr.simulate.fit import AcquisitionFit
    from microsr.study.config import StudyConfig
    from microsr.training.config import TrainConfig
    from microsr.training.train import TrainResult

__all__ = list(_FUNCTIONS)  # the one list: microsr/__init__.py

#: The configs the functions take, by name -> their module (loaded on first use, so that
#: e.g. ``microsr.PredictOptions`` imports torch only when asked for).
CONFIGS = {
    "AcquisitionConfig": "microsr.simulate.config",
    "DaskConfig": "microsr.inference.distributed",
    "ModelConfig": "microsr.models.config",
    "MorphometryConfig": "microsr.morphometry.config",
    "PredictOptions": "microsr.inference.runner",
    "PrepareConfig": "microsr.data.prepare_config",
    "ScoreConfig": "microsr.evaluation.scores",
    "StudyConfig": "microsr.study.config",
    "TrainConfig": "microsr.training.config",
}

if set(CONFIGS) != set(_CONFIGS):  # the root re-exports exactly these
    raise ImportError("microsr._CONFIGS and microsr.api.CONFIGS name different configs")

PathLike = str | Path
Spacing = float | Sequence[float] | None


def __getattr__(name: str):
    if name in CONFIGS:
        return getattr(importlib.import_module(CONFIGS[name]), name)
    raise AttributeError(f"module 'microsr.api' has no attribute {name!r}")


def _volume(value: Volume | PathLike, spacing_mm: Spacing = None) -> Volume:
    """``value`` itself, or the volume file it names read whole."""
    return value if isinstance(value, Volume) else read_volume(value, spacing_mm=spacing_mm)


# ---------------------------------------------------------------------------- volumes


def read_volume(path: PathLike, *, spacing_mm: Spacing = None) -> Volume:
    """Read a volume file or folder with its spacing, origin and density calibration.

    Parameters
    ----------
    path
        A file (format by extension: TIFF, NIfTI, MetaImage, NRRD, Scanco ISQ/AIM,
        OME-Zarr) or a folder of 2D TIFF slices or one DICOM series.
    spacing_mm
        Voxel size in mm, one number (isotropic) or ``(z, y, x)``; required where the file
        stores none, and wins (with a warning) over a stored one.

    Returns
    -------
    Volume
        ``array`` ``(Z, Y, X)`` in the stored dtype, ``spacing_mm`` and ``origin_mm``
        ``(z, y, x)`` in mm, ``calibration`` (grey value -> mg HA/cm3) if stored.

    Raises
    ------
    InputFileError
        Missing, unreadable or truncated file; no spacing; NaN/Inf voxels.
    """
    from microsr.io import read_volume as read

    return read(path, spacing_mm=spacing_mm)


def write_volume(volume: Volume, path: PathLike, *, overwrite: bool = False) -> Path:
    """Write a volume atomically (the format follows the extension), keeping its spacing,
    origin and calibration.

    Parameters
    ----------
    volume
        ``(Z, Y, X)`` volume; its dtype is kept (TIFF stores float64 as float32).
    path
        Target file, or a folder for 2D TIFF slices.
    overwrite
        Replace an existing output (else it is an error).

    Returns
    -------
    Path
        The written path.
    """
    from microsr.io import write_volume as write

    return write(volume, path, overwrite=overwrite)


def make_phantom(
    shape: tuple[int, int, int] = (64, 160, 160),
    *,
    spacing_mm: float = 0.01,
    site: str = "femur",
    seed: int = 0,
) -> Volume:
    """A synthetic mouse-bone HR volume (:func:`microsr.simulate.make_phantom`).

    Parameters
    ----------
    shape
        ``(Z, Y, X)`` voxels, ``Y, X >= 16``.
    spacing_mm
        Isotropic voxel size, mm.
    site
        ``"femur"`` (thick cortex, sparse trabeculae) or ``"spine"`` (thin cortex, dense).
    seed
        Same seed, same volume.

    Returns
    -------
    Volume
        float32 density in mg HA/cm3 (calibration slope 1, intercept 0).
    """
    from microsr.simulate import make_phantom as make

    return make(shape, spacing_mm=spacing_mm, site=site, seed=seed)  # type: ignore[arg-type,return-value]


# ---------------------------------------------------------------------------- simulation


def simulate_acquisition(
    hr: Volume | PathLike,
    acquisition: AcquisitionConfig | AcquisitionFile | PathLike | None = None,
    *,
    seed: int | None = None,
    spacing_mm: Spacing = None,
    progress: bool = False,
) -> Volume:
    """Simulate the low-resolution microCT scan of an HR volume (``microsr simulate``).

    Parameters
    ----------
    hr
        HR volume ``(Z, Y, X)`` (or its file), grey values or mg HA/cm3.
    acquisition
        The protocol: an :class:`~microsr.simulate.AcquisitionConfig`, an acquisition file
        (from :func:`fit_acquisition`) or its path; None: the default (factor 2).
    seed
        Seed of the noise (None: the protocol's).

    Returns
    -------
    Volume
        float32 ``(Z // f, Y // f, X // f)`` in ``hr``'s units and calibration; spacing
        ``hr.spacing_mm * f``; ``metadata["acquisition"]`` records the protocol
        (:func:`microsr.simulate.simulate_acquisition`).
    """
    from microsr.simulate import AcquisitionConfig
    from microsr.simulate import simulate_acquisition as simulate
    from microsr.simulate.acquisition_file import AcquisitionFile, read_acquisition_file

    config = acquisition
    if isinstance(config, str | Path):
        config = read_acquisition_file(config)
    if isinstance(config, AcquisitionFile):
        config = config.acquisition
    config = config or AcquisitionConfig()
    if seed is not None:
        config = config.model_copy(update={"seed": seed})
    return simulate(_volume(hr, spacing_mm), config, progress=progress)


def fit_acquisition(
    scan: Volume | PathLike,
    reference: Volume | PathLike,
    *,
    factor: int = 2,
    mask: np.ndarray | None = None,
    seed: int = 0,
    out: PathLike | None = None,
    spacing_mm: Spacing = None,
    reference_spacing_mm: Spacing = None,
) -> AcquisitionFit:
    """Fit the simulator's protocol to a real LR scan (``microsr fit-acquisition``).

    Parameters
    ----------
    scan
        The LR scan ``(Z, Y, X)``, any grey units.
    reference
        HR volume to simulate the candidates on, ideally the user's HR data at
        ``scan.spacing_mm / factor``.
    factor
        LR voxel size / HR voxel size of the protocol.
    mask
        Optional bool ``(Z, Y, X)``: the region of ``scan`` to use.
    out
        Also write the acquisition file (``*.json``, for :func:`simulate_acquisition` and
        ``prepare --acquisition``) and its figure (``*.png``) there.
    spacing_mm, reference_spacing_mm
        Voxel sizes in mm of a scan or reference file that stores none.

    Returns
    -------
    AcquisitionFit
        The fitted :class:`~microsr.simulate.AcquisitionConfig` (``.acquisition``), its
        uncertainty and the matched statistics (:func:`microsr.simulate.fit.fit_acquisition`).
    """
    from microsr.simulate.fit import fit_acquisition as fit

    lr = _volume(scan, spacing_mm)
    ref = _volume(reference, reference_spacing_mm)
    result = fit(lr, factor=factor, reference=ref, mask=mask, seed=seed)
    if out is not None:
        from microsr.report.fit_figure import write_fit

        source = scan if not isinstance(scan, Volume) else lr.metadata.get("source", "")
        write_fit(result, out, scan_path=str(source), spacing_mm=lr.spacing_mm)
    return result


# ---------------------------------------------------------------------------- training


def prepare_dataset(
    manifest: PathLike,
    out_dir: PathLike,
    config: PrepareConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Check LR/HR pairs, pair every HR slice with LR, fit the intensity window and split by
    specimen (``microsr prepare``; :func:`microsr.data.prepare.prepare_dataset`).

    Parameters
    ----------
    manifest
        CSV with columns ``specimen,site,lr_path,hr_path`` (an empty ``lr_path``: simulated
        from HR with ``config.simulation``).
    out_dir
        The dataset folder (``dataset.json``, ``splits.json``, ``specimens/``).
    config
        A :class:`~microsr.data.prepare_config.PrepareConfig` (ROI side in HR voxels,
        intensity window, split seed, simulation of missing LR scans, ...); None: the
        defaults.
    overwrite
        Replace the dataset files of an existing non-empty ``out_dir``.

    Returns
    -------
    Path
        ``out_dir``.
    """
    from microsr.data.prepare import prepare_dataset as prepare

    return prepare(manifest, out_dir, config, overwrite=overwrite, progress=progress)


def _read_config_file(path: PathLike) -> dict:
    """A config file's mapping: YAML (``.yaml``, ``.yml``) or JSON (any other name).

    Raises
    ------
    MicrosrError
        Unreadable file, bad syntax, or not a mapping.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MicrosrError(f"{path}: config file not readable ({exc.strerror or exc})") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml  # PyYAML (a dependency of dask)

        errors: tuple[type[Exception], ...] = (yaml.YAMLError,)
        load = yaml.safe_load
    else:
        errors, load = (ValueError,), json.loads
    try:
        data = load(text)
    except errors as exc:
        raise MicrosrError(f"{path}: not valid {path.suffix or 'JSON'} ({exc})") from None
    if not isinstance(data, dict):
        raise MicrosrError(f"{path}: a config file holds a mapping of field: value")
    return data


def train_config(file: PathLike | None = None, /, **fields: Any) -> TrainConfig:
    """A :class:`~microsr.training.config.TrainConfig` from a file and keyword overrides.

    Parameters
    ----------
    file
        YAML or JSON of TrainConfig fields (e.g. a run's ``train_config.json``); fields it
        leaves out keep their defaults.
    **fields
        TrainConfig fields that override the file's. ``model``: a
        :class:`~microsr.models.config.ModelConfig`, or a mapping of some of its fields;
        mappings (the file's, then this one) complete the default network
        (:data:`~microsr.training.config.DEFAULT_MODEL`). With ``init`` (fine-tuning) and no
        network given, the network is the checkpoint's.

    Raises
    ------
    MicrosrError
        Unreadable file.
    pydantic.ValidationError
        An unknown field or a bad value.
    """
    from microsr.training.config import TrainConfig

    data = _read_config_file(file) if file is not None else {}
    network, from_file = fields.pop("model", None), data.pop("model", None)
    data.update(fields)
    if network is not None and not isinstance(network, dict):
        data["model"] = network
    elif network is not None or from_file is not None:
        default = TrainConfig.model_fields["model"].default.model_dump()
        data["model"] = {**default, **(from_file or {}), **(network or {})}
    elif data.get("init") is not None:
        from microsr.training.finetune import InitSource

        data["model"] = InitSource(data["init"]).meta.network
    return TrainConfig.model_validate(data)


def train(
    dataset_dir: PathLike,
    run_dir: PathLike,
    config: TrainConfig | PathLike | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train a model on a prepared dataset (``microsr train``).

    Parameters
    ----------
    dataset_dir
        From :func:`prepare_dataset`.
    run_dir
        A new folder: ``best.ckpt`` (lowest validation loss), ``last.ckpt``, logs and
        ``train_config.json``.
    config
        A :class:`~microsr.training.config.TrainConfig`, or a YAML/JSON file of its fields
        (:func:`train_config`); None: the defaults (100 epochs).
    resume
        Continue from ``run_dir/last.ckpt``.

    Returns
    -------
    TrainResult
        ``best`` and ``last`` checkpoint paths, the metrics CSV and the config used.
    """
    from microsr.training.config import TrainConfig
    from microsr.training.train import train as run

    cfg = config if isinstance(config, TrainConfig) else train_config(config)
    return run(dataset_dir, run_dir, cfg, resume=resume, progress=progress)


# ---------------------------------------------------------------------------- prediction


def load_model(checkpoint: PathLike, *, device: str = "auto") -> LoadedModel:
    """Load a checkpoint for :func:`predict` (the network, its factors, normalisation and
    units are all in the checkpoint).

    Parameters
    ----------
    checkpoint
        A ``.ckpt`` from :func:`train`, or a run folder (its ``best.ckpt``).
    device
        ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda"``.
    """
    from microsr.device import resolve_device
    from microsr.inference.checkpoint import load_checkpoint

    path = Path(checkpoint)
    path = path / "best.ckpt" if path.is_dir() else path
    return load_checkpoint(path, device=resolve_device(device))


def predict(
    model: LoadedModel | PathLike,
    lr: Volume | PathLike,
    *,
    device: str = "auto",
    options: PredictOptions | None = None,
    spacing_mm: Spacing = None,
    progress: bool = True,
) -> Volume:
    """Super-resolve an in-memory LR volume (:func:`microsr.inference.predict.predict_volume`).

    The rules are ``microsr predict``'s: each axis is upsampled from the input's own voxel
    size to the model's HR voxel size, and the output is in the input's units.

    Parameters
    ----------
    model
        From :func:`load_model`, or a checkpoint path (loaded on ``device``).
    lr
        LR volume ``(Z, Y, X)`` or its file.
    options
        :class:`~microsr.inference.runner.PredictOptions` (output grid, units, tiling,
        precision, test-time augmentation); None: the defaults.

    Returns
    -------
    Volume
        float32 SR volume on the HR grid (spacing the model's HR voxel in mm, origin
        aligned with the LR volume's), in the input's units and calibration (or mg HA/cm3,
        ``options.output_units``).
    """
    from microsr.inference.predict import predict_volume

    loaded = model if not isinstance(model, str | Path) else load_model(model, device=device)
    return predict_volume(loaded, _volume(lr, spacing_mm), options=options, progress=progress)


def predict_file(
    checkpoint: PathLike,
    lr_path: PathLike,
    out_path: PathLike,
    *,
    spacing_mm: Spacing = None,
    device: str = "auto",
    options: PredictOptions | None = None,
    overwrite: bool = False,
    dask: DaskConfig | str | None = None,
    progress: bool = True,
) -> Path:
    """Super-resolve one LR volume file into ``out_path`` (``microsr predict CKPT LR OUT``).

    The file is read and written slice by slice, so memory stays bounded; the output
    appears only when complete.

    Parameters
    ----------
    checkpoint
        A ``.ckpt`` from :func:`train`.
    lr_path, out_path
        Input and output volume files (formats by extension).
    spacing_mm
        Voxel size in mm of an input that stores none.
    dask
        None: predict in this process (:func:`microsr.inference.predict.predict_file`).
        A :class:`~microsr.inference.distributed.DaskConfig` or a scheduler (``"local:N"``
        or an address): split the volume over Dask workers into the OME-Zarr store
        ``out_path`` (``*.zarr``), resumably (:func:`~microsr.inference.distributed.predict_dask`).

    Returns
    -------
    Path
        ``out_path``.
    """
    if dask is None:
        from microsr.inference.predict import predict_file as predict_one

        return predict_one(checkpoint, lr_path, out_path, spacing_mm=spacing_mm, device=device,
                           options=options, overwrite=overwrite, progress=progress)  # fmt: skip
    from microsr.inference.distributed import DaskConfig, predict_dask

    config = dask if isinstance(dask, DaskConfig) else DaskConfig(scheduler=dask)
    return predict_dask(checkpoint, lr_path, out_path, config=config, spacing_mm=spacing_mm,
                        device=device, options=options, overwrite=overwrite)  # fmt: skip


def predict_batch(
    checkpoint: PathLike,
    inputs: Sequence[PathLike] = (),
    *,
    out_dir: PathLike | None = None,
    manifest: PathLike | None = None,
    out_suffix: str | None = None,
    spacing_mm: Spacing = None,
    shard: str | None = None,
    device: str = "auto",
    options: PredictOptions | None = None,
    overwrite: bool = False,
) -> dict[str, list[Path]]:
    """Super-resolve many LR volume files with one loaded model (``microsr predict
    --out-dir`` / ``--manifest``); outputs already complete are skipped.

    Parameters
    ----------
    inputs, out_dir, out_suffix
        LR volume files written into ``out_dir`` under their own names (format
        ``out_suffix``, e.g. ``".mha"``; default: the input's).
    manifest
        Instead: a CSV with columns ``input,output[,spacing_mm]``.
    shard
        ``"I/N"``: only part ``I`` (0-based) of ``N`` of the jobs; None: the SLURM array
        task's part when run in one, else all (:func:`microsr.inference.batch.select_shard`).

    Returns
    -------
    dict
        ``{"written": [...], "skipped": [...]}`` output paths.
    """
    from microsr.inference.batch import plan_jobs, select_shard
    from microsr.inference.batch import predict_batch as run_batch

    jobs = plan_jobs(list(inputs), out_dir=out_dir, manifest=manifest, out_suffix=out_suffix,
                     spacing_mm=spacing_mm)  # fmt: skip
    return run_batch(checkpoint, select_shard(jobs, shard), device=device, options=options,
                     overwrite=overwrite)  # fmt: skip


# ---------------------------------------------------------------------------- scores


def evaluate(
    hr: Volume | PathLike,
    lr: Volume | PathLike,
    sr: Volume | PathLike | None = None,
    *,
    config: ScoreConfig | None = None,
    truth: PathLike | None = None,
    spacing_mm: Spacing = None,
) -> SpecimenScores:
    """PSNR/SSIM, BA/TA, intensity bias and 3D morphometry of LR (interpolated) and SR
    against HR, on every HR slice (``microsr evaluate --hr --lr --sr``).

    Parameters
    ----------
    hr, lr, sr
        Volumes or files (all of one kind); SR as :func:`predict` writes it (HR grid, HR
        units). Files are read slab by slab.
    config
        A :class:`~microsr.evaluation.ScoreConfig` (intensity scale, 3D features, bone
        threshold); without a ``morphometry`` threshold set, bone is segmented at 500 mg
        HA/cm3 when HR is calibrated, else at Otsu's threshold of HR.
    truth
        Files only: a binary bone mask on the HR grid; LR, SR and HR are also scored
        against it.

    Returns
    -------
    SpecimenScores
        ``slices`` (one row per HR slice) and ``summary`` (means, 3D features); tables and
        ``summary.json`` with :func:`write_evaluation`.
    """
    from microsr.evaluation import (
        ScoreConfig,
        default_morphometry,
        evaluate_files,
        evaluate_volumes,
    )
    from microsr.volume import is_density

    default = _default_threshold(config)
    if not isinstance(hr, Volume):
        return evaluate_files(hr, lr, sr, spacing_mm=spacing_mm, config=config,  # type: ignore[arg-type]
                              default_threshold=default, truth=truth)[0]  # fmt: skip
    if not isinstance(lr, Volume) or not (sr is None or isinstance(sr, Volume)):
        raise MicrosrError("evaluate: give HR, LR and SR all as Volumes or all as files")
    if truth is not None:
        raise MicrosrError("evaluate: truth goes with files (a mask file on the HR grid)")
    if default:
        morph = default_morphometry(is_density(hr.calibration))
        config = (config or ScoreConfig()).model_copy(update={"morphometry": morph})
    return evaluate_volumes(hr, lr, sr, name=str(lr.metadata.get("source", "lr")), config=config)


def _default_threshold(config: ScoreConfig | None) -> bool:
    """Whether the scores segment bone by the default rule: no morphometry threshold was
    set in ``config`` (500 mg HA/cm3 when HR is calibrated, else Otsu of HR)."""
    return config is None or "morphometry" not in config.model_fields_set


def evaluate_dataset(
    dataset_dir: PathLike,
    model: LoadedModel | PathLike,
    *,
    split: str = "test",
    device: str = "auto",
    config: ScoreConfig | None = None,
) -> list[SpecimenScores]:
    """Scores of a model on every specimen of a prepared dataset's ``split``
    (``microsr evaluate DATASET RUN OUT``), on the dataset's intensity window.

    ``model``: from :func:`load_model`, a checkpoint or a run folder. ``config`` without a
    ``morphometry`` threshold: the dataset's rule (500 mg HA/cm3 if calibrated, else Otsu
    of HR).
    """
    from microsr.evaluation import evaluate_dataset as run

    return run(dataset_dir, model, split=split, device=device, config=config,
               default_threshold=_default_threshold(config))  # fmt: skip


def write_evaluation(results: Sequence[SpecimenScores], out_dir: PathLike) -> dict:
    """Write ``summary.json`` and the per-slice and per-specimen tables of
    :func:`evaluate` / :func:`evaluate_dataset` results into ``out_dir``; returns the
    summary (:func:`microsr.evaluation.format_summary` prints it)."""
    from microsr.evaluation import write_evaluation as write

    return write(list(results), out_dir)


def compute_morphometry(
    volume: Volume | PathLike,
    config: MorphometryConfig | None = None,
    *,
    mask: np.ndarray | None = None,
    features_3d: bool = True,
    spacing_mm: Spacing = None,
) -> MorphometryResult:
    """Segment a volume and measure it: slice-wise BA/TA and 3D features (BV/TV, Tb.Th,
    Tb.Sp, Tb.N, Conn.D, ...) (``microsr morphometry``).

    Parameters
    ----------
    volume
        ``(Z, Y, X)`` volume or file; calibrated for a threshold in mg HA/cm3.
    config
        A :class:`~microsr.morphometry.MorphometryConfig` (threshold, Gaussian sigma in
        voxels, total-area rule); None: 500 mg HA/cm3.
    mask
        Optional bool ``(Z, Y, X)`` region of interest.

    Returns
    -------
    MorphometryResult
        ``slices`` (BA/TA per slice; areas in mm2), ``features`` (3D, lengths in mm) and
        ``info`` (how they were computed); :func:`microsr.morphometry.write_morphometry`
        writes them.
    """
    from microsr.morphometry import morphometry_volume

    vol = _volume(volume, spacing_mm)
    name = str(volume) if not isinstance(volume, Volume) else "volume"
    return morphometry_volume(vol, config, mask=mask, features_3d=features_3d, name=name)


def run_study(
    manifest: PathLike,
    out_dir: PathLike,
    config: StudyConfig | PathLike | None = None,
    *,
    title: str | None = None,
    progress: bool = True,
) -> dict:
    """The whole study: prepare, train per site and pooled, predict, evaluate, morphometry,
    statistics and an HTML report (``microsr study``); run again to resume.

    Parameters
    ----------
    config
        A :class:`~microsr.study.config.StudyConfig` or its JSON file (as in
        ``study.json``'s ``"config"``); None: the demo's (1 minute of training per model).

    Returns
    -------
    dict
        ``sites``, ``models``, ``n_evaluations``, ``problems`` and the ``report`` path.
    """
    from microsr.study import run_study as run
    from microsr.study import study_config

    cfg = config if config is None or not isinstance(config, str | Path) else study_config(config)
    return run(manifest, out_dir, cfg or study_config(), title=title, progress=progress)
