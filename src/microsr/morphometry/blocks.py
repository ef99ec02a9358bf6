"""3D blocks of a ``(Z, Y, X)`` volume, with a halo: the tiling of block-wise morphometry.

A *block* is a core box of the volume (the blocks tile it exactly, no overlap) and an
*extended* box: the core grown by a halo (voxels per axis), clipped to the volume. A
block-wise measure computes on the extended box and keeps the core's part, so memory is
bounded by the extended block, not the volume.

Masks are read through a :data:`BlockReader`, ``read(box) -> (z, y, x) bool``, so a mask
that is computed from others (marrow = TA and not bone) or lives on disk is never built
whole: :func:`array_reader` reads a numpy (or lazily indexed) array.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

Box = tuple[slice, slice, slice]
#: ``read(box) -> (z, y, x) bool`` for a box of three slices (start and stop given).
BlockReader = Callable[[Box], np.ndarray]

#: Default core edge (voxels): a 128^3 block's work arrays of local thickness take about
#: 170 MB for sphere radii up to 15 voxels, 300 MB up to 30 (the halo grows with them).
DEFAULT_BLOCK = 128


@dataclass(frozen=True)
class Block:
    """One core box and its extended box (both in volume coordinates).

    Attributes
    ----------
    core, extended
        Boxes of three slices, ``extended`` containing ``core``.
    """

    core: Box
    extended: Box

    @property
    def inner(self) -> Box:
        """The core's box in the extended box's coordinates."""
        return tuple(
            slice(c.start - e.start, c.stop - e.start) for c, e in zip(self.core, self.extended)
        )  # type: ignore[return-value]

    @property
    def size(self) -> int:
        """Voxels in the core."""
        return math.prod(s.stop - s.start for s in self.core)


def grow(box: Box, halo: tuple[int, int, int], shape: tuple[int, ...]) -> Box:
    """``box`` grown by ``halo`` voxels per axis on each side, clipped to ``shape``."""
    return tuple(
        slice(max(0, s.start - h), min(n, s.stop + h)) for s, h, n in zip(box, halo, shape)
    )  # type: ignore[return-value]


def blocks(
    shape: tuple[int, int, int], block: int | tuple[int, int, int], halo: tuple[int, int, int]
) -> Iterator[Block]:
    """The blocks tiling ``shape`` with core edges ``block`` (voxels), each with ``halo``."""
    edges = (block,) * 3 if isinstance(block, int) else tuple(block)
    starts = [range(0, n, max(1, int(b))) for n, b in zip(shape, edges)]
    for z in starts[0]:
        for y in starts[1]:
            for x in starts[2]:
                core = tuple(
                    slice(a, min(a + max(1, int(b)), n)) for a, b, n in zip((z, y, x), edges, shape)
                )
                yield Block(core, grow(core, halo, shape))  # type: ignore[arg-type]


def n_blocks(shape: tuple[int, int, int], block: int | tuple[int, int, int]) -> int:
    """How many blocks :func:`blocks` yields."""
    edges = (block,) * 3 if isinstance(block, int) else tuple(block)
    return math.prod(-(-n // max(1, int(b))) for n, b in zip(shape, edges))


def array_reader(array) -> BlockReader:
    """A :data:`BlockReader` of a ``(Z, Y, X)`` array (anything indexable by three slices)."""

    def read(box: Box) -> np.ndarray:
        return np.asarray(array[box]) != 0

    return read


def halo_vox(distance_mm: float, spacing_mm: tuple[float, float, float]) -> tuple[int, int, int]:
    """Voxels per axis that cover ``distance_mm`` (a Euclidean distance), plus one."""
    return tuple(math.ceil(distance_mm / s - 1e-9) + 1 for s in spacing_mm)  # type: ignore[return-value]
