"""Training configuration (saved, in full, inside every checkpoint), torch-free.

The CLI reads its defaults from here (``microsr --help`` needs no torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from microsr.models.config import ModelConfig
from microsr.morphometry.config import MorphometryConfig

#: The paper's U-Net (David et al.; Ronneberger et al. 2015), width 16 for CPUs.
PAPER_MODEL = ModelConfig(name="unet", width=16, depth=3, in_channels=1)
#: The default: the same U-Net predicting a residual over bilinear, with 2.5D input (k = 1).
DEFAULT_MODEL = ModelConfig(name="unet_residual", width=16, depth=3, in_channels=3)


#: Weight of the structure-aware term by default: the compare winner on morphometry (BA/TA,
#: BV/TV and Tb.Th errors lower by more than their CIs, PSNR/SSIM unchanged within theirs;
#: README, "Choosing a model").
DEFAULT_STRUCTURE_WEIGHT = 0.5


class TrainConfig(BaseModel):
    """Options of :func:`microsr.training.train.train`.

    Optimiser and schedule follow the paper (Adam, learning rate 0.001, 100 epochs), with
    patch-based training (96 x 96 patches; the networks are fully convolutional, so
    prediction runs on whole slices; one epoch draws one random patch from every training
    slice, once per LR draw of ``prepare --draws``). The default model and loss are the winners of ``microsr compare`` on held-out
    slabs of real bone (BENCHMARKS.md): a 2.5D residual U-Net (3 neighbouring LR slices,
    width 16) with the L1 + (1 - SSIM) loss. :data:`PAPER_MODEL` with ``loss="bce"`` is
    the paper's U-Net with binary cross-entropy (``microsr train --paper``).

    ``structure_weight > 0`` adds a structure-aware term (soft bone fraction and soft Dice,
    plus clDice with ``cldice``) at the morphometry threshold (:mod:`microsr.training.structure`);
    ``structure_threshold=None`` derives the threshold from the dataset
    (:func:`microsr.training.threshold.structure_threshold`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: ModelConfig = Field(
        DEFAULT_MODEL,
        description="the network (microsr.models.config.ModelConfig): name, width, depth, "
        "in_channels (2k + 1 for k neighbouring LR slices each side), norm, dropout, blocks",
    )
    epochs: int = Field(100, ge=1, description="epochs (one random patch per training slice each)")
    max_minutes: float | None = Field(
        None, gt=0, description="stop after this wall time, minutes; None: epochs only"
    )
    lr: float = Field(1e-3, ge=0, description="Adam learning rate (0: weights unchanged)")
    loss: Literal["bce", "l1", "mse", "ssim", "l1_ssim"] = Field(
        "l1_ssim",
        description="training loss: l1_ssim (L1 + (1 - SSIM)) | bce (the paper's) | l1 | mse "
        "| ssim",
    )
    grad_weight: float = Field(0.0, ge=0, description="weight of the edge (gradient L1) term")
    structure_weight: float = Field(
        DEFAULT_STRUCTURE_WEIGHT,
        ge=0,
        description="weight of the structure (soft BA/TA + Dice) term; 0: off (the paper)",
    )
    structure_threshold: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="bone threshold in the model's unit range; None: derived from the dataset",
    )
    structure_tau: float = Field(0.02, gt=0, description="sigmoid width of the soft threshold")
    structure_sigma: float = Field(
        MorphometryConfig.model_fields["sigma_vox"].default,
        ge=0,
        description="Gaussian sigma (voxels) before the soft threshold, as the morphometry",
    )
    cldice: bool = Field(False, description="add the clDice topology term to the structure term")
    batch_size: int = Field(8, ge=1, description="patches per batch (per device)")
    patch: int = Field(96, ge=16, description="side of the square training patches, HR pixels")
    augment: bool = Field(
        True, description="a random 90-degree rotation and flip of each training patch"
    )
    noise_augment: float = Field(
        0.0,
        ge=0,
        le=1,
        description="extra LR noise at training time: std up to this (unit range), CT texture",
    )
    device: str = Field("auto", description="auto | cpu | cuda (microsr.device.resolve_device)")
    devices: int = Field(1, ge=1, description="GPUs (or CPU processes) per node; > 1: DDP")
    num_nodes: int = Field(1, ge=1, description="nodes (torchrun / SLURM), DDP")
    precision: Literal["32", "16-mixed", "bf16-mixed"] = Field(
        "32", description="Lightning precision: 32 | 16-mixed | bf16-mixed"
    )
    channels_last: bool = Field(
        True, description="NHWC memory layout: faster convolutions (BENCHMARKS.md), same values"
    )
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")
    accumulate: int = Field(1, ge=1, description="batches per optimizer step")
    val_max_slices: int = Field(
        16,
        ge=1,
        description="whole validation slices scored per epoch, evenly spaced over the "
        "validation specimens",
    )
    seed: int | None = Field(
        None, description="seed of weights and patch sampling; None: generated and recorded"
    )
    init: str | None = Field(
        None,
        description="fine-tune: start from this checkpoint's weights (fresh optimiser, epoch "
        "0, its normalisation; microsr.training.finetune); None: fresh weights",
    )
    freeze_batchnorm: bool | None = Field(
        None,
        description="keep BatchNorm layers in evaluation mode (their running statistics "
        "fixed); None: frozen when fine-tuning (init), updated otherwise",
    )

    @property
    def frozen_batchnorm(self) -> bool:
        """Whether BatchNorm statistics stay fixed (``freeze_batchnorm``, resolved)."""
        return self.init is not None if self.freeze_batchnorm is None else self.freeze_batchnorm
