"""Rigid LR -> HR registration, its report, and resampling LR onto aligned grids.

The paper's LR and HR scans are aligned because the specimen never left its holder
("only the minor inaccuracy associated with the movement of the scanner stage"). When a
specimen moved, :func:`register_pair` estimates the rigid transform with SimpleITK
(Euler angles + translation, about the HR box centre; correlation or Mattes mutual
information; multi-resolution) and :func:`align_lr` resamples the LR scan onto an LR
grid that shares the HR box, ready for slice pairing. :func:`quick_misalignment` is the
cheap in-plane check that ``prepare`` runs on every pair.

Transform convention: ``T`` maps a physical point of the HR scan to the point of the LR
scan showing the same tissue (``LR(T(p)) ~ HR(p)``); its translation is what the LR
content is displaced by. Reported vectors are ``(z, y, x)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import SimpleITK as sitk
from pydantic import BaseModel, ConfigDict, Field

from microsr.errors import MicrosrError
from microsr.pairing.upsample import upsample_bilinear
from microsr.volume import Volume


class RegistrationConfig(BaseModel):
    """Options of :func:`register_pair` (defaults suit same-scanner LR/HR pairs)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: Literal["correlation", "mattes"] = "correlation"
    bins: int = Field(32, ge=8, description="histogram bins of Mattes mutual information")
    shrink_factors: tuple[int, ...] = (4, 2, 1)
    smoothing_sigmas: tuple[float, ...] = (2.0, 1.0, 0.0)  # in HR voxels, per level
    iterations: int = Field(200, ge=1)
    sampling_fraction: float = Field(0.25, gt=0, le=1)
    max_voxels: int = Field(2_000_000, ge=1000, description="similarity report subsample")
    seed: int = 0


@dataclass(frozen=True)
class RegistrationResult:
    """A rigid transform of LR onto HR and how well it aligns them.

    Attributes
    ----------
    rotation_deg
        Euler angles about the ``(z, y, x)`` axes, degrees.
    translation_mm, translation_um, translation_hr_voxels
        Displacement of the LR content ``(z, y, x)`` in mm, um and HR voxels.
    center_mm
        Centre of rotation ``(z, y, x)`` in mm (the HR box centre).
    ncc_before, ncc_after
        Normalised cross-correlation of LR (resampled on the HR grid) with HR, without
        and with the transform.
    metric, metric_value
        The optimised metric and its final value (lower is better, ITK convention).
    """

    rotation_deg: tuple[float, float, float]
    translation_mm: tuple[float, float, float]
    translation_um: tuple[float, float, float]
    translation_hr_voxels: tuple[float, float, float]
    center_mm: tuple[float, float, float]
    ncc_before: float
    ncc_after: float
    metric: str
    metric_value: float

    def transform(self) -> sitk.Euler3DTransform:
        """The SimpleITK transform (HR physical point -> LR physical point)."""
        t = sitk.Euler3DTransform()
        t.SetCenter(self.center_mm[::-1])
        t.SetRotation(*np.deg2rad(self.rotation_deg[::-1]))
        t.SetTranslation(self.translation_mm[::-1])
        return t

    def as_dict(self) -> dict:
        """JSON-ready dict (for dataset.json and ``register --json``)."""
        return asdict(self)


def to_sitk(volume: Volume) -> sitk.Image:
    """A float32 SimpleITK image with the volume's spacing, origin (and direction)."""
    image = sitk.GetImageFromArray(np.asarray(volume.array, np.float32))
    image.SetSpacing(volume.spacing_mm[::-1])
    image.SetOrigin(volume.origin_mm[::-1])
    direction = volume.metadata.get("direction")
    if direction is not None and len(direction) == 9:
        image.SetDirection(tuple(float(d) for d in direction))
    return image


def check_orientation(lr: Volume, hr: Volume, *, name: str = "pair") -> None:
    """Raise if the two volumes' direction matrices differ (e.g. a flipped axis)."""
    eye = tuple(np.eye(3).ravel())
    d_lr = np.asarray(lr.metadata.get("direction") or eye, float)
    d_hr = np.asarray(hr.metadata.get("direction") or eye, float)
    if not np.allclose(d_lr, d_hr, atol=1e-4):
        raise MicrosrError(
            f"{name}: LR {lr.metadata.get('source', '')} and HR {hr.metadata.get('source', '')} "
            f"have different orientations (direction {tuple(np.round(d_lr, 4))} vs "
            f"{tuple(np.round(d_hr, 4))}); reorient one of them first"
        )


