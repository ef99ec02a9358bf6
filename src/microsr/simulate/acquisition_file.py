"""Acquisition files: a fitted (or hand-written) acquisition protocol, as JSON.

``microsr fit-acquisition`` writes one from a user's LR scan; ``--acquisition FILE`` on
``simulate``, ``prepare``, ``demo``, ``study-demo`` and ``compare`` simulates LR scans with
it. Layout::

    {"format": "microsr-acquisition", "version": 2,
     "acquisition": {...AcquisitionConfig fields...},                  # required
     "uncertainty": {"photons": 0.2, "psf_sigma_bins": 0.1,
                     "projections_ratio": 0.05,
                     "filters": {"shepp-logan": {"photons": 8.8e4, "psf_sigma_bins": 1.52},
                                 "ramp": {"photons": 1.1e5, "psf_sigma_bins": 1.58}}},
     "fit": {...statistics of the fit..., "quality": {...}}}            # optional

``uncertainty``: the fit's standard errors: ``photons`` relative (0.2 = 20 %), the others
absolute (LR detector bins; a fraction of the HR projections); ``filters`` (version 2;
empty: the fitted filter only): the FBP filters as consistent with the scan as the fitted
one, each with the photons and PSF that match the scan with it (a smoother filter needs
less detector blur for the same edges, and gives other noise for the same photons).
With ``--randomize`` every specimen's acquisition is drawn around the fitted values
(:func:`draw_within_uncertainty`). Version 1 files (no ``filters``) are read as they are.

``fit.quality`` (:class:`~microsr.simulate.fit_quality.FitQuality`): the fitted simulation
against the scan, statistic by statistic; :func:`read_acquisition_file` logs a warning naming
each failed statistic whenever such a file is read (``prepare``, ``demo``, ``compare``, ...).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydantic

from microsr.errors import InputFileError, MicrosrError
from microsr.io.atomic import atomic_path
from microsr.simulate.config import FILTERS, AcquisitionConfig
from microsr.simulate.fit_quality import FitQuality

logger = logging.getLogger(__name__)

ACQUISITION_FORMAT = "microsr-acquisition"
#: The newest file version this microsr reads and the one it writes.
ACQUISITION_VERSION = 2
#: Smallest projection ratio a draw may give (a few views of the HR scan's).
MIN_PROJECTIONS_RATIO = 0.02


class FilterMatch(pydantic.BaseModel):
    """The photons and detector PSF that match a scan with one FBP filter."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    photons: float = pydantic.Field(gt=0, description="incident photons per LR bin per frame")
    psf_sigma_bins: float = pydantic.Field(ge=0, allow_inf_nan=False, description="LR bins")


class AcquisitionUncertainty(pydantic.BaseModel):
    """Standard errors of a fitted acquisition (0: the setting is not drawn)."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    photons: float = pydantic.Field(
        0.0, ge=0, allow_inf_nan=False, description="relative std of photons (log-normal draw)"
    )
    psf_sigma_bins: float = pydantic.Field(
        0.0, ge=0, allow_inf_nan=False, description="std of the detector PSF sigma, LR bins"
    )
    projections_ratio: float = pydantic.Field(
        0.0, ge=0, allow_inf_nan=False, description="std of LR / HR projections"
    )
    filters: dict[str, FilterMatch] = pydantic.Field(
        default_factory=dict,
        description="FBP filters as consistent with the scan as the fitted one (drawn among), "
        "each with its own photons and PSF",
    )

    @pydantic.field_validator("filters")
    @classmethod
    def _known(cls, value: dict) -> dict:
        bad = [f for f in value if f not in FILTERS]
        if bad:
            raise ValueError(f"unknown filter(s) {bad}: choose from {list(FILTERS)}")
        return value


class AcquisitionFile(pydantic.BaseModel):
    """The content of an acquisition file (module docstring)."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    format: Literal["microsr-acquisition"] = ACQUISITION_FORMAT
    version: int = ACQUISITION_VERSION
    acquisition: AcquisitionConfig
    uncertainty: AcquisitionUncertainty | None = None
    fit: dict[str, Any] | None = None

    def record(self) -> dict:
        """The whole file as a JSON-ready dict (what datasets and checkpoints record)."""
        return self.model_dump(mode="json")

    def quality(self) -> FitQuality | None:
        """The fit's quality checks (``fit.quality``), None in a hand-written file or one
        written before the checks existed."""
        record = (self.fit or {}).get("quality")
        return None if record is None else FitQuality.model_validate(record)

    @pydantic.model_validator(mode="after")
    def _quality_valid(self):
        self.quality()  # a malformed fit.quality is refused with the file
        return self


