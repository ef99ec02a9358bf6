"""What ``microsr compare`` trains: named (model, loss) candidates and the shared budget."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from microsr.models.config import ModelConfig
from microsr.morphometry.config import MorphometryConfig
from microsr.training.config import DEFAULT_STRUCTURE_WEIGHT

__all__ = ["DEFAULT_CANDIDATES", "REFERENCE", "Candidate", "CompareConfig"]

REFERENCE = "unet_bce"  # the paper's model (David et al.): U-Net + binary cross-entropy
#: Weight of the structure candidate's structure term (untuned: pixel and structure terms of
#: the same order on converged patches); the training default since it won `compare`.
STRUCTURE_WEIGHT = DEFAULT_STRUCTURE_WEIGHT


class Candidate(BaseModel):
    """One model to train and score: an architecture and a loss, under a short name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    model: ModelConfig = ModelConfig()
    loss: Literal["bce", "l1", "mse", "ssim", "l1_ssim"] = "bce"
    grad_weight: float = Field(0.0, ge=0)
    structure_weight: float = Field(0.0, ge=0, description="structure term (TrainConfig)")
    cldice: bool = False


def _unet(name: str = "unet", **kw) -> ModelConfig:
    return ModelConfig(name=name, width=16, depth=3, **kw)


DEFAULT_CANDIDATES: tuple[Candidate, ...] = (
    Candidate(name=REFERENCE, model=_unet(), loss="bce"),
    Candidate(name="unet_l1ssim", model=_unet(), loss="l1_ssim"),
    Candidate(name="resunet_bce", model=_unet("unet_residual"), loss="bce"),
    Candidate(name="resunet_l1ssim", model=_unet("unet_residual"), loss="l1_ssim"),
    Candidate(
        name="resunet25d_l1ssim", model=_unet("unet_residual", in_channels=3), loss="l1_ssim"
    ),
    # the default model and loss + the structure term (soft BA/TA + Dice at the bone threshold)
    Candidate(
        name="resunet25d_l1ssim_structure",
        model=_unet("unet_residual", in_channels=3),
        loss="l1_ssim",
        structure_weight=STRUCTURE_WEIGHT,
    ),
    Candidate(
        name="rcan_l1ssim",
        model=ModelConfig(name="rcan", width=16, depth=2, blocks=2, norm="none"),
        loss="l1_ssim",
    ),
)


class CompareConfig(BaseModel):
    """Options of :func:`microsr.compare.run_compare`; every candidate gets the same budget.

    Attributes
    ----------
    candidates
        Models to train; must include ``reference`` (names unique).
    minutes
        Training wall time per candidate (equal time is the fairest budget on a shared CPU;
        the epochs each reached are recorded). ``None``: train ``epochs`` epochs each.
    epochs
        Epoch cap per candidate.
    patch, batch_size
        Training patch side (HR px) and batch size, shared by all candidates.
    seed
        Training seed, the same for all candidates.
    tta
        Score with test-time augmentation (8 flips/rotations).
    reference
        The candidate every other one is tested against (besides bilinear).
    device
        ``auto`` | ``cpu`` | ``cuda``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    candidates: tuple[Candidate, ...] = DEFAULT_CANDIDATES
    minutes: float | None = Field(2.0, gt=0)
    epochs: int = Field(10_000, ge=1)
    patch: int = Field(64, ge=16)
    batch_size: int = Field(8, ge=1)
    seed: int = 0
    tta: bool = False
    reference: str = REFERENCE
    device: str = "auto"
    morphometry: MorphometryConfig | None = Field(
        None,
        description="segmentation for BA/TA and 3D scores; None: 500 mg HA/cm3 on "
        "calibrated data, else Otsu's threshold of the HR scan",
    )

    @model_validator(mode="after")
    def _check_names(self) -> CompareConfig:
        names = [c.name for c in self.candidates]
        if len(set(names)) != len(names):
            raise ValueError(f"candidate names must be unique, got {names}")
        if self.reference not in names:
            raise ValueError(f"reference {self.reference!r} is not among candidates {names}")
        return self
