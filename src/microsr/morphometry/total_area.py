"""Which total area (TA) a bone area fraction BA/TA is taken over, and why.

BA/TA is only meaningful over a TA that fits the data (Bouxsein et al. 2010,
doi:10.1002/jbmr.141): the periosteal envelope (Tt.Ar) of a whole-bone section, the
field of view of a trabecular VOI, or the contour of a Scanco VOI exported with zeros
outside it. The periosteal envelope of a sparse trabecular VOI is the closed hull of a
few trabeculae, and BA/TA over it is meaningless (0.85 on a VOI of bone fraction 0.015).

Rules (``MorphometryConfig.ta``):

``auto`` (default)
    A given ROI mask is TA. Otherwise ``nonzero`` when the image has a large exactly-zero
    region outside one contour (>= 5 % of the image outside, < 1 % zeros inside, >= 99 %
    of the contour in one piece: not marrow clipped to 0 by a display window);
    ``envelope`` when the segmentation looks like a whole-bone section with a cortical
    shell (>= 90 % of the bone inside the envelope, the envelope <= 70 % of the slice and
    off the image border, and >= 50 % bone in its 3-pixel rim); else ``roi``. Medians
    over up to 16 evenly spaced slices that contain bone.
``envelope``
    The filled periosteal envelope (:func:`envelope`: closing radius grown where the
    threshold broke a thin cortex open).
``roi``
    The whole image (or the given mask).
``nonzero``
    Voxels of the image that are not exactly 0.

An explicit rule is applied within a given mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from microsr.errors import MicrosrError
from microsr.morphometry.config import MorphometryConfig
from microsr.morphometry.segment import periosteal_envelope

#: thresholds of the ``auto`` rule (see the module notes)
OUTSIDE_ZEROS_MIN = 0.05
INSIDE_ZEROS_MAX = 0.01
ONE_CONTOUR = 0.99
BONE_IN_ENVELOPE_MIN = 0.9
ENVELOPE_AREA_MAX = 0.7
ENVELOPE_BORDER_MAX = 0.02
RIM_BONE_MIN = 0.5
RIM_VOX = 3
SAMPLE_SLICES = 16
ENVELOPE_GROWTH = 4
ENVELOPE_HOLDS = 0.95


@dataclass(frozen=True)
class TotalArea:
    """TA mask ``(N, Y, X)`` bool, the rule that made it and why it was chosen."""

    mask: np.ndarray
    rule: str
    reason: str


def _sample(n: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, SAMPLE_SLICES)).round().astype(int))


def _zero_contour(nonzero: np.ndarray) -> tuple[float, float, float]:
    """Medians over sampled slices: fraction outside the filled nonzero contour, fraction of
    zeros inside it, and the share of the contour in its largest piece."""
    rows = []
    for sl in nonzero[_sample(len(nonzero))]:
        filled = ndimage.binary_fill_holes(sl)
        labels, n = ndimage.label(filled)
        largest = np.bincount(labels.ravel())[1:].max() if n else 0
        area = max(int(filled.sum()), 1)
        rows.append((1.0 - filled.mean(), (filled & ~sl).sum() / area, largest / area))
    return tuple(float(v) for v in np.median(np.asarray(rows, float), axis=0))


def envelope(bone: np.ndarray, closing_vox: int = 5) -> np.ndarray:
    """Periosteal envelope of each ``(N, Y, X)`` slice, closing a broken cortical shell.

    :func:`~microsr.morphometry.segment.periosteal_envelope` with a closing radius of
    ``closing_vox``, grown to 2, 3, 4 times that in a slice until >= 95 % of the slice's
    bone lies inside (a thin cortex that the threshold broke open); else the largest.
    """
    bone = np.asarray(bone, bool)
    out = np.zeros_like(bone)
    for i, sl in enumerate(bone):
        for k in range(1, ENVELOPE_GROWTH + 1) if sl.any() else ():
            out[i] = periosteal_envelope(sl[None], closing_vox=k * closing_vox)[0]
            if closing_vox == 0 or (sl & out[i]).sum() >= ENVELOPE_HOLDS * sl.sum():
                break
    return out


def _envelope_stats(bone: np.ndarray, closing_vox: int) -> dict[str, float] | None:
    """Median envelope statistics over sampled slices with bone (None: no bone)."""
    rows = []
    picks = np.flatnonzero(bone.reshape(len(bone), -1).any(1))
    for i in picks[_sample(len(picks))] if len(picks) else []:
        env = envelope(bone[i : i + 1], closing_vox)[0]
        rim = env & ~ndimage.binary_erosion(env, iterations=RIM_VOX)
        border = np.concatenate([env[0], env[-1], env[:, 0], env[:, -1]])
        rows.append(
            (
                (bone[i] & env).sum() / bone[i].sum(),
                env.mean(),
                border.mean(),
                (bone[i] & rim).sum() / max(rim.sum(), 1),
            )
        )
    if not rows:
        return None
    med = np.median(np.asarray(rows, float), axis=0)
    return dict(zip(("bone_in", "area", "border", "rim"), (float(v) for v in med)))


def _auto_rule(bone: np.ndarray, config: MorphometryConfig, image) -> tuple[str, str]:
    zeros = ""
    if image is not None:
        outside, inside, single = _zero_contour(np.asarray(image) != 0)
        if outside >= OUTSIDE_ZEROS_MIN and inside < INSIDE_ZEROS_MAX and single >= ONE_CONTOUR:
            return "nonzero", (
                f"{outside:.0%} of the image is exactly 0 outside a contour "
                f"({inside:.1%} zeros inside): a VOI exported with zeros outside"
            )
        zeros = f"; no zero-padded contour ({outside:.0%} zeros outside, {inside:.1%} inside)"
    s = _envelope_stats(bone, config.closing_vox)
    if s is None:
        return "roi", f"no bone segmented: whole field{zeros}"
    text = (
        f"{s['bone_in']:.0%} of the bone inside the envelope, envelope {s['area']:.0%} of the "
        f"slice, {s['border']:.0%} of the border, {s['rim']:.0%} bone in its rim{zeros}"
    )
    if (
        s["bone_in"] >= BONE_IN_ENVELOPE_MIN
        and s["area"] <= ENVELOPE_AREA_MAX
        and s["border"] <= ENVELOPE_BORDER_MAX
        and s["rim"] >= RIM_BONE_MIN
    ):
        return "envelope", f"whole-bone section with a cortical shell: {text}"
    return "roi", f"trabecular VOI filling the field (not a closed cortical shell: {text})"


def choose_total_area(
    bone: np.ndarray,
    config: MorphometryConfig,
    mask: np.ndarray | None = None,
    *,
    image: np.ndarray | None = None,
    name: str = "volume",
) -> TotalArea:
    """The TA mask for bone mask ``bone`` under ``config.ta`` (see the module notes).

    Parameters
    ----------
    bone
        ``(N, Y, X)`` bool segmentation (the reference's, e.g. HR's, in an evaluation).
    config
        ``ta`` (auto | envelope | roi | nonzero) and ``closing_vox``.
    mask
        Optional ``(N, Y, X)`` ROI mask: under ``auto`` it is TA; other rules stay in it.
    image
        The grey values (only whether each is exactly 0 is used): needed by ``nonzero``,
        looked at by ``auto``.
    name
        For error messages.

    Returns
    -------
    TotalArea
        ``mask`` ``(N, Y, X)`` bool, ``rule`` (mask | envelope | roi | nonzero), ``reason``.

    Raises
    ------
    MicrosrError
        A mask or image of another shape than ``bone``; ``nonzero`` without an image.
    """
    bone = np.asarray(bone, bool)
    for what, arr in (("mask", mask), ("image", image)):
        if arr is not None and tuple(np.shape(arr)) != bone.shape:
            raise MicrosrError(
                f"{name}: TA {what} shape {tuple(np.shape(arr))} != segmentation {bone.shape}"
            )
    roi = np.ones(bone.shape, bool) if mask is None else np.asarray(mask, bool)
    rule, reason = config.ta, f"ta={config.ta!r} requested"
    if rule == "auto":
        if mask is not None:
            return TotalArea(roi, "mask", "the given ROI mask")
        rule, reason = _auto_rule(bone, config, image)
    if rule == "nonzero":
        if image is None:
            raise MicrosrError(f"{name}: ta='nonzero' needs the image (voxels != 0 are TA)")
        return TotalArea((np.asarray(image) != 0) & roi, rule, reason)
    if rule == "roi":
        return TotalArea(roi, rule, reason)
    return TotalArea(envelope(bone & roi, config.closing_vox) & roi, rule, reason)
