"""The checkpoint format: one typed metadata record, one writer, one safe reader.

A microsr checkpoint is a ``torch.save`` archive (a Lightning checkpoint when written by
``microsr train``) holding ``state_dict`` (the network's weights under ``model.``) and, under
the key ``"microsr"``, a :class:`CheckpointMeta` in JSON types: everything ``predict`` needs
(network class and configuration, scale factor, output grid, intensity normalisation, the
full training configuration, package version and seed), so a checkpoint describes itself.

Training writes the record through a Lightning hook (:mod:`microsr.training.module`), the
benchmarks and tests through :func:`save_checkpoint`; inference, ``evaluate`` and ``compare``
read it with :func:`read_checkpoint` / :func:`parse_checkpoint`. Checkpoints are data, not
code: they are loaded with ``torch.load(weights_only=True)``, whose unpickler accepts only
tensors and plain containers, numbers and strings.

Format versions: 1 (microsr 0.1): LR-slice pairing, per-slice min-max or a fixed window, no
``z_grid``; 2: adds ``z_grid`` (``"hr"``: trained on every HR slice, predicts the full HR grid)
and fitted intensity windows. Version-1 checkpoints still load and predict on their LR grid.
Optional fields added later without a version change (older files lack them, readers default
them): ``lr_spacing_mm`` / ``hr_spacing_mm`` (the training voxel sizes), ``units`` (the
window's density units). ``units`` is the one record of a model's units: checkpoints that
recorded the dataset's ``--units`` as ``provenance["units"]`` instead still read, ``"mgha"``
there as ``units`` of kind ``mgha``.
"""

from __future__ import annotations

import math
import pickle
import zipfile
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, ValidationError, model_validator
from torch import nn

from microsr import __version__
from microsr.calibration import WindowUnits
from microsr.data.normalize import NormalizationConfig
from microsr.errors import InputFileError
from microsr.io.atomic import atomic_path
from microsr.models.config import ModelConfig

__all__ = [
    "CHECKPOINT_KEY",
    "FORMAT_VERSION",
    "CheckpointMeta",
    "parse_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
]

CHECKPOINT_KEY = "microsr"
FORMAT_VERSION = 2


class CheckpointMeta(BaseModel):
    """What a checkpoint says about itself (stored in JSON types under ``"microsr"``).

    Attributes
    ----------
    network
        The network's :class:`~microsr.models.factory.ModelConfig` (key ``model_config``).
    factor
        HR voxels per LR voxel in-plane (>= 1).
    z_factor
        HR slices per LR slice (``None``: ``factor``).
    z_grid
        ``"hr"``: trained on every HR slice (LR interpolated along z), predicts the HR grid;
        ``"lr"``: trained on LR slices paired with their nearest HR slice (format 1).
    normalization
        How LR inputs were mapped to [0, 1] and how outputs map back to HR units.
    lr_spacing_mm, hr_spacing_mm
        The training LR voxel and the HR target voxel ``(z, y, x)`` in mm (the median over
        the training dataset's specimens); ``None`` in checkpoints written before they were
        recorded (``predict`` then states what it assumes, :mod:`microsr.inference.scale`).
    units
        The units of the intensity window (:class:`~microsr.calibration.WindowUnits`:
        mg HA/cm3, native scanner values with their calibration, or uncalibrated grey
        values); ``None`` in older checkpoints (inputs are then taken to be in its units).
    train_config
        The full :class:`~microsr.training.config.TrainConfig` as a dict.
    provenance
        Where the weights and data came from (JSON types; empty in older checkpoints):
        ``acquisition_file`` (the whole
        acquisition file the training LR scans were simulated with, ``prepare
        --acquisition``), ``init`` (``{"path", "sha256"}`` of the checkpoint fine-tuned
        from, ``train --init``).
    """

    model_config = ConfigDict(
        frozen=True, extra="ignore", populate_by_name=True, protected_namespaces=()
    )

    format_version: int = 1
    microsr_version: str = "unknown"
    model_class: str = ""
    network: ModelConfig = Field(alias="model_config")
    factor: int = Field(ge=1)
    z_factor: int | None = Field(None, ge=1)
    z_grid: Literal["hr", "lr"] = "lr"
    normalization: NormalizationConfig
    lr_spacing_mm: tuple[PositiveFloat, PositiveFloat, PositiveFloat] | None = None
    hr_spacing_mm: tuple[PositiveFloat, PositiveFloat, PositiveFloat] | None = None
    units: WindowUnits | None = None
    train_config: dict = Field(default_factory=dict)
    seed: int | None = None
    provenance: dict = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _units_from_provenance(cls, raw: object) -> object:
        """Older checkpoints: the dataset's ``--units mgha`` in ``provenance["units"]``."""
        if not isinstance(raw, dict) or raw.get("units") is not None:
            return raw
        old = raw.get("provenance")
        if isinstance(old, dict) and old.get("units") == "mgha":
            return {**raw, "units": {"kind": "mgha"}}
        return raw

    @property
    def context_slices(self) -> int:
        """``k``: a 2.5D model sees LR slices ``i - k .. i + k`` as ``2k + 1`` channels."""
        return self.network.context_slices

    @property
    def slice_factor(self) -> int:
        """HR slices per LR slice (``z_factor``, else ``factor``)."""
        return self.z_factor or self.factor

    def to_dict(self) -> dict:
        """The record in JSON types, with the stored key names."""
        return {
            **self.model_dump(mode="json", by_alias=True),
            "context_slices": self.context_slices,
        }


