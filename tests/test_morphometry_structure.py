"""Direct 3D morphometry: local thickness (plates, rods), Euler characteristic, Conn.D."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import euler_number

from microsr.morphometry import (
    euler_delta,
    local_thickness,
    mean_local_thickness,
    structure_features,
)


def plate(t: int, n: int = 32) -> np.ndarray:
    """A plate ``t`` voxels thick (along y) through the whole box."""
    v = np.zeros((n, n, n), bool)
    v[:, n // 2 - t // 2 : n // 2 - t // 2 + t, :] = True
    return v


def rod(d: int, n: int = 32) -> np.ndarray:
    """A rod of diameter ``d`` voxels along z, centred on a voxel."""
    _, y, x = np.mgrid[:n, :n, :n]
    return (y - n // 2) ** 2 + (x - n // 2) ** 2 <= (d / 2) ** 2


@pytest.mark.parametrize("t", [1, 2, 3, 4, 5, 8, 11])
def test_plate_thickness_within_one_voxel(t):
    assert abs(mean_local_thickness(plate(t), (1.0, 1.0, 1.0)) - t) <= 1.0


@pytest.mark.parametrize("d", [3, 5, 7, 9, 13])
def test_rod_diameter_within_one_voxel(d):
    assert abs(mean_local_thickness(rod(d), (1.0, 1.0, 1.0)) - d) <= 1.0


def test_thickness_in_mm_with_anisotropic_voxels():
    # 6 voxels of 0.005 mm along y: 0.03 mm, whatever the z/x spacing
    value = mean_local_thickness(plate(6), (0.02, 0.005, 0.01))
    assert value == pytest.approx(0.03, abs=0.005)


def test_local_thickness_map_is_zero_outside_and_undefined_when_full():
    t = local_thickness(plate(4), (1.0, 1.0, 1.0))
    assert (t[~plate(4)] == 0).all() and (t[plate(4)] > 0).all()
    assert np.isnan(mean_local_thickness(np.ones((4, 4, 4), bool), (1.0, 1.0, 1.0)))
    assert np.isnan(mean_local_thickness(np.zeros((4, 4, 4), bool), (1.0, 1.0, 1.0)))


def _torus() -> np.ndarray:
    z, y, x = np.mgrid[:20, :40, :40]
    return (np.hypot(y - 19.5, x - 19.5) - 12) ** 2 + (z - 9.5) ** 2 <= 16


def test_euler_number_of_torus_ball_and_shell():
    torus = _torus()
    assert euler_number(torus, connectivity=3) == 0
    assert euler_delta(torus) == 0.0  # inside the box: no boundary correction
    z, y, x = np.mgrid[:20, :40, :40]
    r2 = (z - 9.5) ** 2 + (y - 19.5) ** 2 + (x - 19.5) ** 2
    assert euler_delta(r2 <= 64) == 1.0
    assert euler_delta((r2 <= 64) & (r2 > 16)) == 2.0  # hollow sphere


def test_boundary_corrected_euler_of_a_cut_lattice():
    # cubic rod lattice, period 10, cut by a 40^3 box: 64 unit cells of chi = 1 - 3 = -2
    g = np.isin(np.arange(40) % 10, (4, 5))
    lattice = (
        (g[:, None, None] & g[None, :, None])
        | (g[:, None, None] & g[None, None, :])
        | (g[None, :, None] & g[None, None, :])
    )
    assert euler_number(lattice, connectivity=3) == -80  # uncorrected: rod ends count
    assert euler_delta(lattice) == -128.0
    f = structure_features(lattice, (0.01, 0.01, 0.01))
    assert f["conn"] == 129.0
    assert f["conn_d_per_mm3"] == pytest.approx(129.0 / 0.4**3)


def test_structure_features_of_plates():
    # plates 3 voxels thick every 10 voxels along x (10 um): Tb.Th ~ 30 um, Tb.Sp ~ 70 um
    # (odd widths measure one voxel more; the box border is no wall)
    bone = np.zeros((9, 20, 40), bool)
    bone[:, :, np.isin(np.arange(40) % 10, (4, 5, 6))] = True
    f = structure_features(bone, (0.01, 0.01, 0.01))
    assert f["tb_th_lt_mm"] == pytest.approx(0.04, abs=1e-6)
    assert f["tb_sp_lt_mm"] == pytest.approx(0.075, abs=0.01)
    assert np.isnan(structure_features(np.zeros((4, 4, 4), bool), (1, 1, 1))["conn"])