def read_acquisition_file(path: str | Path) -> AcquisitionFile:
    """Read and check an acquisition file.

    Raises
    ------
    InputFileError
        Unreadable file, malformed JSON, another ``format``, a newer ``version`` than this
        microsr reads, or invalid acquisition settings; the message names the file.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise InputFileError(path, f"cannot read the acquisition file ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(path, f"acquisition file is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != ACQUISITION_FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise InputFileError(
            path, f"not an acquisition file (format {got!r}, expected {ACQUISITION_FORMAT!r})"
        )
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputFileError(
            path, f"acquisition file version must be an integer >= 1, got {version!r}"
        )
    if version > ACQUISITION_VERSION:
        raise InputFileError(
            path,
            f"acquisition file version {version} is newer than this microsr reads "
            f"({ACQUISITION_VERSION}); update microsr",
        )
    file = _validate(path, data)
    quality = file.quality()
    if quality is not None and not quality.passed:
        logger.warning("%s: %s", path, quality.message())
    return file


def _validate(path: Path, data: dict) -> AcquisitionFile:
    try:
        return AcquisitionFile.model_validate(data)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "file"
        message = str(err["msg"]).removeprefix("Value error, ")
        raise InputFileError(path, f"invalid acquisition file: {where}: {message}") from None
    except MicrosrError as exc:  # AcquisitionConfig's own check
        raise InputFileError(path, f"invalid acquisition file: {exc}") from None


def write_acquisition_file(obj: AcquisitionFile | AcquisitionConfig, path: str | Path) -> Path:
    """Write ``obj`` (an :class:`AcquisitionFile`, or a bare :class:`AcquisitionConfig`
    without uncertainty) to ``path`` atomically; returns the path."""
    if isinstance(obj, AcquisitionConfig):
        obj = AcquisitionFile(acquisition=obj)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj.record(), indent=2) + "\n")
    return path


def draw_within_uncertainty(
    file: AcquisitionFile, rng: np.random.Generator, base: AcquisitionConfig | None = None
) -> AcquisitionConfig:
    """One acquisition drawn around the file's fitted values.

    Photons are log-normal with median at the fitted value and relative std
    ``uncertainty.photons`` (log sigma ``sqrt(log(1 + r^2))``); the PSF sigma and the
    projection ratio are normal with the given std, clipped to ``>= 0`` and
    ``>= MIN_PROJECTIONS_RATIO``. With two or more ``uncertainty.filters`` one is drawn
    first (uniformly), and the draw is around its photons and PSF. The noise seed is drawn
    from ``rng`` too. Every other
    setting, and the centre of the draw, is ``base``'s (default: the file's acquisition;
    callers pass the copy they simulate with).

    Raises
    ------
    MicrosrError
        The file has no ``uncertainty`` to draw within.
    """
    if file.uncertainty is None:
        raise MicrosrError(
            "randomising an acquisition file draws within its 'uncertainty', which this "
            "file does not have (give one, or drop --randomize)"
        )
    acq, unc = base or file.acquisition, file.uncertainty
    if len(unc.filters) > 1:
        name = list(unc.filters)[int(rng.integers(len(unc.filters)))]
        match = unc.filters[name]
        acq = acq.model_copy(
            update={"filter_name": name, "photons": match.photons,
                    "psf_sigma_bins": match.psf_sigma_bins}
        )  # fmt: skip
    log_sigma = math.sqrt(math.log1p(unc.photons**2))
    values = {
        "photons": acq.photons
        if math.isinf(acq.photons)
        else float(acq.photons * math.exp(rng.normal(0.0, log_sigma))),
        "psf_sigma_bins": float(max(0.0, rng.normal(acq.psf_sigma_bins, unc.psf_sigma_bins))),
        "projections_ratio": float(
            max(MIN_PROJECTIONS_RATIO, rng.normal(acq.projections_ratio, unc.projections_ratio))
        ),
        "seed": int(rng.integers(2**31 - 1)),
    }
    return acq.model_copy(update=values)
