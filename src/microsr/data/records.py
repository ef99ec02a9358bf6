"""Typed views of a prepared dataset's records (``dataset.json``), torch-free.

``microsr prepare`` writes ``dataset.json`` (:func:`microsr.data.prepare.prepare_dataset`) and
:func:`microsr.data.prepare.load_dataset_info` reads it as JSON; readers take
:meth:`DatasetInfo.of` of what they are given (the dict or a ``DatasetInfo``) and read typed
fields, so the normalisation is validated and a specimen's calibration is built in one place.
Both models allow extra keys: the JSON format is unchanged, and keys added by newer writers
(or read by only one module) pass through, reachable with ``record.model_extra``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from microsr.data.config import NormalizationConfig
from microsr.volume import Calibration, is_density

__all__ = ["DatasetInfo", "SpecimenRecord"]


class SpecimenRecord(BaseModel):
    """One specimen of ``dataset.json`` (written by :func:`microsr.data.specimen.write_specimen`).

    Attributes
    ----------
    n_slices, n_lr_slices
        Paired HR-grid slices; slices of the LR scan.
    hr_slices, lr_t
        ``(n_slices,)`` HR slice indices and their fractional LR positions.
    crop_yxhw
        The bone-centred ROI ``(y0, x0, height, width)`` in HR voxels.
    hr_spacing_mm
        HR voxel size ``(z, y, x)`` in mm.
    calibration
        The HR scan's density calibration (``dataclasses.asdict`` of a
        :class:`~microsr.volume.Calibration`), ``None`` if uncalibrated.
    n_lr_draws
        LR scans of this specimen (``prepare --draws``; 1 when absent).
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    site: str = ""
    n_slices: int
    n_lr_slices: int
    crop_yxhw: tuple[int, int, int, int]
    hr_slices: list[int]
    lr_t: list[float]
    hr_spacing_mm: tuple[float, float, float]
    calibration: dict | None = None
    n_lr_draws: int = 1
    subject: str | None = None

    @property
    def density_calibration(self) -> Calibration | None:
        """The calibration as a :class:`~microsr.volume.Calibration` (``None``: none)."""
        return Calibration(**self.calibration) if self.calibration else None

    @property
    def is_density(self) -> bool:
        """The one "calibrated" rule (:attr:`microsr.volume.Calibration.is_density`)."""
        return is_density(self.calibration)


class DatasetInfo(BaseModel):
    """``dataset.json``: one scale factor, the normalisation, every specimen's record."""

    model_config = ConfigDict(frozen=True, extra="allow")

    factor: int
    normalization: NormalizationConfig
    specimens: dict[str, SpecimenRecord]

    @classmethod
    def of(cls, info: dict | DatasetInfo) -> DatasetInfo:
        """``info`` as read by :func:`~microsr.data.prepare.load_dataset_info`, typed."""
        return info if isinstance(info, cls) else cls.model_validate(info)

    @property
    def calibrated(self) -> bool:
        """Whether every specimen's HR scan is density-calibrated."""
        return all(s.is_density for s in self.specimens.values())
