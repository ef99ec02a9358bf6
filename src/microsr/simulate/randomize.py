"""Randomised acquisitions: draw :class:`AcquisitionConfig` settings from ranges.

Training on LR scans simulated with one fixed setting teaches a model that setting's
noise and blur only; drawing photons, frames, projections, the reconstruction filter,
the detector blur, a sub-voxel misregistration and ring strength per specimen
(:func:`draw_acquisition`) spreads the training data over the acquisitions a model may
meet. Photons are drawn log-uniformly (noise variance scales with 1 / photons); the other
continuous settings uniformly; frames uniformly among the integers of their range; the
filter uniformly among ``filters``.
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import pydantic

from microsr.errors import InputFileError, MicrosrError
from microsr.simulate.config import FILTERS, AcquisitionConfig

#: The AcquisitionConfig fields that :func:`draw_acquisition` sets.
DRAWN_FIELDS = (
    "photons",
    "frames",
    "projections_ratio",
    "filter_name",
    "psf_sigma_bins",
    "shift_hr_voxels",
    "ring_strength",
    "seed",
)

Range = tuple[float, float]


class AcquisitionRanges(pydantic.BaseModel):
    """Ranges ``(min, max)`` (inclusive) of the randomised acquisition settings.

    Invalid ranges (non-positive photons or projection ratio, negative PSF width or ring
    strength, frames < 1, min > max, unknown filters) raise
    :class:`~microsr.errors.MicrosrError`. A range with ``min == max`` fixes the setting.
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    photons: Range = pydantic.Field(
        (1500.0, 20000.0), description="Incident photons per LR bin per frame (log-uniform)."
    )
    frames: tuple[int, int] = pydantic.Field((1, 4), description="Frames per projection.")
    projections_ratio: Range = pydantic.Field(
        (0.25, 1.0), description="LR projections / HR projections."
    )
    filters: tuple[str, ...] = pydantic.Field(FILTERS, description="FBP filters to choose from.")
    psf_sigma_bins: Range = pydantic.Field(
        (0.0, 0.8), description="Detector PSF sigma, LR detector bins."
    )
    shift_hr_voxels: Range = pydantic.Field(
        (-0.5, 0.5), description="Misregistration per axis (z, y, x), HR voxels."
    )
    ring_strength: Range = pydantic.Field(
        (0.0, 0.003), description="Relative gain error per detector bin."
    )

    @pydantic.model_validator(mode="after")
    def _check(self) -> AcquisitionRanges:
        problems = []
        for name in ("photons", "frames", "projections_ratio", "psf_sigma_bins",
                     "shift_hr_voxels", "ring_strength"):  # fmt: skip
            lo, hi = getattr(self, name)
            if not (math.isfinite(lo) and math.isfinite(hi)):
                problems.append(f"{name} must be finite, got ({lo}, {hi})")
            elif lo > hi:
                problems.append(f"{name} is inverted: min {lo} > max {hi}")
        lows = {"photons": (self.photons[0], "> 0", False),
                "projections_ratio": (self.projections_ratio[0], "> 0", False),
                "psf_sigma_bins": (self.psf_sigma_bins[0], ">= 0", True),
                "ring_strength": (self.ring_strength[0], ">= 0", True),
                "frames": (self.frames[0] - 1, ">= 1", True)}  # fmt: skip
        for name, (low, rule, inclusive) in lows.items():
            if not (low >= 0 if inclusive else low > 0):
                problems.append(f"{name} must be {rule}, got min {getattr(self, name)[0]}")
        if self.ring_strength[1] >= 0.5:
            problems.append(f"ring_strength must be < 0.5, got max {self.ring_strength[1]}")
        bad = [f for f in self.filters if f not in FILTERS]
        if bad or not self.filters:
            problems.append(f"filters must be a non-empty choice of {FILTERS}, got {self.filters}")
        if problems:
            raise MicrosrError("invalid acquisition ranges: " + "; ".join(problems))
        return self


def load_ranges(path: str | Path) -> AcquisitionRanges:
    """Read :class:`AcquisitionRanges` from a JSON file (missing keys keep their default)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise InputFileError(path, f"cannot read the ranges file ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise InputFileError(path, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputFileError(path, "must hold a JSON object of ranges")
    try:
        return AcquisitionRanges(**data)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InputFileError(path, f"{where}: {err['msg']}") from None
    except MicrosrError as exc:
        raise InputFileError(path, str(exc)) from None


def draw_acquisition(
    ranges: AcquisitionRanges, base: AcquisitionConfig, rng: np.random.Generator
) -> AcquisitionConfig:
    """``base`` with the :data:`DRAWN_FIELDS` drawn from ``ranges`` (module docstring).

    Parameters
    ----------
    ranges
        Where to draw.
    base
        The other settings (factor, attenuation, quick mode, ...).
    rng
        The random source; the same generator state gives the same draw. The noise seed
        of the returned config is drawn from it too.

    Returns
    -------
    AcquisitionConfig
        Its :func:`draw_record` is the JSON-able record of the draw.
    """
    log_photons = rng.uniform(math.log(ranges.photons[0]), math.log(ranges.photons[1]))
    values = {
        "photons": float(min(max(math.exp(log_photons), ranges.photons[0]), ranges.photons[1])),
        "frames": int(rng.integers(ranges.frames[0], ranges.frames[1] + 1)),
        "projections_ratio": float(rng.uniform(*ranges.projections_ratio)),
        "filter_name": str(ranges.filters[int(rng.integers(len(ranges.filters)))]),
        "psf_sigma_bins": float(rng.uniform(*ranges.psf_sigma_bins)),
        "shift_hr_voxels": tuple(float(v) for v in rng.uniform(*ranges.shift_hr_voxels, size=3)),
        "ring_strength": float(rng.uniform(*ranges.ring_strength)),
        "seed": int(rng.integers(2**31 - 1)),
    }
    return AcquisitionConfig(**{**base.model_dump(), **values})


def draw_record(config: AcquisitionConfig) -> dict:
    """The drawn settings of ``config`` as a JSON-ready dict (:data:`DRAWN_FIELDS`)."""
    dumped = config.model_dump(mode="json")
    return {k: dumped[k] for k in DRAWN_FIELDS}


def specimen_rng(seed: int, name: str) -> np.random.Generator:
    """A generator seeded by ``seed`` and ``name`` (stable whatever the specimen order)."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])
