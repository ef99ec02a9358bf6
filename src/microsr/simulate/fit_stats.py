"""Summary statistics of a reconstructed microCT scan, for fitting the acquisition simulator.

Computed the same way on the user's LR scan and on simulated scans, so that matching them
fits the simulator's settings (:mod:`microsr.simulate.fit`):

* **classes and levels**: Otsu's threshold of the smoothed scan splits marrow (and air)
  from bone; the marrow level is the median of the eroded low class, the bone level that
  of the eroded high class (medians are insensitive to symmetric noise);
* **noise** (:func:`noise_spectrum`): square in-plane patches lying wholly inside the
  eroded low class, each detrended by a least-squares plane; the noise standard deviation
  and the radially averaged noise power spectrum (NPS) of the patches (periodogram,
  Siewerdsen et al., Med. Phys. 29 (2002) 2655, doi:10.1118/1.1513158), plus the
  neighbouring-slice difference variance, which keeps only the part of the noise that is
  independent from slice to slice;
* **edge spread** (:func:`edge_profile`): the raw scan sampled along the gradient of
  the smoothed scan across bone/marrow boundaries whose two sides reach the marrow and
  bone levels, averaged and normalised to 0 (marrow) .. 1 (bone); its width is the sigma
  of a fitted Gaussian edge (error function), in voxels, in-plane and along Z.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, optimize
from skimage.filters import threshold_otsu

#: Patch sizes (voxels) tried for the NPS, largest first; the first with enough patches wins.
PATCH_SIZES = (32, 24, 16, 12, 8)
MIN_PATCHES = 6
GOOD_PATCHES = 24
#: Otsu effectiveness below which the scan counts as one flat class (Gaussian: 0.64).
MIN_SEPARATION = 0.7
_MAX_PATCHES = 1500
_MAX_EDGES = 20000
#: Offsets (voxels) at which edge profiles are sampled.
EDGE_OFFSETS = np.arange(-4.0, 4.01, 0.25)
#: Edges each half needs in :func:`width_spread`.
MIN_SPLIT_EDGES = 100


@dataclass
class ScanStats:
    """Statistics of one scan (units: the scan's grey values; lengths in voxels).

    ``bone_high`` is the 99.5th percentile of the smoothed scan (the noise scale's top).

    ``nps`` is the radially averaged NPS (grey^2 per frequency bin, mean = variance) at
    ``nps_freq`` cycles/voxel; ``edge_inplane`` / ``edge_z`` are mean normalised edge
    profiles at :data:`EDGE_OFFSETS` (None if no edge qualified), ``width_*`` their fitted
    Gaussian sigma. ``contrast = bone - marrow``; ``noise_diff`` is the noise standard
    deviation from neighbouring-slice differences, ``sqrt(var(a_z - a_z+1) / 2)``.
    """

    marrow: float
    bone: float
    noise: float
    noise_diff: float | None
    patch: int
    n_patches: int
    nps_freq: np.ndarray
    nps: np.ndarray
    noise_rel_se: float
    nps_diff: np.ndarray | None = None
    excess: float | None = None
    excess_se: float | None = None
    noise_diff_rel_se: float | None = None
    bone_high: float | None = None
    edge_inplane: np.ndarray | None = None
    edge_z: np.ndarray | None = None
    width_inplane: float | None = None
    width_z: float | None = None
    n_edges: dict = field(default_factory=dict)
    #: ``nps_diff`` of each patch ``(n, bins)`` and its resampling block
    #: (:func:`microsr.simulate.fit_search.filter_choice_frequencies`)
    nps_diff_patches: np.ndarray | None = field(default=None, repr=False)
    nps_diff_blocks: np.ndarray | None = field(default=None, repr=False)

    @property
    def contrast(self) -> float:
        return self.bone - self.marrow

    @property
    def scale(self) -> float:
        """The noise scale: ``bone_high - marrow`` (the 99.5th percentile of the smoothed
        scan tracks the simulator's grey -> attenuation map, set by the HR volume's 99.5th
        percentile, more closely than the bone median does), else the contrast."""
        return self.bone_high - self.marrow if self.bone_high is not None else self.contrast

    @property
    def relative_noise(self) -> float:
        """Noise standard deviation over the noise scale :attr:`scale`."""
        return self.noise / self.scale

    @property
    def relative_photon_noise(self) -> float:
        """Slice-to-slice independent noise over the contrast (all noise with one slice)."""
        return (self.noise_diff if self.noise_diff is not None else self.noise) / self.scale

    @property
    def relative_excess(self) -> float | None:
        """Noise shared by neighbouring slices (streaks, structure), std over the contrast,
        signed: ``sign(excess) sqrt(|excess|) / contrast``."""
        if self.excess is None:
            return None
        return math.copysign(math.sqrt(abs(self.excess)), self.excess) / self.scale

    @property
    def noise_shape(self) -> np.ndarray:
        """The NPS of the independent noise (single-slice NPS with one slice), over its mean."""
        nps = self.nps_diff if self.nps_diff is not None else self.nps
        return nps / nps.mean()


def classify(array: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """The smoothed scan (Gaussian, sigma 1 voxel) and Otsu's threshold inside ``mask``."""
    sigma = (1.0 if array.shape[0] >= 3 else 0.0, 1.0, 1.0)
    smooth = ndimage.gaussian_filter(np.asarray(array, dtype=np.float32), sigma, mode="nearest")
    values = smooth[mask] if mask is not None else smooth
    return smooth, float(threshold_otsu(values[:: max(1, values.size // 2_000_000)]))


def otsu_separation(smooth: np.ndarray, threshold: float, mask: np.ndarray | None) -> float:
    """Otsu's effectiveness ``var_between / var_total`` of the smoothed scan (2 / pi for a
    Gaussian split at its median, 1 for two separated levels)."""
    values = (smooth[mask] if mask is not None else smooth).ravel()
    values = values[:: max(1, values.size // 2_000_000)].astype(np.float64)
    high = values >= threshold
    w = high.mean()
    if w in (0.0, 1.0) or values.var() == 0:
        return 0.0
    between = w * (1 - w) * (values[high].mean() - values[~high].mean()) ** 2
    return float(between / values.var())


def flat_regions(smooth: np.ndarray, threshold: float, mask: np.ndarray | None) -> np.ndarray:
    """The low class (marrow, air) eroded by 2 voxels in-plane in ``mask``.

    The low class is cut at 40 % of the way from its median to the high class's (below
    Otsu's threshold), which keeps the partial-volume tails of bone edges out.
    """
    inside = smooth if mask is None else smooth[mask]
    sample = inside.ravel()[:: max(1, inside.size // 1_000_000)]
    lo, hi = np.median(sample[sample < threshold]), np.median(sample[sample >= threshold])
    low = smooth < lo + 0.4 * (hi - lo)
    if mask is not None:
        low &= mask
    structure = np.ones((1, 5, 5), bool)
    return ndimage.binary_erosion(low, structure, border_value=1)


def bone_level(array: np.ndarray, smooth, threshold, mask) -> float:
    """Median grey value of the high class, eroded by one voxel where that leaves enough."""
    high = smooth >= threshold
    if mask is not None:
        high &= mask
    core = ndimage.binary_erosion(high, np.ones((1, 3, 3), bool), border_value=1)
    chosen = core if core.sum() >= 200 else high
    return float(np.median(array[chosen])) if chosen.any() else float("nan")


def patch_corners(flat: np.ndarray, patch: int, *, max_patches: int = _MAX_PATCHES) -> list:
    """``(z, y, x)`` corners of non-overlapping-ish ``patch`` x ``patch`` squares inside ``flat``."""
    stride = max(patch // 4, 2)
    corners = []
    for z in range(flat.shape[0]):
        integral = np.pad(flat[z].astype(np.int32).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        full = patch * patch
        sums = (
            integral[patch:, patch:] - integral[:-patch, patch:]
            - integral[patch:, :-patch] + integral[:-patch, :-patch]
        )  # fmt: skip
        ys, xs = np.nonzero(sums[::stride, ::stride] == full)
        corners += [(z, y * stride, x * stride) for y, x in zip(ys, xs)]
    if len(corners) > max_patches:
        keep = np.random.default_rng(0).choice(len(corners), max_patches, replace=False)
        corners = [corners[i] for i in sorted(keep)]
    return corners


def largest_patch(
    array: np.ndarray, mask: np.ndarray | None = None, *, min_count: int = MIN_PATCHES
) -> int | None:
    """The largest of :data:`PATCH_SIZES` with ``min_count`` patches inside the flat
    regions of ``array`` (structured, two classes), or None."""
    array = np.asarray(array, dtype=np.float32)
    smooth, threshold = classify(array, mask)
    flat = flat_regions(smooth, threshold, mask)
    for size in PATCH_SIZES:
        if size <= min(array.shape[1:]) and len(patch_corners(flat, size)) >= min_count:
            return size
    return None


def _detrend(patches: np.ndarray) -> np.ndarray:
    """Subtract each patch's least-squares plane ``a + b y + c x``; shape ``(n, P, P)``."""
    p = patches.shape[-1]
    yy, xx = np.mgrid[:p, :p]
    design = np.stack([np.ones(p * p), yy.ravel() - (p - 1) / 2, xx.ravel() - (p - 1) / 2], 1)
    flat = patches.reshape(len(patches), -1).T
    coef, *_ = np.linalg.lstsq(design, flat, rcond=None)
    return (flat - design @ coef).T.reshape(patches.shape)


def radial_nps(patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged periodogram of detrended ``(n, P, P)`` patches.

    Returns bin centres (cycles/voxel, up to 0.5) and the NPS per bin, normalised so that
    its mean over the 2D frequency plane is the variance (``|FFT|^2 / P^2``).
    """
    freq, each = patch_nps(patches)
    return freq, each.mean(axis=0)


def patch_nps(patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`radial_nps` of each patch on its own: ``(freq, (n, bins))``."""
    p = patches.shape[-1]
    power = (np.abs(np.fft.fft2(patches)) ** 2).reshape(len(patches), -1) / (p * p)
    f = np.fft.fftfreq(p)
    radius = np.hypot(*np.meshgrid(f, f, indexing="ij"))
    edges = np.arange(0.5 / p, 0.5 + 1e-9, 1.0 / p)  # bins of width 1/P from 1/(2P)
    index = np.digitize(radius, edges).ravel()
    onehot = np.zeros((index.size, len(edges) + 1))
    onehot[np.arange(index.size), index] = 1.0
    counts = onehot.sum(axis=0)
    keep = slice(1, len(edges))  # drop DC (removed by detrending) and the corners > 0.5
    centres = (edges[:-1] + edges[1:]) / 2
    return centres, (power @ onehot)[:, keep] / np.maximum(counts[keep], 1)


def noise_spectrum(array: np.ndarray, flat: np.ndarray, patch: int) -> dict | None:
    """Noise statistics of the flat patches of ``array`` (keys: the noise fields of
    :class:`ScanStats`).

    The single-slice statistics (``noise``, ``nps``) hold everything that varies within a
    patch; the neighbouring-slice differences (``noise_diff``, ``nps_diff``, both scaled
    by 1/2 in variance) only what is independent from slice to slice, i.e. photon noise
    without the streaks and structure shared by neighbouring slices; ``excess`` is the
    variance of the latter kind (``noise**2 - noise_diff**2``) and ``excess_se`` its
    standard error. Standard errors count patches overlapping at the sampling stride as
    one. Returns None when fewer than :data:`MIN_PATCHES` patches fit inside ``flat``.
    """
    corners = patch_corners(flat, patch)
    if len(corners) < MIN_PATCHES:
        return None
    dof = patch * patch / (patch * patch - 3)  # a plane fit removes 3 of P^2 d.o.f.
    overlap = (patch / max(patch // 4, 2)) ** 2
    stack = np.stack([array[z, y : y + patch, x : x + patch] for z, y, x in corners])
    detrended = _detrend(stack.astype(np.float64))
    variances = detrended.var(axis=(1, 2)) * dof
    variance = float(variances.mean())
    n_eff = max(len(variances) / overlap, 1.0)
    freq, nps = radial_nps(detrended)
    out = {
        "noise": math.sqrt(variance), "nps_freq": freq, "nps": nps, "n_patches": len(corners),
        "noise_rel_se": float(variances.std() / math.sqrt(n_eff) / (2 * max(variance, 1e-30))),
        "patch": patch, "noise_diff": None, "nps_diff": None, "excess": None, "excess_se": None,
        "nps_diff_patches": None, "nps_diff_blocks": None,
    }  # fmt: skip
    pairs = [
        i for i, (z, y, x) in enumerate(corners)
        if z + 1 < array.shape[0] and flat[z + 1, y : y + patch, x : x + patch].all()
    ]  # fmt: skip
    if len(pairs) >= MIN_PATCHES:
        nxt = np.stack(
            [array[z + 1, y : y + patch, x : x + patch] for z, y, x in (corners[i] for i in pairs)]
        )
        diff = _detrend(nxt.astype(np.float64) - stack[pairs])
        half = diff.var(axis=(1, 2)) * dof / 2
        excess = variances[pairs] - half
        n_eff = max(len(pairs) / overlap, 1.0)
        each = patch_nps(diff)[1] / 2
        out.update(
            noise_diff=math.sqrt(float(half.mean())), nps_diff=each.mean(axis=0),
            nps_diff_patches=each, nps_diff_blocks=_blocks([corners[i] for i in pairs], patch),
            excess=float(excess.mean()), excess_se=float(excess.std() / math.sqrt(n_eff)),
            noise_diff_rel_se=float(half.std() / math.sqrt(n_eff) / (2 * half.mean())),
        )  # fmt: skip
    return out


def _blocks(corners: list, patch: int) -> np.ndarray:
    """Resampling block of each patch (for
    :func:`~microsr.simulate.fit_search.filter_choice_frequencies`): patches in one
    ``patch``-square tile of a pair of slices overlap or share a slice, so they count as one.
    """
    keys = [(z // 2, y // patch, x // patch) for z, y, x in corners]
    index = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    return np.array([index[k] for k in keys])


def _edge_points(smooth, threshold, contrast, mask, axis: str, rng) -> tuple:
    """Voxels on a bone/marrow boundary with their unit gradient direction ``(n, 3)``."""
    gz, gy, gx = np.gradient(smooth)
    g_in = np.hypot(gy, gx)
    near = np.abs(smooth - threshold) < 0.2 * contrast
    if axis == "z":
        near &= np.abs(gz) > 2 * g_in
    else:
        near &= g_in > 2 * np.abs(gz)
    if mask is not None:
        near &= mask
    points = np.argwhere(near)
    if len(points) > _MAX_EDGES:
        points = points[rng.choice(len(points), _MAX_EDGES, replace=False)]
    z, y, x = points.T
    if axis == "z":
        direction = np.stack([np.sign(gz[z, y, x]), 0 * z, 0 * z], 1).astype(float)
        slope = np.abs(gz[z, y, x])
    else:
        slope = g_in[z, y, x]
        direction = np.stack([0 * z, gy[z, y, x] / slope, gx[z, y, x] / slope], 1)
    step = np.clip((smooth[z, y, x] - threshold) / np.maximum(slope, 1e-12), -0.7, 0.7)
    centres = points - step[:, None] * direction
    return centres, direction


def edge_profile(
    array, smooth, threshold, levels: tuple[float, float], mask=None, *, axis: str = "inplane"
) -> tuple[np.ndarray | None, int]:
    """Mean normalised edge profile at :data:`EDGE_OFFSETS` and the number of edges used.

    Edges qualify when the smoothed scan 2.5 voxels to either side lies within 35 % of the
    contrast of the marrow and bone levels (isolated edges that reach both plateaus).
    """
    marrow, bone = levels
    contrast = bone - marrow
    if not contrast > 0 or (axis == "z" and array.shape[0] < 9):
        return None, 0
    rng = np.random.default_rng(0)
    centres, direction = _edge_points(smooth, threshold, contrast, mask, axis, rng)
    if len(centres) == 0:
        return None, 0
    side = np.stack([centres - 2.5 * direction, centres + 2.5 * direction])
    lo, hi = (ndimage.map_coordinates(smooth, s.T, order=1, mode="nearest") for s in side)
    good = (lo < marrow + 0.35 * contrast) & (hi > bone - 0.35 * contrast)
    if good.sum() < 20:
        return None, int(good.sum())
    c, d = centres[good], direction[good]
    coords = c[None] + EDGE_OFFSETS[:, None, None] * d[None]  # (offsets, n, 3)
    samples = ndimage.map_coordinates(
        np.asarray(array, np.float32), coords.reshape(-1, 3).T, order=1, mode="nearest"
    ).reshape(len(EDGE_OFFSETS), -1)
    return (samples.mean(axis=1) - marrow) / contrast, int(good.sum())


def edge_width(profile: np.ndarray | None) -> float | None:
    """Sigma (voxels) of the error function ``lo + (hi - lo) Phi((x - x0) / sigma)`` fitted to
    a normalised edge profile over offsets -3..3."""
    if profile is None:
        return None
    sel = np.abs(EDGE_OFFSETS) <= 3.0
    x, y = EDGE_OFFSETS[sel], profile[sel]

    def model(x, lo, hi, x0, sigma):
        return lo + (hi - lo) * 0.5 * (1 + _erf((x - x0) / (math.sqrt(2) * abs(sigma) + 1e-9)))

    try:
        popt, _ = optimize.curve_fit(model, x, y, p0=(0.0, 1.0, 0.0, 0.7), maxfev=4000)
    except (RuntimeError, ValueError):
        return None
    return float(abs(popt[3]))


def width_spread(
    array: np.ndarray, stats: ScanStats, mask: np.ndarray | None = None
) -> dict | None:
    """How much the in-plane edge width of a volume like ``array`` varies with the region
    imaged: the halves of ``array`` along Z, Y and X (each split with at least
    :data:`MIN_SPLIT_EDGES` edges per half) give relative differences ``d`` of their widths,
    and a whole volume's width has relative standard deviation ``sqrt(mean(d**2)) / 2``
    (the variance of a width goes as 1 / the edges averaged). ``stats``: ``array``'s own
    statistics (levels and width). None when no split qualifies.

    On LHDL slabs (8 x 80 x 80 LR voxels) this gives 2-3 %, as do the widths of five slabs
    at one protocol (SD 2.8 %): about the change a detector PSF of 0.4 LR bins makes.
    """
    if stats.width_inplane is None:
        return None
    array = np.asarray(array, np.float32)
    smooth, threshold = classify(array, mask)
    diffs = []
    for axis, n in enumerate(array.shape):
        if n < 4:
            continue
        widths = []
        for half in (slice(0, n // 2), slice(n // 2, n)):
            region = np.zeros(array.shape, bool)
            region[(slice(None),) * axis + (half,)] = True
            if mask is not None:
                region &= mask
            profile, count = edge_profile(
                array, smooth, threshold, (stats.marrow, stats.bone), region
            )
            widths.append(edge_width(profile) if count >= MIN_SPLIT_EDGES else None)
        if None not in widths:
            diffs.append((widths[0] - widths[1]) / stats.width_inplane)
    if not diffs:
        return None
    return {"relative_sd": float(math.sqrt(np.mean(np.square(diffs))) / 2), "splits": len(diffs)}


def _erf(x):
    from scipy.special import erf

    return erf(x)


def scan_statistics(
    array: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    patch: int | None = None,
    structured: bool | None = None,
) -> tuple[ScanStats | None, dict]:
    """All statistics of one scan ``(Z, Y, X)``; ``patch`` forces the NPS patch size.

    ``structured``: whether the scan has two classes (bone and marrow); None decides by
    Otsu's effectiveness (:func:`otsu_separation`); a one-class scan is flat throughout.

    Returns ``(stats, info)``; ``stats`` is None when no flat region holds enough
    patches, and ``info`` then says how many patches of each size were found.
    """
    array = np.asarray(array, dtype=np.float32)
    smooth, threshold = classify(array, mask)
    separation = None
    if structured is None:
        separation = otsu_separation(smooth, threshold, mask)
        structured = separation >= MIN_SEPARATION
    if structured:
        flat = flat_regions(smooth, threshold, mask)
    else:  # one class (e.g. a phantom of water): everything is flat
        flat = np.ones(array.shape, bool) if mask is None else mask.copy()
    info = {"threshold": threshold, "flat_fraction": float(flat.mean()), "structured": structured,
            "separation": separation}  # fmt: skip
    sizes = [p for p in ((patch,) if patch else PATCH_SIZES) if p <= min(array.shape[1:])]
    counts = {p: len(patch_corners(flat, p)) for p in sizes}
    info.update({f"patches_{p}": n for p, n in counts.items()})
    # the largest patch with plenty of patches, else the largest with enough
    chosen = [p for p in sizes if counts[p] >= GOOD_PATCHES] or [
        p for p in sizes if counts[p] >= MIN_PATCHES
    ]
    noise = noise_spectrum(array, flat, chosen[0]) if chosen else None
    if noise is None:
        return None, info
    marrow = float(np.median(array[flat]))
    bone = bone_level(array, smooth, threshold, mask) if structured else marrow
    inside = smooth if mask is None else smooth[mask]
    high = float(np.percentile(inside.ravel()[:: max(1, inside.size // 2_000_000)], 99.5))
    stats = ScanStats(marrow=marrow, bone=bone, bone_high=high if structured else None, **noise)
    for axis in ("inplane", "z"):
        profile, n = edge_profile(array, smooth, threshold, (marrow, bone), mask, axis=axis)
        setattr(stats, f"edge_{axis}", profile)
        setattr(stats, f"width_{axis}", edge_width(profile))
        stats.n_edges[axis] = n
    return stats, info
