"""Synthetic data: bone phantoms and a simulated low-resolution microCT acquisition."""

from microsr.simulate.acquisition import (
    AcquisitionConfig,
    fbp_noise_sigma,
    simulate_acquisition,
    simulate_slabs,
)
from microsr.simulate.attenuation import Attenuation, resolve_attenuation
from microsr.simulate.from_mask import MaskGreyConfig, grey_from_mask, read_mask
from microsr.simulate.phantom import make_phantom
from microsr.simulate.randomize import (
    AcquisitionRanges,
    draw_acquisition,
    draw_record,
    load_ranges,
)

__all__ = [
    "AcquisitionConfig",
    "AcquisitionRanges",
    "Attenuation",
    "MaskGreyConfig",
    "draw_acquisition",
    "draw_record",
    "fbp_noise_sigma",
    "grey_from_mask",
    "load_ranges",
    "make_phantom",
    "read_mask",
    "resolve_attenuation",
    "simulate_acquisition",
    "simulate_slabs",
]
