"""Noise-level augmentation at training time: extra LR noise with a CT noise texture.

Reconstructed CT noise is not white: filtered back-projection of photon noise has a noise
power spectrum ``|rho| * W(rho)**2`` that stops at the detector's Nyquist frequency, ``W``
being the reconstruction filter's window (:mod:`microsr.simulate.noise_texture`, the one
model of the texture, shared with the simulator). :func:`ct_noise` makes Gaussian noise with
that texture on the model's input grid (the LR scan upsampled by ``factor``: cut-off
``0.5 / factor`` cycles per pixel) for the dataset's filter (the one its LR scans were
simulated with, e.g. a fitted acquisition's; ``ramp`` for real LR scans);
:func:`add_noise` adds it to a batch of LR inputs with a standard deviation drawn per sample
uniformly from ``[0, max_std]`` (the model's unit range: the intensity window is 1),
independently per context slice. A model trained this way sees every noise level from its
data's own up to its data's plus ``max_std``, so scans noisier than the training
acquisitions are less of a surprise (``microsr train --noise-augment``).
"""

from __future__ import annotations

import torch

from microsr.simulate.noise_texture import fbp_noise_power


def ct_noise(
    shape: tuple[int, ...], *, factor: int, filter_name: str = "ramp", device=None
) -> torch.Tensor:
    """Unit-std Gaussian noise ``(..., H, W)`` with the FBP texture of ``filter_name`` on a
    grid ``factor`` times finer than the detector (power zero beyond ``0.5 / factor``).

    Each ``(H, W)`` image is scaled to standard deviation 1 exactly.
    """
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    h, w = shape[-2:]
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
    rho_detector = (torch.sqrt(fy**2 + fx**2) * factor).numpy()  # cycles per LR pixel
    power = torch.from_numpy(fbp_noise_power(rho_detector, filter_name))
    amplitude = torch.sqrt(power).to(device=device, dtype=torch.float32)
    white = torch.randn(shape, device=device)
    noise = torch.fft.irfft2(torch.fft.rfft2(white) * amplitude, s=(h, w))
    return noise / noise.std(dim=(-2, -1), keepdim=True).clamp_min(1e-12)


def add_noise(
    lr: torch.Tensor, max_std: float, *, factor: int, filter_name: str = "ramp"
) -> torch.Tensor:
    """``lr`` ``(B, C, H, W)`` plus :func:`ct_noise` of std ``U(0, max_std)`` per sample."""
    if max_std <= 0:
        return lr
    std = torch.rand(lr.shape[0], 1, 1, 1, device=lr.device) * max_std
    noise = ct_noise(tuple(lr.shape), factor=factor, filter_name=filter_name, device=lr.device)
    return lr + (std * noise).to(lr.dtype)
