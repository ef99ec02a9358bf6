"""Synthetic data: bone phantoms and a simulated low-resolution microCT acquisition."""

from microsr.simulate.acquisition import AcquisitionConfig, fbp_noise_sigma, simulate_acquisition
from microsr.simulate.phantom import make_phantom

__all__ = ["AcquisitionConfig", "fbp_noise_sigma", "make_phantom", "simulate_acquisition"]
