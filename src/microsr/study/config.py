"""Configuration and folder layout of a study (``microsr study MANIFEST OUT_DIR``).

Layout of a study folder::

    study.json                     config, manifest, software versions (written first)
    dataset/                       all specimens prepared once, with the global split
    models/<model>/dataset/        the model's view: its specimens' splits (data linked)
    models/<model>/run/            training (best.ckpt, last.ckpt, logs/metrics.csv)
    models/<model>/predictions/    <specimen>_sr.mha for every test specimen
    models/<model>/evaluation/     <specimen>.csv (slice-wise scores), <specimen>.json (3D)
    stats/                         CSV tables of every number
    report/                        index.html, figures/ (PNG + PDF), tables/
    problems.json                  what could not be done, and why

``<model>`` is a site (trained on that site's training specimens) or ``pooled`` (all
sites). One global, site-stratified split keeps every test specimen out of every model's
training data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from microsr.data.prepare import PrepareConfig
from microsr.morphometry.config import MorphometryConfig
from microsr.training.config import TrainConfig

POOLED = "pooled"


class StudyConfig(BaseModel):
    """Everything a study does, saved in ``study.json`` (a resumed study must match it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prepare: PrepareConfig = PrepareConfig()
    train: TrainConfig = TrainConfig(seed=0)
    morphometry: MorphometryConfig = MorphometryConfig()
    pooled: bool = Field(True, description="also train one model on all sites")
    features_3d: bool = Field(
        True, description="3D morphometry (itk-bonemorphometry, local thickness, Conn.D)"
    )
    predict_batch_size: int = Field(8, ge=1)
    folds: int | None = Field(
        None, description="subject-level K-fold cross-validation (None: one global split)"
    )
    keep_factors: bool | None = Field(
        None,
        description="predict test specimens with each model's trained factors on their own "
        "voxel size, a transfer across physical scales (PredictOptions.keep_factors); "
        "None/False: SR on the model's HR voxel size",
    )
    device: str = "auto"


@dataclass(frozen=True)
class StudyLayout:
    """Paths inside a study folder (see the module docstring)."""

    root: Path

    @property
    def study_json(self) -> Path:
        return self.root / "study.json"

    @property
    def dataset(self) -> Path:
        return self.root / "dataset"

    @property
    def stats(self) -> Path:
        return self.root / "stats"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def problems(self) -> Path:
        return self.root / "problems.json"

    def model(self, name: str) -> Path:
        return self.root / "models" / name

    def run(self, name: str) -> Path:
        return self.model(name) / "run"

    def prediction(self, name: str, specimen: str) -> Path:
        return self.model(name) / "predictions" / f"{specimen}_sr.mha"

    def evaluation(self, name: str, specimen: str) -> Path:
        return self.model(name) / "evaluation" / f"{specimen}.csv"

    def models(self) -> list[str]:
        base = self.root / "models"
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
