"""Our Tb.Th / Tb.Sp against other local-thickness implementations (issue: morphometry
conventions): on ideal plates 4, 6 and 10 voxels thick and on the DIDSR vertebral masks'
central 96^3 (51.3 um voxels, the producers' size; ``--data``), over the whole cube and in
its interior (``--margin`` voxels from every face left out of the mean).

Compared, each only when installed (neither is a microsr dependency; install them into a
throwaway folder, e.g. ``pip install --no-deps --target /tmp/x bone-microarchitecture
bone-imaging-derivatives localthickness`` and ``PYTHONPATH=/tmp/x``):

* ``bone-microarchitecture`` (ORMIR community, MIT): ``hildebrand_thickness_map`` on bone
  and on marrow (maximal spheres on a ridge, image faces padded as background);
* ``localthickness`` (Dahl & Dahl 2023, "Fast local thickness", GPL-3.0): 2 x its output
  (it returns radii), isotropic voxels only.

Usage: python bench/thickness_conventions.py [--data ../shared/data/didsr_vertebra_rois]
       [--side 96] [--margin 10]
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import numpy as np

from microsr.io import read_volume
from microsr.morphometry import local_thickness

SPACING = 0.0513  # mm, the DIDSR producers' voxel size


def plates(t: int, side: int = 96, period: int = 24) -> np.ndarray:
    """Plates ``t`` voxels thick along y, one every ``period`` voxels."""
    bone = np.zeros((side, side, side), bool)
    y = np.arange(side) % period
    bone[:, (y >= 4) & (y < 4 + t), :] = True
    return bone


def methods() -> dict:
    """name -> ``fn(mask, spacing) -> (Z, Y, X) thickness map in mm`` for what is installed."""
    out = {"microsr": local_thickness}
    if importlib.util.find_spec("bone_microarchitecture"):
        from bone_microarchitecture.thickness import hildebrand_thickness_map

        out["bone-microarchitecture"] = lambda m, s: hildebrand_thickness_map(m, s, backend="cpu")
    if importlib.util.find_spec("localthickness"):
        import localthickness

        out["localthickness"] = lambda m, s: 2.0 * s[0] * localthickness.local_thickness(m)
    return out


def means(mask: np.ndarray, thickness: np.ndarray, margin: int) -> tuple[float, float]:
    """Mean thickness (voxels) over the whole cube and over its interior."""
    inner = tuple(slice(margin, n - margin) for n in mask.shape)
    return (
        float(thickness[mask].mean()) / SPACING,
        float(thickness[inner][mask[inner]].mean()) / SPACING,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "didsr_vertebra_rois"
    ap.add_argument("--data", type=Path, default=default)
    ap.add_argument("--side", type=int, default=96)
    ap.add_argument("--margin", type=int, default=10)
    a = ap.parse_args()
    fns = methods()
    print(f"methods: {', '.join(fns)}; voxels {SPACING * 1000:.1f} um; thickness in voxels")
    cases = [(f"plate {t}", plates(t, a.side)) for t in (4, 6, 10)]
    for path in sorted(a.data.glob("*.nrrd")) if a.data.is_dir() else []:
        v = read_volume(path, spacing_mm=SPACING).array != 0
        lo = [(n - a.side) // 2 for n in v.shape]
        cases.append((path.stem, v[tuple(slice(s, s + a.side) for s in lo)]))
    head = f"{'case':14s}{'phase':8s}" + "".join(f"{n[:22]:>24s}" for n in fns)
    print(head + "\n" + "-" * len(head) + "\n(each cell: whole cube / interior)")
    for name, bone in cases:
        for phase, mask in (("Tb.Th", bone), ("Tb.Sp", ~bone)):
            cells = []
            for fn in fns.values():
                t0 = time.perf_counter()
                whole, inner = means(mask, np.asarray(fn(mask, (SPACING,) * 3)), a.margin)
                cells.append(f"{whole:8.2f} / {inner:6.2f} ({time.perf_counter() - t0:4.0f}s)")
            print(f"{name:14s}{phase:8s}" + "".join(f"{c:>24s}" for c in cells))


if __name__ == "__main__":
    main()
