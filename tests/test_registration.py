"""Rigid LR -> HR registration: a known shift and rotation is recovered; prepare's check."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from microsr.data.manifest import SpecimenRow, write_manifest
from microsr.data.prepare import PrepareConfig, prepare_dataset
from microsr.errors import MicrosrError
from microsr.io import write_volume
from microsr.pairing.geometry import check_pair
from microsr.pairing.registration import (
    RegistrationConfig,
    align_lr,
    check_orientation,
    quick_misalignment,
    register_pair,
    resample_to_hr,
    to_sitk,
)
from microsr.simulate import make_phantom
from microsr.volume import Volume

SP = 0.01  # HR voxel, mm
SHIFT = np.array([0.7, -1.3, 2.1])  # (z, y, x), HR voxels
ANGLE = 2.0  # degrees about z


def block_average(arr: np.ndarray, f: int = 2) -> np.ndarray:
    z, y, x = (n // f for n in arr.shape)
    return arr[: z * f, : y * f, : x * f].reshape(z, f, y, f, x, f).mean(axis=(1, 3, 5))


def moved_pair(shift=SHIFT, angle=ANGLE, seed=1) -> tuple[Volume, Volume, sitk.Transform]:
    """HR phantom (24, 48, 48) and an LR (f = 2) of it moved by K: LR(p) ~ HR(K(p))."""
    hr = make_phantom((24, 48, 48), spacing_mm=SP, seed=seed)
    k = sitk.Euler3DTransform()
    k.SetCenter(tuple((np.asarray(hr.shape[::-1]) - 1) / 2 * SP))
    k.SetRotation(0.0, 0.0, np.deg2rad(angle))
    k.SetTranslation(tuple(np.asarray(shift)[::-1] * SP))
    image = to_sitk(hr)
    moved = sitk.GetArrayFromImage(sitk.Resample(image, image, k, sitk.sitkLinear, 0.0))
    lr = Volume(block_average(moved).astype(np.float32), (2 * SP,) * 3, (SP / 2,) * 3)
    return lr, hr, k


def max_point_error_voxels(result, k, hr: Volume) -> float:
    """max |K(T(p)) - p| over the HR box corners and centre, in HR voxels (0 if exact)."""
    t = result.transform()
    corners = [(x, y, z) for x in (0, 47) for y in (0, 47) for z in (0, 23)] + [(24, 24, 12)]
    errors = [
        np.linalg.norm(
            np.subtract(
                k.TransformPoint(t.TransformPoint(tuple(np.multiply(p, SP)))), np.multiply(p, SP)
            )
        )
        for p in corners
    ]
    return max(errors) / SP


def test_known_shift_and_rotation_recovered_within_a_quarter_voxel():
    lr, hr, k = moved_pair()
    result = register_pair(lr, hr)
    # T = K^-1: the LR content is displaced by -SHIFT (before rotation) and -ANGLE about z
    assert max_point_error_voxels(result, k, hr) < 0.35  # measured 0.27 HR voxels (z)
    assert result.rotation_deg[0] == pytest.approx(-ANGLE, abs=0.1)
    np.testing.assert_allclose(result.translation_hr_voxels[1:], -SHIFT[1:], atol=0.15)
    assert result.translation_um[2] == pytest.approx(result.translation_mm[2] * 1000, abs=1e-3)
    assert result.ncc_after > result.ncc_before + 0.2 and result.ncc_after > 0.9


@pytest.mark.slow
def test_mattes_mutual_information_also_recovers_it():
    lr, hr, k = moved_pair()
    result = register_pair(lr, hr, RegistrationConfig(metric="mattes"))
    assert max_point_error_voxels(result, k, hr) < 0.5  # measured 0.38 HR voxels


def test_aligned_lr_passes_the_quick_check_and_resamples_onto_hr():
    lr, hr, _ = moved_pair()
    geo = check_pair(lr, hr, name="s")
    before = quick_misalignment(lr, hr, factor=2, hr_index=geo.hr_index)
    np.testing.assert_allclose(before["shift_hr_voxels"], -SHIFT[1:], atol=0.5)
    result = register_pair(lr, hr)
    aligned = align_lr(lr, hr, result)
    assert aligned.shape == lr.shape and aligned.origin_mm == lr.origin_mm
    after = quick_misalignment(aligned, hr, factor=2, hr_index=geo.hr_index)
    assert max(abs(s) for s in after["shift_hr_voxels"]) < 0.5
    assert after["ncc_zero"] > before["ncc_zero"]
    on_hr = resample_to_hr(lr, hr, result)
    assert on_hr.shape == hr.shape and on_hr.spacing_mm == hr.spacing_mm


def test_quick_check_of_an_aligned_pair_is_zero():
    lr, hr, _ = moved_pair(shift=(0, 0, 0), angle=0.0)
    geo = check_pair(lr, hr, name="s")
    quick = quick_misalignment(lr, hr, factor=2, hr_index=geo.hr_index)
    assert quick["shift_hr_voxels"] == pytest.approx([0.0, 0.0], abs=0.15)
    assert quick["ncc_best"] == quick["ncc_zero"]


def test_different_orientation_is_an_error():
    lr, hr, _ = moved_pair(shift=(0, 0, 0), angle=0.0)
    flipped = lr.with_array(lr.array, metadata={"direction": (-1, 0, 0, 0, 1, 0, 0, 0, 1)})
    check_orientation(lr, hr)
    with pytest.raises(MicrosrError, match="different orientations"):
        check_orientation(flipped, hr, name="spec")
    with pytest.raises(MicrosrError, match="spec"):
        register_pair(flipped, hr, name="spec")


def test_prepare_refuses_a_shifted_pair_unless_registration_is_on(tmp_path):
    lr, hr, _ = moved_pair(shift=(0.0, 4.0, -3.0), angle=0.0)
    paths = write_volume(lr, tmp_path / "lr.mha"), write_volume(hr, tmp_path / "hr.mha")
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"train": ["moved"], "val": [], "test": []}))
    manifest = write_manifest([SpecimenRow("moved", "femur", *paths)], tmp_path / "m.csv")
    cfg = PrepareConfig(roi=32, split_file=splits)
    with pytest.raises(MicrosrError, match=r"moved: LR content is shifted.*--register"):
        prepare_dataset(manifest, tmp_path / "ds", cfg, progress=False)
    assert not (tmp_path / "ds").exists()
    out = prepare_dataset(
        manifest, tmp_path / "ds", cfg.model_copy(update={"register_lr": True}), progress=False
    )
    record = json.loads((out / "dataset.json").read_text())["specimens"]["moved"]["alignment"]
    assert record["registered"] is True
    np.testing.assert_allclose(
        record["registration"]["translation_hr_voxels"][1:], [-4, 3], atol=0.3
    )
    assert max(abs(s) for s in record["residual"]["shift_lr_voxels"]) < 0.25
