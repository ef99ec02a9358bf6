"""Bone morphometry: slice-wise bone area fraction BA/TA and 3D features.

Segmentation (Gaussian sigma 1.2 voxels, then a lower threshold, 500 mg HA/cm3 on
calibrated data) is in :mod:`~microsr.morphometry.segment`; BA/TA in
:mod:`~microsr.morphometry.area`; BV/TV, Tb.N, Tb.Th, Tb.Sp, BS/BV through
itk-bonemorphometry in :mod:`~microsr.morphometry.features3d`, beside direct Tb.Th/Tb.Sp
(local thickness, :mod:`~microsr.morphometry.thickness`) and Conn.D in
:mod:`~microsr.morphometry.structure`, all block by block (:mod:`~microsr.morphometry.blocks`); the total area
(auto | envelope | roi | nonzero) in :mod:`~microsr.morphometry.total_area`.
"""

from microsr.morphometry.area import bone_area_fraction, total_area_mask
from microsr.morphometry.config import MorphometryConfig
from microsr.morphometry.features3d import FEATURE_NOTES, bone_features_3d
from microsr.morphometry.segment import (
    ResolvedThreshold,
    periosteal_envelope,
    resolve_threshold,
    segment,
    smooth,
)
from microsr.morphometry.structure import STRUCTURE_NOTES, euler_delta, structure_features
from microsr.morphometry.thickness import local_thickness, mean_local_thickness
from microsr.morphometry.total_area import TotalArea, choose_total_area
from microsr.morphometry.volume import MorphometryResult, morphometry_volume, write_morphometry

__all__ = [
    "FEATURE_NOTES",
    "STRUCTURE_NOTES",
    "MorphometryConfig",
    "MorphometryResult",
    "ResolvedThreshold",
    "TotalArea",
    "bone_area_fraction",
    "bone_features_3d",
    "choose_total_area",
    "euler_delta",
    "local_thickness",
    "mean_local_thickness",
    "morphometry_volume",
    "periosteal_envelope",
    "resolve_threshold",
    "segment",
    "smooth",
    "structure_features",
    "total_area_mask",
    "write_morphometry",
]
