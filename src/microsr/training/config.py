"""Training configuration (saved, in full, inside every checkpoint)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from microsr.models.factory import ModelConfig


class TrainConfig(BaseModel):
    """Options of :func:`microsr.training.train.train`.

    Defaults follow the paper (Adam, learning rate 0.001, 100 epochs, binary
    cross-entropy) except the model width (16 instead of 64, so a CPU can train it) and
    patch-based training (96 x 96 patches; the U-Net is fully convolutional, so prediction
    runs on whole slices). One epoch draws one random patch from every training slice.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: ModelConfig = ModelConfig()
    epochs: int = Field(100, ge=1)
    max_minutes: float | None = Field(None, gt=0, description="stop after this wall time")
    lr: float = Field(1e-3, gt=0)
    loss: Literal["bce", "l1", "mse", "ssim", "l1_ssim"] = "bce"
    grad_weight: float = Field(0.0, ge=0, description="weight of the edge (gradient L1) term")
    batch_size: int = Field(8, ge=1)
    patch: int = Field(96, ge=16)
    augment: bool = True
    device: str = "auto"
    devices: int = Field(1, ge=1)
    num_nodes: int = Field(1, ge=1)
    precision: Literal["32", "16-mixed", "bf16-mixed"] = "32"
    num_workers: int = Field(0, ge=0)
    accumulate: int = Field(1, ge=1, description="batches per optimizer step")
    val_max_slices: int = Field(16, ge=1, description="validation slices per val specimen set")
    seed: int | None = None
