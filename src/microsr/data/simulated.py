"""LR scans simulated during ``prepare`` for manifest rows without one.

A manifest row with an empty ``lr_path`` gets its LR scan simulated from its HR scan
(:func:`microsr.simulate.simulate_acquisition`) with the prepare config's acquisition, or,
with ``randomize``, a draw from its ranges (:func:`microsr.simulate.draw_acquisition`).
With an acquisition file (``prepare --acquisition``, :mod:`microsr.simulate.acquisition_file`)
the acquisition is the file's, and ``randomize`` draws within the file's uncertainty
(:func:`~microsr.simulate.acquisition_file.draw_within_uncertainty`); the whole file is
recorded in ``dataset.json`` (``config.simulation.acquisition_file``).
Each specimen is seeded by the simulation seed and its id, so its draw and noise do not
depend on the manifest's order. The record of what was simulated goes to the specimen's
entry of ``dataset.json`` (``"simulated"``).

``draws`` > 1 simulates that many LR scans of each *training* specimen (draw 0 is the one a
single draw gives; draw ``d`` is seeded by the seed, the id and ``d``): with ``randomize``,
``draws`` acquisitions per bone instead of one, so a handful of training bones still spread
over the ranges; without it, independent noise realisations of the one protocol. Training
reads every draw as its own pairs (:class:`microsr.data.dataset.SlicePairs`); validation and
test specimens get one.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel, ConfigDict, Field, model_validator

from microsr.simulate import (
    AcquisitionConfig,
    AcquisitionRanges,
    draw_acquisition,
    draw_record,
    simulate_acquisition,
)
from microsr.simulate.acquisition_file import AcquisitionFile, draw_within_uncertainty
from microsr.simulate.randomize import specimen_rng
from microsr.volume import Volume

log = logging.getLogger(__name__)


class SimulationConfig(BaseModel):
    """How ``prepare`` simulates the LR scans a manifest lacks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    acquisition: AcquisitionConfig = Field(
        AcquisitionConfig(), description="the acquisition (its seed is replaced per specimen)"
    )
    randomize: bool = Field(False, description="draw each specimen's acquisition from ranges")
    ranges: AcquisitionRanges = AcquisitionRanges()
    seed: int = Field(0, description="seed of the per-specimen draws and noise")
    draws: int = Field(
        1, ge=1, le=64, description="LR scans simulated per training specimen (module docstring)"
    )
    acquisition_file: AcquisitionFile | None = Field(
        None,
        description="the acquisition file (``--acquisition``) the acquisition comes from; "
        "with ``randomize``, draws are within its uncertainty instead of from ``ranges``",
    )

    @model_validator(mode="after")
    def _file_acquisition(self) -> SimulationConfig:
        if self.acquisition_file is not None:
            if self.acquisition_file.acquisition != self.acquisition.model_copy(
                update={"seed": self.acquisition_file.acquisition.seed}
            ):
                raise ValueError("acquisition must be the acquisition file's")
            if self.randomize and self.acquisition_file.uncertainty is None:
                raise ValueError(
                    "randomize with an acquisition file draws within its 'uncertainty', "
                    "which the file does not have"
                )
        return self

    @classmethod
    def from_file(cls, file: AcquisitionFile, **fields) -> SimulationConfig:
        """The config simulating with ``file``'s acquisition (``fields``: randomize, seed,
        draws)."""
        return cls(acquisition=file.acquisition, acquisition_file=file, **fields)


def simulate_specimen_lr(
    hr: Volume, specimen: str, config: SimulationConfig, *, draw: int = 0
) -> tuple:
    """The simulated LR volume of ``hr`` (its ``draw``-th acquisition) and its record.

    Returns
    -------
    (Volume, dict)
        The LR scan (grey units of ``hr``) and ``{"randomized", "acquisition" (the drawn
        settings or the noise seed), "attenuation" (rule and resolved reference)}``.
    """
    rng = specimen_rng(config.seed, specimen if draw == 0 else f"{specimen}#{draw}")
    if config.randomize and config.acquisition_file is not None:
        acq = draw_within_uncertainty(config.acquisition_file, rng, config.acquisition)
        settings = draw_record(acq)
    elif config.randomize:
        acq = draw_acquisition(config.ranges, config.acquisition, rng)
        settings = draw_record(acq)
    else:
        acq = config.acquisition.model_copy(update={"seed": int(rng.integers(2**31 - 1))})
        settings = acq.model_dump(mode="json")
    lr = simulate_acquisition(hr, acq)
    log.info(
        "%s: simulated LR %s (draw %d) from HR %s (%s)", specimen, lr.shape, draw, hr.shape,
        settings,
    )  # fmt: skip
    record = {
        "randomized": config.randomize,
        "acquisition": settings,
        "attenuation": lr.metadata["acquisition_resolved"]["attenuation"],
    }
    return lr, record
