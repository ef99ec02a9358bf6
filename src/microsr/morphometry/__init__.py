"""Bone morphometry: slice-wise bone area fraction BA/TA and 3D features.

Segmentation (Gaussian sigma 1.2 voxels, then a lower threshold, 500 mg HA/cm3 on
calibrated data) is in :mod:`~microsr.morphometry.segment`; BA/TA in
:mod:`~microsr.morphometry.area`; BV/TV, Tb.N, Tb.Th, Tb.Sp, BS/BV through
itk-bonemorphometry in :mod:`~microsr.morphometry.features3d`.
"""

from microsr.morphometry.area import bone_area_fraction, total_area_mask
from microsr.morphometry.features3d import FEATURE_NOTES, bone_features_3d
from microsr.morphometry.segment import (
    MorphometryConfig,
    ResolvedThreshold,
    periosteal_envelope,
    resolve_threshold,
    segment,
    smooth,
)
from microsr.morphometry.volume import MorphometryResult, morphometry_volume, write_morphometry

__all__ = [
    "FEATURE_NOTES",
    "MorphometryConfig",
    "MorphometryResult",
    "ResolvedThreshold",
    "bone_area_fraction",
    "bone_features_3d",
    "morphometry_volume",
    "periosteal_envelope",
    "resolve_threshold",
    "segment",
    "smooth",
    "total_area_mask",
    "write_morphometry",
]
