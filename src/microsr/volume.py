"""The :class:`Volume` type: a (Z, Y, X) array with its geometry and density calibration."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass(frozen=True)
class Calibration:
    """Linear density calibration: ``density = slope * value + intercept``.

    Parameters
    ----------
    slope, intercept
        Map stored grey values to ``units``.
    units
        Units of the calibrated density, e.g. ``"mg HA/cm3"``.
    mu_scaling, mu_water
        Scanco header fields (kept for round trips; ``None`` elsewhere).
    """

    slope: float
    intercept: float
    units: str = "mg HA/cm3"
    mu_scaling: float | None = None
    mu_water: float | None = None

    @property
    def is_density(self) -> bool:
        """The one "calibrated" rule: stored values map to a density (``mg`` in the units)."""
        return self.slope != 0 and "mg" in self.units.lower()

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Grey values -> calibrated density (float32)."""
        return (self.slope * np.asarray(values, dtype=np.float64) + self.intercept).astype(
            np.float32
        )

    def invert(self, density: np.ndarray) -> np.ndarray:
        """Calibrated density -> grey values (float32)."""
        return ((np.asarray(density, dtype=np.float64) - self.intercept) / self.slope).astype(
            np.float32
        )


def is_density(calibration: Calibration | dict | None) -> bool:
    """Whether ``calibration`` (a :class:`Calibration`, its ``asdict`` record, or ``None``)
    maps stored values to a density: :attr:`Calibration.is_density`; ``None`` is not."""
    if isinstance(calibration, dict):
        calibration = Calibration(**calibration) if calibration else None
    return calibration is not None and calibration.is_density


@dataclass(frozen=True)
class Volume:
    """A 3D image with its geometry.

    Parameters
    ----------
    array
        Voxel values, shape ``(Z, Y, X)``. May be a ``numpy.memmap``.
    spacing_mm
        Voxel size ``(z, y, x)`` in millimetres.
    origin_mm
        Physical position ``(z, y, x)`` of the centre of voxel ``(0, 0, 0)``, in mm.
    calibration
        Optional density calibration of the grey values.
    """

    array: np.ndarray
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    calibration: Calibration | None = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"Volume array must be 3D (Z, Y, X), got shape {self.array.shape}")
        spacing = tuple(float(s) for s in self.spacing_mm)
        if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise ValueError(f"spacing_mm must be three positive numbers, got {self.spacing_mm}")
        origin = tuple(float(o) for o in self.origin_mm)
        if len(origin) != 3:
            raise ValueError(f"origin_mm must be three numbers, got {self.origin_mm}")
        object.__setattr__(self, "spacing_mm", spacing)
        object.__setattr__(self, "origin_mm", origin)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(Z, Y, X)``."""
        return tuple(int(n) for n in self.array.shape)  # type: ignore[return-value]

    @property
    def extent_mm(self) -> tuple[float, float, float]:
        """Physical size ``(z, y, x)`` in mm: number of voxels times spacing."""
        return tuple(n * s for n, s in zip(self.shape, self.spacing_mm))  # type: ignore[return-value]

    def with_array(self, array: np.ndarray, **changes) -> Volume:
        """A copy with another array (and optionally other fields)."""
        return replace(self, array=array, **changes)


def strided_sample(array, *, max_voxels: int, dtype: type = np.float32) -> np.ndarray:
    """Every ``step``-th voxel of ``array`` in C order, ``step = ceil(size / max_voxels)``
    (so at most ``max_voxels``), as ``dtype``: the one voxel sample of the package.

    Gathered slab by slab along the first axis (``array.slab`` slices at a time when the
    array has one, else 32), so a lazily read ``(Z, Y, X)`` volume is never held whole.
    """
    shape = tuple(array.shape)
    size = int(np.prod(shape, dtype=np.int64))
    step = max(1, -(-size // max_voxels))
    if len(shape) < 2:
        return np.asarray(np.asarray(array).reshape(-1)[::step], dtype=dtype)
    per_slice = size // shape[0] if shape[0] else 0
    slab = int(getattr(array, "slab", None) or 32)
    parts = []
    for z in range(0, shape[0], slab):
        flat = np.asarray(array[z : z + slab]).reshape(-1)
        first = -z * per_slice % step  # the first multiple of step at or after this slab
        parts.append(np.asarray(flat[first::step], dtype=dtype))
    return np.concatenate(parts) if parts else np.empty(0, dtype)
