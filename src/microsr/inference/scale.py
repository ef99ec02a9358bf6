"""How far ``predict`` upsamples each axis of an LR scan, from its voxel size (:func:`plan_scale`).

The checkpoint records the voxel sizes it was trained on: the training LR voxel and the HR
target voxel, per axis ``(z, y, x)`` in mm (:class:`~microsr.checkpoint.CheckpointMeta`). For
an input of voxel size ``s``, per axis:

* the factor is ``s / target`` rounded to an integer >= 1, so the SR voxel is close to the
  HR target's; an axis already at the target is not upsampled (an LR scan whose slices are
  already at the HR spacing keeps its slices);
* an input voxel more than 10 % away from the training LR voxel on any axis is run, with a
  warning giving the numbers: the model learned structures at another physical scale;
* an input at or finer than the HR target on every axis (an HR scan given as LR) is refused;
  ``force`` runs it anyway with the trained factors (the input treated as an LR scan at
  the training voxel size, as earlier versions did).

``keep_factors`` replaces the rule by the trained factors on every input, relative to the
input's own grid (SR voxel = input voxel / factor): a transfer across physical scales, e.g. a
model trained at 39 -> 19.5 um run on a 103 um scan to give 51 um. Nothing is refused for
its scale; a warning gives the SR voxel beside the model's HR target when they differ by
more than :data:`~microsr.io.spacing.SPACING_SCALE_RTOL`.

Checkpoints that record no voxel sizes (written before they did): the input's in-plane voxel
is assumed to be the training LR's, the HR target is that / ``factor`` in-plane and as fine
along z (HR microCT is usually isotropic), the training LR slice that z target times
``z_factor``; the assumption is logged. An isotropic input is then upsampled as before.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from microsr.checkpoint import CheckpointMeta
from microsr.errors import MicrosrError
from microsr.io.spacing import SPACING_SCALE_RTOL, spacing_off

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScalePlan:
    """Per-axis upsampling of one input.

    Attributes
    ----------
    factors
        ``(z, y, x)`` integer factors (SR voxels per LR voxel).
    target_mm, training_lr_mm
        The model's HR target and training LR voxel sizes ``(z, y, x)`` in mm.
    assumed
        The checkpoint records no voxel sizes; ``target_mm`` and ``training_lr_mm`` are the
        assumption of the module notes.
    """

    factors: tuple[int, int, int]
    target_mm: tuple[float, float, float]
    training_lr_mm: tuple[float, float, float]
    assumed: bool = False


def training_spacing(
    meta: CheckpointMeta, spacing_mm: tuple[float, float, float]
) -> tuple[tuple[float, float, float], tuple[float, float, float], bool]:
    """``(training LR, HR target, assumed)`` voxel sizes (z, y, x) in mm (see module notes)."""
    if meta.lr_spacing_mm is not None and meta.hr_spacing_mm is not None:
        return tuple(meta.lr_spacing_mm), tuple(meta.hr_spacing_mm), False  # type: ignore[return-value]
    ty, tx = spacing_mm[1] / meta.factor, spacing_mm[2] / meta.factor
    tz = (ty + tx) / 2
    lr = (tz * meta.slice_factor, spacing_mm[1], spacing_mm[2])
    return lr, (tz, ty, tx), True


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def plan_scale(
    spacing_mm: tuple[float, float, float],
    meta: CheckpointMeta,
    *,
    z_grid: str,
    force: bool = False,
    keep_factors: bool = False,
    name: str = "input",
) -> ScalePlan:
    """The per-axis factors for an input of voxel size ``spacing_mm`` (z, y, x) in mm.

    ``z_grid``: ``"hr"`` upsamples z as the other axes; ``"lr"`` keeps the LR slices.
    ``keep_factors``: the trained factors whatever the input's voxel size (module notes).

    Raises
    ------
    MicrosrError
        An input at or finer than the HR target on every axis (without ``force``); in-plane
        factors that differ between y and x.
    """
    lr_mm, target, assumed = training_spacing(meta, spacing_mm)
    if assumed:
        log.info(
            "%s: the checkpoint (microsr %s) records no training voxel size; assumed: HR "
            "target %s mm (in-plane voxel / factor %d, as fine along z), training LR voxel %s mm",
            name, meta.microsr_version, _fmt(target), meta.factor, _fmt(lr_mm),
        )  # fmt: skip
    ratios = [s / t for s, t in zip(spacing_mm, target)]
    if keep_factors:
        factors = [meta.slice_factor, meta.factor, meta.factor]
    elif all(r < 1 + SPACING_SCALE_RTOL for r in ratios):
        text = (
            f"{name}: voxel size {_fmt(spacing_mm)} mm (z, y, x) is already at or finer than "
            f"the model's HR target {_fmt(target)} mm (trained on LR voxels {_fmt(lr_mm)} mm); "
            "is this an HR scan? Nothing to super-resolve"
        )
        if not force:
            raise MicrosrError(
                text + " (--keep-factors runs the model with its trained factors on the "
                "input's own grid, a transfer across scales; --force does so here too)"
            )
        log.warning("%s; --force: upsampled by the trained factors", text)
        factors = [meta.slice_factor, meta.factor, meta.factor]
    else:
        factors = [max(1, math.floor(r + 0.5)) for r in ratios]
    if z_grid == "lr":
        factors[0] = 1
    if factors[1] != factors[2]:
        raise MicrosrError(
            f"{name}: in-plane voxel sizes y {spacing_mm[1]:.4g} and x {spacing_mm[2]:.4g} mm "
            f"need different factors ({factors[1]}, {factors[2]}) to reach the HR target "
            f"{_fmt(target)} mm; resample the scan to square pixels first"
        )
    _warn_scale(spacing_mm, lr_mm, name)
    sr = tuple(s / f for s, f in zip(spacing_mm, factors))
    if keep_factors:  # an LR z grid keeps the input's slices: compare in-plane only
        skip = 1 if z_grid == "lr" else 0
        _warn_transfer(sr[skip:], target[skip:], name)
    log.info(
        "%s: LR voxel %s mm -> SR voxel %s mm (factors z, y, x: %s)",
        name, _fmt(spacing_mm), _fmt(sr), tuple(factors),
    )  # fmt: skip
    return ScalePlan(tuple(factors), target, lr_mm, assumed)  # type: ignore[arg-type]


def _warn_scale(spacing_mm, lr_mm, name: str) -> None:
    """Warn when an input voxel is more than ``SPACING_SCALE_RTOL`` off the training LR voxel."""
    off = [
        f"{axis} {s:.4g} vs {t:.4g} mm ({100 * (s - t) / t:+.0f} %)"
        for axis, s, t in zip("zyx", spacing_mm, lr_mm)
        if spacing_off(s, t, SPACING_SCALE_RTOL)
    ]
    if off:
        log.warning(
            "%s: LR voxel size differs from the training LR voxel by more than %d %%: %s; the "
            "model learned structures at another physical scale, check the SR",
            name, round(100 * SPACING_SCALE_RTOL), "; ".join(off),
        )  # fmt: skip


def _warn_transfer(sr_mm, target_mm, name: str) -> None:
    """``keep_factors``: warn when the SR voxel is more than ``SPACING_SCALE_RTOL`` off the
    HR target."""
    if any(spacing_off(s, t, SPACING_SCALE_RTOL) for s, t in zip(sr_mm, target_mm)):
        log.warning(
            "%s: --keep-factors: SR voxel %s mm, but the model was trained for an HR voxel of "
            "%s mm: the physical scale differs from training (a transfer across "
            "scales), check the SR",
            name, _fmt(sr_mm), _fmt(target_mm),
        )  # fmt: skip
