"""LR scans simulated during ``prepare`` for manifest rows without one.

A manifest row with an empty ``lr_path`` gets its LR scan simulated from its HR scan
(:func:`microsr.simulate.simulate_acquisition`) with the prepare config's acquisition, or,
with ``randomize``, a draw from its ranges (:func:`microsr.simulate.draw_acquisition`).
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

from pydantic import BaseModel, ConfigDict, Field

from microsr.simulate import (
    AcquisitionConfig,
    AcquisitionRanges,
    draw_acquisition,
    draw_record,
    simulate_acquisition,
)
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
    if config.randomize:
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
