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

__all__ = ["DatasetInfo", "SpecimenRecord", "specimen_records"]


class SpecimenRecord(BaseModel):
    """One specimen of ``dataset.json`` (written by :func:`microsr.data.specimen.write_specimen`).

    The fields are declared in the order the writer gives them; the manifest's extra
    columns (e.g. ``subject``) are extra keys, after ``units``. :meth:`to_json` writes only
    the fields a record was given, in that order, so a record written, read and written
    again is the same JSON.

    Attributes
    ----------
    n_slices, n_lr_slices
        Paired HR-grid slices; slices of the LR scan.
    factor, z_factor
        The specimen's scale factors (in-plane, z).
    crop_yxhw
        The bone-centred ROI ``(y0, x0, height, width)`` in HR voxels.
    hr_slices, lr_t
        ``(n_slices,)`` HR slice indices and their fractional LR positions.
    lr_path, hr_path
        The scans read (``lr_path`` ``None``: a simulated LR scan).
    lr_spacing_mm, hr_spacing_mm
        LR and HR voxel sizes ``(z, y, x)`` in mm.
    calibration
        The HR scan's density calibration (``dataclasses.asdict`` of a
        :class:`~microsr.volume.Calibration`), ``None`` if uncalibrated.
    offset_mm, alignment
        The LR box's offset on the HR grid; how the pair was aligned (registration, residual).
    units
        ``prepare --units`` (``"mgha"``: converted to mg HA/cm3).
    simulated
        The simulated acquisitions of a simulated LR scan (``acquisition``, ``draws``).
    n_lr_draws
        LR scans of this specimen (``prepare --draws``; 1 when absent).
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    site: str = ""
    n_slices: int
    n_lr_slices: int
    factor: int | None = None
    z_factor: int | None = None
    crop_yxhw: tuple[int, int, int, int]
    hr_slices: list[int]
    lr_t: list[float]
    lr_path: str | None = None
    hr_path: str | None = None
    lr_spacing_mm: tuple[float, float, float] | None = None
    hr_spacing_mm: tuple[float, float, float]
    calibrated: bool | None = None
    calibration: dict | None = None
    offset_mm: list[float] | None = None
    alignment: dict | None = None
    units: str | None = None
    simulated: dict | None = None
    n_lr_draws: int = 1

    @property
    def subject(self) -> str | None:
        """The manifest's ``subject`` (donor) of the specimen, ``None`` if not given."""
        return (self.model_extra or {}).get("subject")

    @property
    def density_calibration(self) -> Calibration | None:
        """The calibration as a :class:`~microsr.volume.Calibration` (``None``: none)."""
        return Calibration(**self.calibration) if self.calibration else None

    @property
    def is_density(self) -> bool:
        """The one "calibrated" rule (:attr:`microsr.volume.Calibration.is_density`)."""
        return is_density(self.calibration)

    def to_json(self) -> dict:
        """The record as written in ``dataset.json``: the fields it was given, the manifest's
        extra columns, then the simulated acquisitions and the number of LR draws."""
        out = self.model_dump(mode="json", exclude_unset=True)
        tail = {k: out.pop(k) for k in ("simulated", "n_lr_draws") if k in out}
        return out | tail


class DatasetInfo(BaseModel):
    """``dataset.json``: one scale factor, the normalisation, every specimen's record.

    Attributes
    ----------
    factor, z_factor
        The dataset's scale factors (in-plane, z; ``z_factor`` ``None``: the in-plane one).
    config
        The :class:`~microsr.data.prepare_config.PrepareConfig` it was prepared with, as
        JSON (kept as written: read by :attr:`units` and :attr:`acquisition_file`).
    normalization
        The intensity normalisation fitted on the training specimens.
    specimens
        Every specimen's record, by specimen id.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    format: str = "microsr-dataset"
    format_version: int | None = None
    microsr_version: str | None = None
    factor: int
    z_factor: int | None = None
    z_grid: str | None = None
    config: dict = {}
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

    @property
    def slice_factor(self) -> int:
        """The scale factor along z (``z_factor``, else the in-plane ``factor``)."""
        return self.z_factor or self.factor

    @property
    def units(self) -> str | None:
        """``prepare --units`` of the dataset (``None``: not recorded)."""
        return self.config.get("units")

    @property
    def acquisition_file(self) -> str | None:
        """The acquisition file its LR scans were simulated with (``None``: none)."""
        return (self.config.get("simulation") or {}).get("acquisition_file")

    @property
    def noise_filter(self) -> str:
        """The FBP filter of its LR scans' noise texture: the simulation's acquisition filter
        (an acquisition file's, e.g. a fitted one) when any LR scan was simulated, else
        ``"ramp"`` (real LR scans: the reconstruction filter is not recorded)."""
        if not any(s.simulated for s in self.specimens.values()):
            return "ramp"
        acquisition = (self.config.get("simulation") or {}).get("acquisition") or {}
        return str(acquisition.get("filter_name", "ramp"))

    def with_normalization(self, normalization: NormalizationConfig) -> DatasetInfo:
        """The same dataset with another normalisation (fine-tuning keeps a checkpoint's)."""
        return self.model_copy(update={"normalization": normalization})

    def to_json(self) -> dict:
        """``dataset.json`` as written: the fields it was given, the full normalisation."""
        out = self.model_dump(mode="json", exclude_unset=True, exclude={"specimens"})
        out["normalization"] = self.normalization.model_dump(mode="json")
        return out | {"specimens": {k: s.to_json() for k, s in self.specimens.items()}}


def specimen_records(info: dict | DatasetInfo) -> dict[str, SpecimenRecord]:
    """The specimen records of ``info`` (a :class:`DatasetInfo` or its JSON), by id.

    JSON records are read leniently (not validated): a record holding only some fields
    (an older or hand-written ``dataset.json``) gives those, and the defaults of the others;
    a required field it lacks is absent (read it with ``getattr(record, name, None)``).
    """
    if isinstance(info, DatasetInfo):
        return dict(info.specimens)
    return {k: SpecimenRecord.model_construct(**m) for k, m in info.get("specimens", {}).items()}
