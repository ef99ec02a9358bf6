"""Voxel-size tolerances: the package's one set. Every comparison of two spacings (mm, per
axis, relative to the second) names one of these, so "the same voxel", "an integer ratio"
and "another scale" mean one thing everywhere. Spacing text is parsed by
:func:`microsr.io.files.parse_spacing`."""

from __future__ import annotations

# Relative voxel-size tolerances: the package's one set (every spacing comparison names one).
#: The same voxel size: a file's stored spacing against the given one, a format's rounding.
SPACING_SAME_RTOL = 1e-6
#: An integer voxel ratio (LR / HR factors; SR and HR in-plane voxels of one grid): 1 %.
SPACING_RATIO_RTOL = 0.01
#: Another physical scale: voxel sizes more than 10 % apart (specimens of one dataset, an
#: input against a model's training voxel, a fit's reference against its scan).
SPACING_SCALE_RTOL = 0.10


def spacing_off(a: float, b: float, rtol: float) -> bool:
    """Whether voxel size ``a`` is more than ``rtol`` (relative to ``b``) away from ``b``."""
    return abs(a - b) > rtol * abs(b)