def new_meta(
    network: ModelConfig,
    *,
    factor: int,
    z_factor: int | None = None,
    normalization: NormalizationConfig,
    train_config: dict | None = None,
    seed: int | None = None,
    model_class: str = "",
    provenance: dict | None = None,
    lr_spacing_mm: tuple[float, float, float] | None = None,
    hr_spacing_mm: tuple[float, float, float] | None = None,
    units: WindowUnits | dict | None = None,
) -> CheckpointMeta:
    """A current-format record (format 2, HR grid, this package's version)."""
    return CheckpointMeta(
        format_version=FORMAT_VERSION,
        microsr_version=__version__,
        model_class=model_class,
        network=network,
        factor=factor,
        z_factor=z_factor,
        z_grid="hr",
        normalization=normalization,
        lr_spacing_mm=lr_spacing_mm,
        hr_spacing_mm=hr_spacing_mm,
        units=units,
        train_config=train_config or {},
        seed=seed,
        provenance=provenance or {},
    )


def save_checkpoint(path: str | Path, model: nn.Module, meta: CheckpointMeta) -> Path:
    """Write a checkpoint of ``model`` with ``meta`` atomically (no optimiser state)."""
    path = Path(path)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"state_dict": state, CHECKPOINT_KEY: meta.to_dict()}, tmp)
    return path


def read_checkpoint(path: str | Path) -> dict:
    """``torch.load(path, weights_only=True)`` with clear errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "checkpoint not found")
    if not zipfile.is_zipfile(path):
        raise InputFileError(
            path, "not a readable PyTorch checkpoint (not a torch.save zip archive)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if "Unsupported global" in ln]
        first = lines[0] if lines else type(exc).__name__
        raise InputFileError(
            path,
            "refused to load: the checkpoint contains Python objects other than weights and "
            f"plain data, which could run code when unpickled ({first[:200]})",
        ) from None
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError/EOFError/zipfile errors on corrupt files
        raise InputFileError(
            path, f"not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})"
        ) from None


def parse_checkpoint(path: str | Path) -> tuple[CheckpointMeta, dict[str, torch.Tensor]]:
    """The metadata record and the network's weights (``model.`` prefix removed).

    Raises
    ------
    InputFileError
        Unreadable or unsafe file; no microsr metadata or weights; metadata that does not
        validate (e.g. a factor below 1); non-finite weights.
    """
    path = Path(path)
    ckpt = read_checkpoint(path)
    raw = ckpt.get(CHECKPOINT_KEY) if isinstance(ckpt, dict) else None
    if not isinstance(raw, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise InputFileError(path, "not a microsr checkpoint (no 'microsr' metadata or weights)")
    try:
        meta = CheckpointMeta.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InputFileError(
            path, f"checkpoint metadata is invalid: {where}: {err['msg']}"
        ) from None
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
    bad = [
        k for k, v in state.items() if torch.is_floating_point(v) and not torch.isfinite(v).all()
    ]
    if bad:
        raise InputFileError(
            path, f"{len(bad)} weight tensor(s) hold NaN or Inf values (e.g. {bad[0]}); "
            "the training diverged or the file is damaged",
        )  # fmt: skip
    if meta.factor > 16 or not math.isfinite(meta.factor):
        raise InputFileError(path, f"scale factor {meta.factor} is implausible (1..16)")
    return meta, state
