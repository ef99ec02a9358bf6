"""Simulated specimens: the one library (``prepare``, ``demo``, ``study-demo``, ``compare``).

:func:`simulate_specimen_lr` is the one seeding rule: a specimen's LR scan (its acquisition
draw and its noise) is seeded by the simulation seed and the specimen **id**
(:func:`microsr.simulate.randomize.specimen_rng`), never by its position in a list.
:func:`phantom_specimens` / :func:`slab_specimens` make HR specimens and
:func:`simulate_pairs` / :func:`simulated_manifest` write them with their LR scans and a
manifest.

LR scans simulated during ``prepare`` for manifest rows without one:

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

import json
import logging
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from microsr.data.manifest import SpecimenRow, write_manifest
from microsr.errors import MicrosrError
from microsr.io import read_volume, write_volume
from microsr.simulate import (
    AcquisitionConfig,
    AcquisitionRanges,
    draw_acquisition,
    draw_record,
    make_phantom,
    simulate_acquisition,
)
from microsr.simulate.acquisition_file import (
    AcquisitionFile,
    draw_within_uncertainty,
    write_acquisition_file,
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


def grey_seed(seed: int, specimen: str) -> int:
    """The seed of a specimen's synthetic HR grey levels (e.g. painted on a mask): the
    simulation seed and the specimen id, as its LR scan (:func:`simulate_specimen_lr`)."""
    return int(specimen_rng(seed, f"{specimen}#grey").integers(2**31 - 1))


#: Shape (Z, Y, X) of a demo phantom at 10 um.
PHANTOM_SHAPE = (48, 160, 160)


def phantom_specimens(
    n: int,
    *,
    seed: int = 0,
    shape: tuple[int, int, int] = PHANTOM_SHAPE,
    site: str = "femur",
    prefix: str = "phantom",
) -> list[tuple[str, str, Volume]]:
    """``n`` phantom HR volumes of ``site`` at 10 um, as ``(id, site, volume)``.

    Specimen ``<prefix><i:02d>`` is the phantom of seed ``seed + i``: its index is its id.
    """
    return [
        (f"{prefix}{i:02d}", site, make_phantom(shape, spacing_mm=0.01, site=site, seed=seed + i))
        for i in range(n)
    ]


def slab_specimens(
    hr: Volume, n: int, *, factor: int, site: str = "user"
) -> list[tuple[str, str, Volume]]:
    """Cut an HR volume along z into ``n`` slabs (pseudo-specimens) of equal thickness.

    Each slab's thickness is a multiple of ``factor`` HR slices; its origin is moved to its
    first slice.
    """
    thick = (hr.shape[0] // n) // factor * factor
    if thick < factor:
        raise MicrosrError(f"volume has {hr.shape[0]} slices: too few for {n} slabs")
    out = []
    for i in range(n):
        z0 = i * thick
        origin = (hr.origin_mm[0] + z0 * hr.spacing_mm[0],) + hr.origin_mm[1:]
        arr = np.ascontiguousarray(hr.array[z0 : z0 + thick], dtype=np.float32)
        out.append((f"slab{i:02d}", site, hr.with_array(arr, origin_mm=origin)))
    return out


def simulate_pairs(specimens, data_dir: str | Path, config: SimulationConfig) -> Path:
    """Simulate each HR specimen's LR scan, write both volumes and a manifest.

    Every specimen is simulated by :func:`simulate_specimen_lr` (the one seeding rule:
    ``config.seed`` and the specimen id, whatever the order). ``data_dir/acquisitions.json``
    records each specimen's settings and attenuation rule, ``data_dir/acquisition_file.json``
    a copy of ``config.acquisition_file`` (if any). Returns the manifest path.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    rows, records = [], {}
    for sid, site, hr in specimens:
        lr, records[sid] = simulate_specimen_lr(hr, sid, config)
        hr_path = write_volume(hr, data_dir / f"{sid}_hr.mha")
        lr_path = write_volume(lr, data_dir / f"{sid}_lr.mha")
        rows.append(SpecimenRow(sid, site, lr_path, hr_path))
    (data_dir / "acquisitions.json").write_text(json.dumps(records, indent=2))
    if config.acquisition_file is not None:
        write_acquisition_file(config.acquisition_file, data_dir / "acquisition_file.json")
    return write_manifest(rows, data_dir / "manifest.csv")


def simulated_manifest(
    out_dir: str | Path,
    *,
    data: str | Path | None = None,
    spacing_mm: float | tuple[float, float, float] | None = None,
    n_specimens: int,
    seed: int = 0,
    site: str = "user",
    ranges: AcquisitionRanges | None = None,
    file: AcquisitionFile | None = None,
    randomize: bool = False,
) -> Path:
    """Phantom femurs (``data=None``) or ``n_specimens`` z-slabs of the HR volume ``data``
    (pseudo-specimens of ``site``), with simulated LR scans, in ``out_dir`` with a manifest.

    The simulator works in physical attenuation (``reference_value="auto"``: a calibrated
    volume's own, else the 99.5th percentile taken as bone), so the noise level is
    plausible whatever the grey-value range. ``ranges``: randomised acquisitions; ``file``:
    an acquisition file's protocol (``randomize``: drawn within its uncertainty).
    """
    if file is not None:
        config = SimulationConfig.from_file(file, seed=seed, randomize=randomize)
    else:
        config = SimulationConfig(
            acquisition=AcquisitionConfig(seed=seed), seed=seed, randomize=ranges is not None,
            ranges=ranges or AcquisitionRanges(),
        )  # fmt: skip
    if data is None:
        specimens = phantom_specimens(n_specimens, seed=seed)
    else:
        hr = read_volume(data, spacing_mm=spacing_mm)
        specimens = slab_specimens(hr, n_specimens, factor=config.acquisition.factor, site=site)
    return simulate_pairs(specimens, out_dir, config)