def register_pair(
    lr: Volume, hr: Volume, config: RegistrationConfig | None = None, *, name: str = "pair"
) -> RegistrationResult:
    """Estimate the rigid transform of ``lr`` onto ``hr`` (see the module docstring).

    Parameters
    ----------
    lr, hr
        Volumes ``(Z, Y, X)`` with spacing in mm, in the same units (grey values).
    config
        Metric, pyramid and optimiser options.

    Returns
    -------
    RegistrationResult
    """
    config = config or RegistrationConfig()
    if len(config.shrink_factors) != len(config.smoothing_sigmas):
        raise MicrosrError("registration: shrink_factors and smoothing_sigmas differ in length")
    check_orientation(lr, hr, name=name)
    for label, vol in (("LR", lr), ("HR", hr)):
        lo, hi = float(np.min(vol.array)), float(np.max(vol.array))
        if lo == hi:
            raise MicrosrError(
                f"{name}: the {label} volume is constant ({lo:g}); nothing to register"
            )
    fixed, moving = to_sitk(hr), to_sitk(lr)
    initial = sitk.Euler3DTransform()
    centre = np.asarray(hr.origin_mm) + (np.asarray(hr.shape) - 1) / 2 * np.asarray(hr.spacing_mm)
    initial.SetCenter(tuple(centre[::-1]))
    reg = _method(config, hr.spacing_mm)
    reg.SetInitialTransform(initial, inPlace=False)
    try:
        final = sitk.Euler3DTransform(reg.Execute(fixed, moving).GetNthTransform(0))
    except RuntimeError as exc:
        raise MicrosrError(f"{name}: registration failed ({str(exc).splitlines()[-1]})") from None
    angles = np.rad2deg([final.GetAngleX(), final.GetAngleY(), final.GetAngleZ()])[::-1]
    t_mm = np.asarray(final.GetTranslation())[::-1]
    reference = _report_grid(hr, config.max_voxels)
    return RegistrationResult(
        rotation_deg=_tuple(angles),
        translation_mm=_tuple(t_mm),
        translation_um=_tuple(t_mm * 1000),
        translation_hr_voxels=_tuple(t_mm / np.asarray(hr.spacing_mm)),
        center_mm=_tuple(centre),
        ncc_before=_ncc_on(reference, moving, sitk.Euler3DTransform()),
        ncc_after=_ncc_on(reference, moving, final),
        metric=config.metric,
        metric_value=float(reg.GetMetricValue()),
    )


def align_lr(lr: Volume, hr: Volume, result: RegistrationResult) -> Volume:
    """``lr`` resampled (linear) onto an LR-spacing grid sharing the HR box start.

    The output has the LR shape and spacing, origin ``hr box start + lr spacing / 2``,
    float32 values (outside the LR scan: its minimum) and the LR calibration.
    """
    start = np.asarray(hr.origin_mm) - np.asarray(hr.spacing_mm) / 2
    origin = tuple(start + np.asarray(lr.spacing_mm) / 2)
    grid = Volume(np.zeros(lr.shape, np.float32), lr.spacing_mm, origin)
    return _resample(lr, grid, result.transform())


def resample_to_hr(lr: Volume, hr: Volume, result: RegistrationResult | None = None) -> Volume:
    """``lr`` resampled (linear) onto the HR grid, with the transform if given."""
    transform = result.transform() if result is not None else sitk.Euler3DTransform()
    return _resample(lr, hr, transform)


