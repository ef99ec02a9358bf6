"""The number of projection views of a reconstructed scan, from the spokes of its spectrum.

Filtered back-projection from ``N`` parallel views over 180 degrees adds ``N`` back-projected
filtered profiles; each is constant along lines, so its 2D Fourier transform is a line through
the origin. The spectrum of the reconstruction (object *and* photon noise, both back-projected)
is therefore ``N`` spokes. At radius ``k`` (cycles/voxel) neighbouring spokes are
``pi k / N`` apart; where that exceeds the spectral resolution ``1 / n`` of an ``n``-voxel
slice (``N < pi k n``, i.e. below the Nyquist count ``pi n / 2`` at ``k = 1/2``), the power
along a circle is periodic in angle with period ``pi / N``: a peak at harmonic ``N`` of its
angular profile. Above about 0.8 of the Nyquist count the spokes merge (no streaks) and the
view count is not identifiable, nor does it matter for the image.

Reference: Kak and Slaney, *Principles of Computerized Tomographic Imaging*, SIAM 2001,
ch. 5.1.2 (aliasing from too few views), doi:10.1137/1.9780898719277.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import map_coordinates, median_filter
from scipy.signal.windows import tukey

__all__ = ["MIN_CONTRAST", "ViewEstimate", "estimate_views", "nyquist_views"]

#: Smallest local peak contrast (harmonic power over the median of its 21 neighbours)
#: counted as a view count, if also twice the largest contrast 3-10 harmonics away (a comb of
#: harmonics is the angular shape of the object, e.g. edges along the axes, not views). Scans of the recovery sweep without aliasing peak at <= 4.5
#: (bench/fit_recovery.py); 110 of 157 Nyquist views at 8 slices of 100^2 reach 10-30.
MIN_CONTRAST = 6.0
_RADII = (0.3, 0.48)  # cycles/voxel: where neighbouring spokes are furthest apart
_MAX_SLICES = 16
_SEARCH = (16, 0.9)  # lowest harmonic searched; highest as a fraction of the Nyquist count


@dataclass(frozen=True)
class ViewEstimate:
    """:func:`estimate_views`' result.

    ``views``: projections over 180 degrees (None: no aliasing peak, i.e. at or above about
    0.8 x ``nyquist``); ``contrast``: the peak's local contrast (:data:`MIN_CONTRAST`);
    ``best``: the harmonic of the largest contrast searched; ``nyquist``: ``ceil(pi n / 2)``
    of the slice side ``n``; ``searched``: the harmonics tried.
    """

    views: int | None
    contrast: float
    best: int
    nyquist: int
    searched: tuple[int, int]

    @property
    def ratio_of_nyquist(self) -> float | None:
        """``views / nyquist`` (None when not identified)."""
        return None if self.views is None else self.views / self.nyquist

    def as_dict(self) -> dict:
        return {
            "views": self.views, "peak_contrast": round(self.contrast, 2),
            "best_harmonic": self.best, "nyquist_views": self.nyquist,
            "searched_harmonics": list(self.searched), "min_contrast": MIN_CONTRAST,
        }  # fmt: skip


def nyquist_views(side: int) -> int:
    """Views that sample an ``side``-voxel slice at its Nyquist rate, ``ceil(pi side / 2)``."""
    return math.ceil(math.pi / 2 * side)


def estimate_views(array: np.ndarray) -> ViewEstimate:
    """Projection views of a reconstructed scan from its angular power spectrum.

    Parameters
    ----------
    array
        ``(Z, Y, X)`` reconstructed slices (any units); the central ``n x n`` square of up to
        16 evenly spaced slices is used, ``n = min(Y, X)``. Assumes the slice is the whole
        reconstructed field of view (a crop of a larger one reads as more undersampled).
    """
    n = min(array.shape[1:])
    z = np.linspace(0, array.shape[0] - 1, min(array.shape[0], _MAX_SLICES)).round().astype(int)
    y0, x0 = ((s - n) // 2 for s in array.shape[1:])
    power = _power(np.asarray(array[np.unique(z), y0 : y0 + n, x0 : x0 + n], np.float64))
    nyquist = nyquist_views(n)
    hi = int(_SEARCH[1] * nyquist)
    contrast = _harmonic_contrast(power, n_angles=_angles(hi))
    lo = min(_SEARCH[0], hi)
    best = lo + int(np.argmax(contrast[lo : hi + 1]))
    peak = float(contrast[best])
    around = np.r_[contrast[max(best - 10, 0) : max(best - 2, 0)], contrast[best + 3 : best + 11]]
    isolated = around.size == 0 or peak >= 2 * float(around.max())
    return ViewEstimate(
        views=best if peak >= MIN_CONTRAST and isolated else None,
        contrast=peak,
        best=best,
        nyquist=nyquist,
        searched=(lo, hi),
    )


def _power(slices: np.ndarray) -> np.ndarray:
    """Summed 2D power spectrum (zero-padded, centred) of Tukey-windowed slices."""
    n = slices.shape[-1]
    w = tukey(n, 0.25)
    window = w[:, None] * w[None, :]
    pad = 4 if n <= 512 else 2
    total = np.zeros((pad * n, pad * n))
    for s in slices:
        f = np.fft.fft2((s - s.mean()) * window, s=(pad * n, pad * n))
        total += np.abs(f) ** 2
    return np.fft.fftshift(total)


def _angles(max_harmonic: int) -> int:
    return 1 << max(10, math.ceil(math.log2(4 * max_harmonic + 1)))


def _harmonic_contrast(power: np.ndarray, n_angles: int) -> np.ndarray:
    """Each harmonic of the angular log-power profile over the median of its neighbours."""
    size = power.shape[0]
    centre = size // 2
    phi = np.linspace(0, np.pi, n_angles, endpoint=False)
    profile = np.zeros(n_angles)
    for k in np.linspace(*_RADII, 16):
        r = k * size
        ring = map_coordinates(power, [centre + r * np.sin(phi), centre + r * np.cos(phi)], order=1)
        profile += np.log(np.maximum(ring, 1e-300) / max(ring.mean(), 1e-300))
    h = np.abs(np.fft.rfft(profile - profile.mean()))
    return h / np.maximum(median_filter(h, size=21, mode="nearest"), 1e-300)
