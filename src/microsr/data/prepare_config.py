"""The options of ``microsr prepare`` (:class:`PrepareConfig`), apart from the orchestrator
(:mod:`microsr.data.prepare`) so that per-specimen preparation (:mod:`microsr.data.specimen`)
can take it typed."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from microsr.calibration import DatasetUnits
from microsr.data.simulated import SimulationConfig
from microsr.data.splits import DEFAULT_FRACTIONS
from microsr.pairing.registration import RegistrationConfig
from microsr.simulate.acquisition_file import AcquisitionFile

__all__ = ["PrepareConfig"]


class PrepareConfig(BaseModel):
    """Options of :func:`prepare_dataset`.

    ``normalize="window"`` (default): one intensity window for all slices, fixed (``window``,
    e.g. -200..1800 mg HA/cm3) or fitted on the training specimens' HR voxels (robust
    percentiles); the LR input uses the same window (``lr_window="same"``: LR and HR in the
    same units), its own fitted one (``"fit"``: e.g. another scanner or export scaling) or a
    given one. ``normalize="minmax"``: the paper's per-slice min-max (see
    :mod:`microsr.data.normalize`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    roi: int = Field(400, ge=8, description="side of the bone-centred square ROI, in HR voxels")
    normalize: Literal["window", "minmax"] = "window"
    window: tuple[float, float] | None = Field(None, description="fixed HR window (low, high)")
    lr_window: Literal["same", "fit"] | tuple[float, float] = "same"
    split_seed: int = 0
    split_file: Path | None = None
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    tolerance_lr_voxels: float = Field(1.0, gt=0)
    register_lr: bool = Field(False, description="rigidly register each LR scan onto its HR scan")
    registration: RegistrationConfig = RegistrationConfig()
    units: DatasetUnits = Field(
        "native", description="convert both scans to mg HA/cm3 (calibration) before pairing"
    )
    simulation: SimulationConfig = Field(
        SimulationConfig(), description="how LR scans missing from the manifest are simulated"
    )

    @field_validator("window", "lr_window")
    @classmethod
    def _ordered(cls, value):
        if isinstance(value, tuple) and not value[1] > value[0]:
            raise ValueError(f"a window needs LOW < HIGH, got {value}")
        return value

    @model_validator(mode="after")
    def _check_windows(self) -> PrepareConfig:
        if self.normalize == "minmax" and (self.window is not None or self.lr_window != "same"):
            raise ValueError("a window is not used with per-slice min-max normalisation")
        return self


def file_prepare_config(
    config: PrepareConfig, file: AcquisitionFile | None, randomize: bool = False, seed: int = 0
) -> PrepareConfig:
    """``config`` recording the acquisition file the demos simulated their LR scans with
    (``simulation``: what dataset.json and the checkpoints record; the manifest's rows have
    their LR scans, so nothing is simulated again)."""
    if file is None:
        return config
    sim = SimulationConfig.from_file(file, randomize=randomize, seed=seed)
    return config.model_copy(update={"simulation": sim})