def quick_misalignment(
    lr: Volume,
    hr: Volume,
    *,
    factor: int,
    hr_index: np.ndarray,
    max_shift_lr: int = 2,
    n_slices: int = 5,
) -> dict:
    """Cheap in-plane alignment check of a pair whose boxes already agree.

    Bilinear-upsampled LR slices (a few, evenly spread) are compared with their HR
    slices by normalised cross-correlation at every integer HR-pixel shift within
    ``+-max_shift_lr`` LR voxels; the best shift is refined to sub-pixel by a parabola.

    Returns
    -------
    dict
        ``shift_hr_voxels`` and ``shift_lr_voxels`` ``(y, x)`` (LR content relative to
        HR), ``ncc_zero``, ``ncc_best`` and ``slices`` (the LR slice indices used).
    """
    k_lr = np.nonzero(hr_index >= 0)[0]
    k_lr = k_lr[np.unique(np.linspace(0, len(k_lr) - 1, min(n_slices, len(k_lr))).astype(int))]
    m = max_shift_lr * factor
    h = min(lr.shape[1] * factor, hr.shape[1]) - 2 * m
    w = min(lr.shape[2] * factor, hr.shape[2]) - 2 * m
    if h < 4 or w < 4:
        raise MicrosrError("quick alignment check: slices too small for the shift range")
    up = upsample_bilinear(np.asarray(lr.array[k_lr], np.float32), factor=factor)
    ref = np.asarray(hr.array[hr_index[k_lr]], np.float32)[:, m : m + h, m : m + w]
    scores = np.full((2 * m + 1, 2 * m + 1), -1.0)
    for dy in range(-m, m + 1):
        for dx in range(-m, m + 1):
            scores[dy + m, dx + m] = _ncc(up[:, m + dy : m + dy + h, m + dx : m + dx + w], ref)
    iy, ix = np.unravel_index(int(np.argmax(scores)), scores.shape)
    shift = np.array([iy - m + _parabola(scores[:, ix], iy), ix - m + _parabola(scores[iy], ix)])
    return {
        "shift_hr_voxels": [round(float(s), 3) for s in shift],
        "shift_lr_voxels": [round(float(s) / factor, 3) for s in shift],
        "ncc_zero": round(float(scores[m, m]), 5),
        "ncc_best": round(float(scores[iy, ix]), 5),
        "slices": k_lr.tolist(),
    }


def _method(config: RegistrationConfig, hr_spacing) -> sitk.ImageRegistrationMethod:
    reg = sitk.ImageRegistrationMethod()
    if config.metric == "mattes":
        reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=config.bins)
    else:
        reg.SetMetricAsCorrelation()
    if config.sampling_fraction < 1:
        reg.SetMetricSamplingStrategy(reg.RANDOM)
        # seed 0 would mean "wall clock" to ITK: keep runs reproducible
        reg.SetMetricSamplingPercentage(config.sampling_fraction, config.seed + 1)
    reg.SetInterpolator(sitk.sitkLinear)
    voxel = min(hr_spacing)  # steps are physical shifts (mm): scale them to the voxel
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0 * voxel,
        minStep=1e-4 * voxel,
        numberOfIterations=config.iterations,
        relaxationFactor=0.5,
        gradientMagnitudeTolerance=1e-8,
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(list(config.shrink_factors))
    sigmas_mm = [s * voxel for s in config.smoothing_sigmas]
    reg.SetSmoothingSigmasPerLevel(sigmas_mm)
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return reg


def _resample(moving: Volume, grid: Volume, transform: sitk.Transform) -> Volume:
    fill = float(np.min(moving.array)) if moving.array.size else 0.0
    out = sitk.Resample(to_sitk(moving), to_sitk(grid), transform, sitk.sitkLinear, fill)
    meta = {**moving.metadata, "registered_to": grid.metadata.get("source", "")}
    return Volume(
        sitk.GetArrayFromImage(out), grid.spacing_mm, grid.origin_mm, moving.calibration, meta
    )


def _report_grid(hr: Volume, max_voxels: int) -> Volume:
    """HR, subsampled by an integer stride so that it has at most ``max_voxels``."""
    s = max(1, int(np.ceil((np.prod(hr.shape) / max_voxels) ** (1 / 3))))
    arr = np.asarray(hr.array[::s, ::s, ::s], np.float32)
    return Volume(arr, tuple(sp * s for sp in hr.spacing_mm), hr.origin_mm)


def _ncc_on(reference: Volume, moving: sitk.Image, transform: sitk.Transform) -> float:
    out = sitk.Resample(moving, to_sitk(reference), transform, sitk.sitkLinear, np.nan)
    arr = sitk.GetArrayFromImage(out)
    inside = np.isfinite(arr)
    return round(_ncc(arr[inside], np.asarray(reference.array)[inside]), 6)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).ravel() - np.mean(a)
    b = np.asarray(b, np.float64).ravel() - np.mean(b)
    denom = np.sqrt(np.dot(a, a) * np.dot(b, b))
    return float(np.dot(a, b) / denom) if denom > 0 else 0.0


def _parabola(values: np.ndarray, i: int) -> float:
    """Sub-sample offset of the peak of ``values`` at ``i`` (0 at the border)."""
    if i == 0 or i == len(values) - 1:
        return 0.0
    a, b, c = values[i - 1], values[i], values[i + 1]
    denom = a - 2 * b + c
    return float(np.clip(0.5 * (a - c) / denom, -0.5, 0.5)) if denom < 0 else 0.0


def _tuple(values) -> tuple[float, float, float]:
    return tuple(round(float(v), 6) for v in values)  # type: ignore[return-value]
