"""Optional, cheap imperfections of the simulated acquisition (all off by default).

* **Detector / focal-spot blur** (:func:`blur_detector`): a Gaussian PSF along the
  detector, applied to the *intensity* (transmission) profile, as a scintillator or a
  finite focal spot blurs it, before detector binning. In parallel-beam geometry a 1D PSF
  of sigma ``s`` on every projection reconstructs as an isotropic in-plane Gaussian of
  sigma ``s`` (exactly for weak attenuation, where transmission is linear in ``mu``).
* **Misregistration** (:func:`shift_volume`): the HR content is shifted by a sub-voxel
  ``(z, y, x)`` vector before the acquisition, so LR and HR disagree slightly, as two real
  scans registered to sub-voxel accuracy do.
* **Ring artefacts** (:func:`ring_gains`): every detector bin keeps a small gain error
  after flat-field correction; its constant offset ``-log(g)`` in the sinogram
  reconstructs as (half-)rings centred on the rotation axis (Kak & Slaney 1988, ch. 3,
  doi:10.1137/1.9780898719277; Sijbers & Postnov, Phys. Med. Biol. 49 (2004) N247,
  doi:10.1088/0031-9155/49/14/N06).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from microsr.volume import Volume


def shift_volume(hr: Volume, shift_hr_voxels: tuple[float, float, float]) -> Volume:
    """``hr`` with its content moved by ``shift_hr_voxels`` ``(z, y, x)`` HR voxels.

    Cubic-spline interpolation (exact for integer shifts: the result then equals
    ``np.roll`` away from the borders); voxels moved in from outside repeat the edge.
    Geometry (origin, spacing) is unchanged, so the content is misregistered. Loads the
    whole volume as float32.

    Returns
    -------
    Volume
        ``hr`` itself if the shift is zero, else a float32 copy.
    """
    if not any(shift_hr_voxels):
        return hr
    array = np.asarray(hr.array, dtype=np.float32)
    moved = ndimage.shift(array, shift_hr_voxels, order=3, mode="nearest", prefilter=True)
    return hr.with_array(moved.astype(np.float32, copy=False))


def blur_detector(transmission: np.ndarray, sigma_hr_bins: float) -> np.ndarray:
    """Gaussian blur of an HR sinogram ``(bins, views)`` along the detector (axis 0).

    Parameters
    ----------
    transmission
        Transmissions, outside the sinogram taken as 1 (air).
    sigma_hr_bins
        PSF sigma in HR detector bins (the LR sigma times the binning factor).
    """
    if sigma_hr_bins <= 0:
        return transmission
    return ndimage.gaussian_filter1d(transmission, sigma_hr_bins, axis=0, mode="constant", cval=1.0)


def ring_gains(n_bins: int, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Per-detector-bin residual gains ``1 + strength * N(0, 1)``, shape ``(n_bins, 1)``.

    Clipped to ``[0.5, 1.5]`` so that no bin is dead; constant over the views of a slice.
    """
    gains = 1.0 + strength * rng.standard_normal(n_bins)
    return np.clip(gains, 0.5, 1.5)[:, None]
