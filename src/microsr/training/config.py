"""Training configuration (saved, in full, inside every checkpoint)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from microsr.models.factory import ModelConfig

#: The paper's U-Net (David et al.; Ronneberger et al. 2015), width 16 for CPUs.
PAPER_MODEL = ModelConfig(name="unet", width=16, depth=3, in_channels=1)
#: The default: the same U-Net predicting a residual over bilinear, with 2.5D input (k = 1).
DEFAULT_MODEL = ModelConfig(name="unet_residual", width=16, depth=3, in_channels=3)


class TrainConfig(BaseModel):
    """Options of :func:`microsr.training.train.train`.

    Optimiser and schedule follow the paper (Adam, learning rate 0.001, 100 epochs), with
    patch-based training (96 x 96 patches; the networks are fully convolutional, so
    prediction runs on whole slices; one epoch draws one random patch from every training
    slice). The default model and loss are the winners of ``microsr compare`` on held-out
    slabs of real bone (BENCHMARKS.md): a 2.5D residual U-Net (3 neighbouring LR slices,
    width 16) with the L1 + (1 - SSIM) loss. :data:`PAPER_MODEL` with ``loss="bce"`` is
    the paper's U-Net with binary cross-entropy (``microsr train --paper``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: ModelConfig = DEFAULT_MODEL
    epochs: int = Field(100, ge=1)
    max_minutes: float | None = Field(None, gt=0, description="stop after this wall time")
    lr: float = Field(1e-3, gt=0)
    loss: Literal["bce", "l1", "mse", "ssim", "l1_ssim"] = "l1_ssim"
    grad_weight: float = Field(0.0, ge=0, description="weight of the edge (gradient L1) term")
    batch_size: int = Field(8, ge=1)
    patch: int = Field(96, ge=16)
    augment: bool = True
    device: str = "auto"
    devices: int = Field(1, ge=1)
    num_nodes: int = Field(1, ge=1)
    precision: Literal["32", "16-mixed", "bf16-mixed"] = "32"
    channels_last: bool = Field(
        True, description="NHWC memory layout: faster convolutions (BENCHMARKS.md), same values"
    )
    num_workers: int = Field(0, ge=0)
    accumulate: int = Field(1, ge=1, description="batches per optimizer step")
    val_max_slices: int = Field(16, ge=1, description="validation slices per val specimen set")
    seed: int | None = None
