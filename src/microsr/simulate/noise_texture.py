"""The CT noise texture: the noise power spectrum (NPS) shape of filtered back-projection.

Parallel-beam FBP of white (photon) noise in the sinogram gives reconstructed noise whose
2D NPS at radial frequency ``f`` is ``|f| * W(f)**2`` up to the detector's Nyquist frequency
(0.5 cycles per detector pixel) and zero beyond (Kak & Slaney, *Principles of Computerized
Tomographic Imaging*, 1988, ch. 5, doi:10.1137/1.9780898719277): the ramp ``|f|`` of
back-projecting a filtered projection, times the square of the filter's apodising window
``W``. The windows are those of scikit-image's ``iradon``, which the simulator
(:mod:`microsr.simulate.acquisition`) reconstructs with, in their continuous form
(``tests/test_noise_augment.py`` compares them with scikit-image's own):

* ``ramp``: 1;
* ``shepp-logan``: ``sinc(f) = sin(pi f) / (pi f)``;
* ``cosine``: ``cos(pi f)``;
* ``hamming``: ``0.54 + 0.46 cos(2 pi f)``;
* ``hann``: ``0.5 + 0.5 cos(2 pi f)``.

Training's noise augmentation (:mod:`microsr.training.noise`) draws noise with this texture
for the filter its dataset was simulated with.
"""

from __future__ import annotations

import numpy as np

from microsr.simulate.config import FILTERS


def filter_window(freq: np.ndarray, filter_name: str) -> np.ndarray:
    """The apodising window ``W(f)`` of ``filter_name`` at ``freq`` (cycles per pixel)."""
    f = np.abs(np.asarray(freq, dtype=np.float64))
    windows = {
        "ramp": lambda: np.ones_like(f),
        "shepp-logan": lambda: np.sinc(f),
        "cosine": lambda: np.cos(np.pi * f),
        "hamming": lambda: 0.54 + 0.46 * np.cos(2 * np.pi * f),
        "hann": lambda: 0.5 + 0.5 * np.cos(2 * np.pi * f),
    }
    if filter_name not in windows:
        raise ValueError(f"filter_name must be one of {FILTERS}, got {filter_name!r}")
    return windows[filter_name]()


def fbp_noise_power(freq: np.ndarray, filter_name: str = "ramp") -> np.ndarray:
    """The NPS shape ``|f| * W(f)**2`` of FBP noise at radial ``freq`` (cycles per detector
    pixel), zero beyond the Nyquist frequency 0.5 (module docstring)."""
    f = np.abs(np.asarray(freq, dtype=np.float64))
    return np.where(f <= 0.5, f * filter_window(f, filter_name) ** 2, 0.0)
