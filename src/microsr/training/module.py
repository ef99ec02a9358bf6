"""The Lightning module: a model, a loss, Adam, and PSNR/SSIM on validation slices."""

from __future__ import annotations

import lightning as L
import torch

from microsr.checkpoint import CHECKPOINT_KEY, new_meta
from microsr.data.normalize import NormalizationConfig
from microsr.metrics import psnr_batch, ssim_batch
from microsr.models.factory import build_model
from microsr.training.config import TrainConfig
from microsr.training.losses import compute_loss
from microsr.training.noise import add_noise
from microsr.training.structure import StructureTerm


class SRModule(L.LightningModule):
    """Super-resolution training wrapper around a plain ``nn.Module``.

    Parameters
    ----------
    config
        ``TrainConfig`` as a plain dict (JSON types only, so checkpoints load with
        ``torch.load(weights_only=True)``).
    data
        What the model needs to know about its data at prediction time: ``factor``,
        ``z_factor`` and ``normalization`` (dict), recorded in every checkpoint; with a
        structure term, also the unit-range ``structure_threshold`` it was trained with
        (when ``config`` leaves it to the dataset); with ``noise_augment``, the dataset's
        reconstruction filter ``noise_filter`` (the noise texture); ``provenance``
        (acquisition file, fine-tuning source: :class:`~microsr.checkpoint.CheckpointMeta`).

    With ``config.freeze_batchnorm`` (default when fine-tuning, ``config.init``), BatchNorm
    layers stay in evaluation mode while training: they normalise with the running
    statistics they came with and do not update them.
    """

    def __init__(self, config: dict, data: dict) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.cfg = TrainConfig.model_validate(config)
        self.model = build_model(self.cfg.model)
        if self.cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.structure = _structure_term(self.cfg, data.get("structure_threshold"))

    def on_train_batch_start(self, batch, batch_idx) -> None:
        if self.cfg.frozen_batchnorm:  # Lightning puts the module in train mode each epoch
            for m in self.model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def training_step(self, batch, batch_idx):
        lr, hr = batch
        if self.cfg.noise_augment:
            data = self.hparams["data"]
            lr = add_noise(
                lr, self.cfg.noise_augment, factor=int(data["factor"]),
                filter_name=data.get("noise_filter", "ramp"),
            )  # fmt: skip
        loss = self._loss(self(lr), hr)
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx):
        lr, hr = batch
        logits = self(lr)
        pred = torch.sigmoid(logits).float()
        val_loss = self._loss(logits, hr)
        self.log("val_loss", val_loss, prog_bar=True, sync_dist=True)
        self.log(
            "val_psnr", psnr_batch(pred, hr, data_range=1.0).mean(), prog_bar=True, sync_dist=True
        )
        self.log("val_ssim", ssim_batch(pred, hr, data_range=1.0).mean(), sync_dist=True)

    def _loss(self, logits: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return compute_loss(
            logits, hr, self.cfg.loss, grad_weight=self.cfg.grad_weight,
            structure=self.structure, structure_weight=self.cfg.structure_weight,
        )  # fmt: skip

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.cfg.lr)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Everything `predict` needs, in JSON types: the checkpoint describes itself.
        meta = new_meta(
            self.cfg.model,
            factor=int(self.hparams["data"]["factor"]),
            z_factor=self.hparams["data"].get("z_factor"),
            normalization=NormalizationConfig.model_validate(self.hparams["data"]["normalization"]),
            train_config=self.cfg.model_dump(mode="json"),
            seed=self.cfg.seed,
            model_class=type(self.model).__name__,
            provenance=self.hparams["data"].get("provenance"),
            lr_spacing_mm=self.hparams["data"].get("lr_spacing_mm"),
            hr_spacing_mm=self.hparams["data"].get("hr_spacing_mm"),
            units=self.hparams["data"].get("units"),
        )
        checkpoint[CHECKPOINT_KEY] = meta.to_dict()


def _structure_term(cfg: TrainConfig, derived: float | None) -> StructureTerm | None:
    """The structure term of ``cfg`` (its own threshold, else ``derived``); ``None`` if off."""
    if not cfg.structure_weight:
        return None
    threshold = cfg.structure_threshold if cfg.structure_threshold is not None else derived
    if threshold is None:
        raise ValueError("structure_weight > 0 needs a structure_threshold (unit range)")
    return StructureTerm(
        threshold=threshold, tau=cfg.structure_tau, sigma_vox=cfg.structure_sigma,
        cldice=cfg.cldice,
    )  # fmt: skip
