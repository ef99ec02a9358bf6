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


class SRModule(L.LightningModule):
    """Super-resolution training wrapper around a plain ``nn.Module``.

    Parameters
    ----------
    config
        ``TrainConfig`` as a plain dict (JSON types only, so checkpoints load with
        ``torch.load(weights_only=True)``).
    data
        What the model needs to know about its data at prediction time: ``factor``,
        ``z_factor`` and ``normalization`` (dict), recorded in every checkpoint.
    """

    def __init__(self, config: dict, data: dict) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.cfg = TrainConfig.model_validate(config)
        self.model = build_model(self.cfg.model)
        if self.cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def training_step(self, batch, batch_idx):
        lr, hr = batch
        loss = compute_loss(self(lr), hr, self.cfg.loss, grad_weight=self.cfg.grad_weight)
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx):
        lr, hr = batch
        logits = self(lr)
        pred = torch.sigmoid(logits).float()
        val_loss = compute_loss(logits, hr, self.cfg.loss, grad_weight=self.cfg.grad_weight)
        self.log("val_loss", val_loss, prog_bar=True, sync_dist=True)
        self.log(
            "val_psnr", psnr_batch(pred, hr, data_range=1.0).mean(), prog_bar=True, sync_dist=True
        )
        self.log("val_ssim", ssim_batch(pred, hr, data_range=1.0).mean(), sync_dist=True)

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
        )
        checkpoint[CHECKPOINT_KEY] = meta.to_dict()
