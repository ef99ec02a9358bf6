"""``microsr train``: one training loop (Lightning) for one CPU, one GPU or many."""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import lightning as L
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch.utils.data import DataLoader

from microsr.data.dataset import PatchDataset, SliceDataset, SlicePairs
from microsr.data.prepare import dataset_units, load_dataset_info, training_spacings
from microsr.device import resolve_device
from microsr.errors import MicrosrError
from microsr.io.atomic import atomic_path, check_output, remove_stale_temporaries
from microsr.runtime import progress_mode
from microsr.training.config import TrainConfig
from microsr.training.finetune import InitSource, check_dataset_fits, check_network, finetune_info
from microsr.training.module import SRModule
from microsr.training.threshold import structure_threshold

log = logging.getLogger(__name__)
SEED_ENV = "MICROSR_SEED"
#: Written by :func:`train` when it returns: the run is finished (its best and last checkpoints).
COMPLETE = "complete.json"


@dataclass(frozen=True)
class TrainResult:
    """Where a training run left its outputs."""

    best: Path
    last: Path
    metrics_csv: Path | None
    config: TrainConfig


class _TrainBar(TQDMProgressBar):
    """Lightning's bar without the per-batch validation bar (one line per epoch in logs)."""

    def init_validation_tqdm(self):
        bar = super().init_validation_tqdm()
        bar.disable = True
        return bar


class EpochLog(Callback):
    """One log line per epoch (train and validation loss): the progress of a run whose
    stderr is not a terminal (a SLURM log, ``2> file``), instead of Lightning's bar."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        losses = ", ".join(
            f"{k} {float(metrics[k]):.4g}" for k in ("train_loss", "val_loss") if k in metrics
        )
        dt = time.perf_counter() - getattr(self, "_t0", time.perf_counter())
        log.info("epoch %d/%d: %s (%.1f s)", trainer.current_epoch + 1,
                 trainer.max_epochs, losses or "no loss logged", dt)  # fmt: skip


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary sibling and renamed: a kill never truncates one.

    Lightning writes ``last.ckpt`` in place; a run killed during that write would leave a
    checkpoint that ``--resume`` cannot read.
    """

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


def _launching_rank() -> bool:
    """Whether this is the process that starts a run (not a DDP rank launched for it)."""
    ranks = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")
    return all(int(os.environ.get(k, "0") or 0) == 0 for k in ranks)


@contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    """Set an environment variable for the block only (the caller's environment is restored)."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


class SRDataModule(L.LightningDataModule):
    """Train patches from the train specimens, whole validation slices from the val ones."""

    def __init__(
        self, dataset_dir: str | Path, config: TrainConfig, init: InitSource | None = None
    ) -> None:
        super().__init__()
        self.dataset_dir, self.cfg = Path(dataset_dir), config
        self.info, self.splits = load_dataset_info(dataset_dir)
        if init is not None:  # fine-tuning: the checkpoint's normalisation, not the dataset's
            check_dataset_fits(init, self.info, dataset_dir)
            self.info = finetune_info(init, self.info)
        # No test specimen reaches training: ``Splits`` refuses overlapping splits (a raise,
        # not an assert, so it holds under `python -O` too).
        if not self.splits.val:
            raise MicrosrError(f"{dataset_dir}: the validation split is empty")
        self.train_pairs, self.val_pairs = self._pairs("train"), self._pairs("val")

    def _pairs(self, split: str) -> SlicePairs:
        context = self.cfg.model.context_slices  # 2.5D: neighbouring LR slices as channels
        return SlicePairs(
            self.dataset_dir, self.info, self.splits[split], context=context, draws=split == "train"
        )

    def train_dataloader(self) -> DataLoader:
        pairs = self.train_pairs
        patch = min(self.cfg.patch, *(min(s) for s in pairs.shapes))
        if patch < self.cfg.patch:
            log.warning("patch %d is larger than the ROI; using %d", self.cfg.patch, patch)
        rank = self.trainer.global_rank if self.trainer is not None else 0
        ds = PatchDataset(pairs, patch=patch, augment=self.cfg.augment, seed=self.cfg.seed + rank)
        return DataLoader(
            ds,
            batch_size=self.cfg.batch_size,
            shuffle=True,
            drop_last=False,
            num_workers=self.cfg.num_workers,
            pin_memory=resolve_device(self.cfg.device).type == "cuda",
            persistent_workers=self.cfg.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        ds = SliceDataset(self.val_pairs, max_slices=self.cfg.val_max_slices)
        # Batch 1: validation specimens may have different ROI sizes.
        return DataLoader(ds, batch_size=1, shuffle=False, num_workers=0)


def _trainer(
    run_dir: Path, cfg: TrainConfig, progress: bool, extra: Sequence[Callback] = ()
) -> L.Trainer:
    device = resolve_device(cfg.device)
    best = ModelCheckpoint(
        dirpath=run_dir,
        filename="best",
        monitor="val_loss",
        mode="min",
        save_top_k=1,
        enable_version_counter=False,
    )
    # Not `save_last=True`: Lightning >= 2.5 refreshes last.ckpt only in epochs where the
    # monitored best improved, so a killed run would resume from an older epoch. An
    # unmonitored checkpoint named "last" is rewritten at the end of every epoch.
    last = ModelCheckpoint(
        dirpath=run_dir, filename="last", save_top_k=1, enable_version_counter=False
    )
    mode = progress_mode() if progress else "off"
    callbacks = [best, last, *extra]
    callbacks += [_TrainBar()] if mode == "bar" else [EpochLog()] if mode == "log" else []
    ddp = cfg.devices * cfg.num_nodes > 1
    return L.Trainer(
        default_root_dir=run_dir,
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy="ddp" if ddp else "auto",
        # small per-GPU batches: BatchNorm statistics over the global batch, and the same
        # running statistics on every rank (PyTorch's SyncBatchNorm is GPU-only; on CPU
        # DDP broadcasts rank 0's buffers at each forward, checkpoints hold rank 0's)
        sync_batchnorm=ddp and device.type == "cuda",
        accumulate_grad_batches=cfg.accumulate,
        plugins=[AtomicCheckpointIO()],
        precision=cfg.precision,
        max_epochs=cfg.epochs,
        max_time=timedelta(minutes=cfg.max_minutes) if cfg.max_minutes else None,
        callbacks=callbacks,
        logger=[
            CSVLogger(run_dir, name="logs", version=""),
            TensorBoardLogger(run_dir, name="tensorboard", version="", default_hp_metric=False),
        ],
        enable_progress_bar=mode == "bar",
        enable_model_summary=False,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        deterministic=False,
    )


def _module_data(data: SRDataModule, config: TrainConfig, init: InitSource | None) -> dict:
    """What the module records about its data and provenance; the derived structure
    threshold if needed."""
    info = data.info
    out = {
        "factor": info.factor,
        "z_factor": info.z_factor,
        "normalization": info.normalization.model_dump(mode="json"),
    }
    if config.noise_augment:  # the texture of the augmentation noise (microsr.training.noise)
        out["noise_filter"] = info.noise_filter
    out["provenance"] = {
        "acquisition_file": info.acquisition_file,
        "init": init.record if init is not None else None,
    }
    # voxel sizes: what the weights saw, not the held-out specimens (a test specimen of
    # another scale must not erase the HR target); units: all specimens, so a dataset whose
    # held-out scans come in other units records none and predict takes inputs as they are
    trained = data.splits.train
    units = dataset_units(info)
    out.update(training_spacings(info, trained), units=units and units.model_dump(mode="json"))
    if config.structure_weight and config.structure_threshold is None:
        sigma = config.structure_sigma
        out["structure_threshold"] = structure_threshold(
            data.info, data.train_pairs, sigma_vox=sigma
        )
    return out


def _with_seed(config: TrainConfig) -> TrainConfig:
    """Seeds are always recorded: generated if not given (a DDP child inherits rank 0's)."""
    if config.seed is not None:
        return config
    child = int(os.environ.get("LOCAL_RANK", "0")) > 0 and SEED_ENV in os.environ
    seed = int(os.environ[SEED_ENV]) if child else secrets.randbelow(2**31)
    return config.model_copy(update={"seed": seed})


def _append_history(metrics: Path, history: pd.DataFrame) -> None:
    """Put a resumed run's earlier rows back in front of ``metrics.csv`` (atomically)."""
    new = pd.read_csv(metrics) if metrics.is_file() else None
    with atomic_path(metrics) as tmp:
        pd.concat([history, new], ignore_index=True).to_csv(tmp, index=False)


def train(
    dataset_dir: str | Path,
    run_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train a model on a prepared dataset; writes ``best.ckpt``, ``last.ckpt`` and the logs.

    Parameters
    ----------
    dataset_dir
        Output of :func:`microsr.data.prepare.prepare_dataset`.
    run_dir
        Where checkpoints (``best.ckpt``: lowest validation loss; ``last.ckpt``), the
        metrics log (``logs/metrics.csv``; the same scalars as TensorBoard events in
        ``tensorboard/``: ``tensorboard --logdir RUN_DIR/tensorboard``) and
        ``train_config.json`` go.
    resume
        Continue from ``run_dir/last.ckpt`` (optimizer state and epoch included) up to
        ``config.epochs``.

        ``config.init``: fine-tune from that checkpoint (:mod:`microsr.training.finetune`:
        its weights, a fresh optimiser, its normalisation; a dataset or network that does
        not fit it is refused).
    progress
        Lightning's progress bar on a terminal; one log line per epoch (:class:`EpochLog`)
        when stderr is not one (:func:`microsr.runtime.progress_mode`); nothing if False.
    callbacks
        Extra Lightning callbacks (e.g. to inspect each rank in a DDP run).

    Notes
    -----
    ``config.devices * config.num_nodes > 1`` trains with DDP (Lightning): ``microsr train``
    started once per node launches one process per device (or runs under ``torchrun`` /
    SLURM ``srun``, which start them). The seed is recorded once; rank ``r`` samples patches
    with ``seed + r`` (the model starts from the same weights everywhere, DDP broadcasts
    rank 0's). Lightning-launched ranks inherit a generated seed; under ``torchrun``/SLURM
    give ``--seed`` so that every rank records the same one.
    """
    run_dir = Path(run_dir)
    last = run_dir / "last.ckpt"
    if resume and not last.is_file():
        raise MicrosrError(f"{run_dir}: nothing to resume (no last.ckpt)")
    if not resume and last.is_file():
        raise MicrosrError(f"{run_dir}: already holds a run (use --resume or another folder)")
    config = _with_seed(config or TrainConfig())
    init = InitSource(config.init) if config.init is not None else None
    if init is not None:
        check_network(init, config.model)
    data = SRDataModule(dataset_dir, config, init)  # checks the dataset before any write
    module_data = _module_data(data, config, init)
    if not resume and _launching_rank():
        check_output(run_dir, inputs=[dataset_dir], folder=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(config.seed, workers=True, verbose=False)
    module = SRModule(config.model_dump(mode="json"), module_data)
    if init is not None and not resume:  # a resumed run restores its own weights
        init.load_into(module.model)
    (run_dir / "train_config.json").write_text(config.model_dump_json(indent=2))
    metrics = run_dir / "logs" / "metrics.csv"
    # Lightning's CSVLogger deletes an existing metrics.csv: keep the history of a resumed run.
    history = pd.read_csv(metrics) if resume and metrics.is_file() else None
    trainer = _trainer(run_dir, config, progress, callbacks)
    if resume and trainer.global_rank == 0:
        remove_stale_temporaries(run_dir)
    if trainer.global_rank:  # other patches on every rank (same start weights, see Notes)
        torch.manual_seed(config.seed + trainer.global_rank)
    with _env(SEED_ENV, str(config.seed)):  # DDP ranks launched by Lightning inherit it
        trainer.fit(module, datamodule=data, ckpt_path=str(last) if resume else None)
    if not last.is_file():  # stopped by max_time before the first checkpoint
        trainer.save_checkpoint(last)
    if history is not None and trainer.global_rank == 0:
        _append_history(metrics, history)
    best = run_dir / "best.ckpt"
    if not best.is_file():
        best = last
    if trainer.global_rank == 0:
        with atomic_path(run_dir / COMPLETE) as tmp:
            tmp.write_text(json.dumps({"best": str(best), "last": str(last)}))
    log.info("training finished: %s", json.dumps({"best": str(best), "last": str(last)}))
    return TrainResult(best, last, metrics if metrics.is_file() else None, config)


def _same_run(saved: TrainConfig, wanted: TrainConfig) -> bool:
    """Where a run trains (``device``) and a seed left to generate do not make another run."""
    ignore = {"device"} | ({"seed"} if wanted.seed is None else set())
    return saved.model_dump(exclude=ignore) == wanted.model_dump(exclude=ignore)


def finished_run(run_dir: str | Path, wanted: TrainConfig) -> Path | None:
    """The best checkpoint of a finished run of ``wanted`` in ``run_dir``, else ``None``.

    A run is finished when :func:`train` returned (it writes :data:`COMPLETE` last); a killed
    run, even one with a ``best.ckpt``, is not.

    Raises
    ------
    MicrosrError
        ``run_dir`` holds a run (finished or not) of another config.
    """
    run_dir = Path(run_dir)
    saved = run_dir / "train_config.json"
    if saved.is_file() and not _same_run(
        TrainConfig.model_validate_json(saved.read_text()), wanted
    ):
        raise MicrosrError(f"{run_dir}: holds a run with another config (remove it to retrain)")
    done = run_dir / COMPLETE
    best = Path(json.loads(done.read_text())["best"]) if done.is_file() else None
    return best if best is not None and best.is_file() else None


def train_or_reuse(
    dataset_dir: str | Path, run_dir: str | Path, config: TrainConfig, *, progress: bool = False
) -> Path:
    """The best checkpoint of ``config`` in ``run_dir``: reused when the run is finished
    (:func:`finished_run`), else trained, resuming from its ``last.ckpt`` when there is one."""
    best = finished_run(run_dir, config)
    if best is not None:
        log.info("%s: trained already (%s)", run_dir, best)
        return best
    resume = (Path(run_dir) / "last.ckpt").is_file()
    log.info("%s: %s training", run_dir, "resuming" if resume else "starting")
    return train(dataset_dir, run_dir, config, resume=resume, progress=progress).best
