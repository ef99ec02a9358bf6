"""Does a figure show all of its data? Every plotted point inside its axes' limits.

Each line's vertices, each scatter point, each patch's (bar, shaded band) and each
collection's (error bars, filled areas, colour meshes) vertices, and each image's extent
are mapped through their own transform to the axes' data coordinates and compared with
``ax.get_xlim()`` / ``ax.get_ylim()``. Text is not checked.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import Collection, PathCollection
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

REL_TOL = 1e-6  # of the axis span


def _vertices(artist) -> tuple[np.ndarray, object] | None:
    """``((k, 2) points, transform to display)`` of one artist, or None if not checked."""
    if isinstance(artist, Line2D):
        return np.asarray(artist.get_xydata(), float), artist.get_transform()
    if isinstance(artist, PathCollection):  # scatter: the offsets are the points
        return np.asarray(artist.get_offsets(), float), artist.get_offset_transform()
    if isinstance(artist, Collection):
        paths = artist.get_paths()
        verts = [p.vertices for p in paths if len(p.vertices)]
        return (np.concatenate(verts) if verts else np.empty((0, 2))), artist.get_transform()
    if isinstance(artist, Patch):
        return np.asarray(artist.get_path().vertices, float), artist.get_transform()
    return None


def _inside(ax: Axes, data: np.ndarray) -> bool:
    data = data[np.isfinite(data).all(axis=1)]
    if not len(data):
        return True
    for values, lim in ((data[:, 0], ax.get_xlim()), (data[:, 1], ax.get_ylim())):
        lo, hi = min(lim), max(lim)
        tol = REL_TOL * max(hi - lo, 1e-300)
        if values.min() < lo - tol or values.max() > hi + tol:
            return False
    return True


def _image(ax: Axes, image: AxesImage) -> bool:
    x0, x1, y0, y1 = image.get_extent()
    return _inside(ax, np.array([[x0, y0], [x1, y1]], float))


def outside_axes(fig: Figure) -> list[str]:
    """What of ``fig`` lies outside its axes' limits: one line per artist, empty if nothing.

    Returns
    -------
    list of str
        ``"axes <i> (<title>): <artist>"`` for each offending artist.
    """
    found = []
    for i, ax in enumerate(fig.axes):
        artists = [*ax.lines, *ax.collections, *ax.patches]
        where = f"axes {i} ({ax.get_title() or ax.get_label() or 'untitled'})"
        for image in ax.images:
            if not _image(ax, image):
                found.append(f"{where}: image extent {image.get_extent()}")
        for artist in artists:
            got = _vertices(artist)
            if got is None:
                continue
            points, transform = got
            if not len(points):
                continue
            data = ax.transData.inverted().transform(transform.transform(points))
            if not _inside(ax, data):
                found.append(f"{where}: {artist}")
    return found
