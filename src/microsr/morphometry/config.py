"""How bone is segmented and what the total area is: the morphometry's config, torch-free.

The segmentation itself is :mod:`microsr.morphometry.segment`'s.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["MorphometryConfig", "ThresholdKind"]

ThresholdKind = Literal["mgha", "value", "fraction", "otsu"]


class MorphometryConfig(BaseModel):
    """How bone is segmented and what the total area is.

    ``ta="auto"`` (default) picks the total area that fits the data
    (:func:`~microsr.morphometry.total_area.choose_total_area`): a given ROI mask;
    ``"nonzero"`` (voxels != 0) for a VOI exported with zeros outside its contour;
    ``"envelope"`` for a whole-bone section with a cortical shell: the area inside the
    periosteal envelope (the segmentation closed with a disk of radius ``closing_vox``,
    grown up to 4x in a slice whose thin cortex the threshold broke open, holes filled,
    the largest component kept), the "total cross-sectional area" Tt.Ar of
    Bouxsein et al. 2010 (doi:10.1002/jbmr.141); else ``"roi"``: the whole image (a
    trabecular VOI filling the field). Each rule can also be asked for by name.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: ThresholdKind = "mgha"
    threshold_value: float | None = Field(
        500.0, description="mg HA/cm3 | grey value | fraction in (0, 1); unused for otsu"
    )
    sigma_vox: float = Field(1.2, ge=0, description="Gaussian sigma in in-plane voxels")
    ta: Literal["auto", "envelope", "roi", "nonzero"] = "auto"
    closing_vox: int = Field(5, ge=0, description="disk radius closing the envelope, voxels")

    @model_validator(mode="after")
    def _check(self) -> MorphometryConfig:
        if self.threshold != "otsu" and self.threshold_value is None:
            raise ValueError(f"threshold {self.threshold!r} needs a threshold_value")
        if self.threshold == "fraction" and not 0 < self.threshold_value < 1:
            raise ValueError(f"a fraction threshold must lie in (0, 1), got {self.threshold_value}")
        return self


def default_morphometry(calibrated: bool) -> MorphometryConfig:
    """The default bone threshold, the one rule: 500 mg HA/cm3 on calibrated data (the
    paper), else Otsu's threshold of the HR scan; ``evaluate``, ``compare``, the study and
    training's structure term use it."""
    return MorphometryConfig() if calibrated else MorphometryConfig(threshold="otsu")
