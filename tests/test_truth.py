"""Morphometry against an exact truth mask: evaluate and the manifest's truth_path."""

from __future__ import annotations

import numpy as np
import pytest

from microsr.data.manifest import SpecimenRow, read_manifest, write_manifest
from microsr.errors import InputFileError, MicrosrError
from microsr.evaluation import ScoreConfig, evaluate_files
from microsr.evaluation.run import evaluate_volumes
from microsr.io import write_volume
from microsr.morphometry import MorphometryConfig
from microsr.simulate import AcquisitionConfig, simulate_acquisition
from microsr.volume import Calibration, Volume

SPACING = (0.01, 0.01, 0.01)
CAL = Calibration(1.0, 0.0)


def _plate_pair(shape=(16, 32, 32), lo=5, hi=11):
    mask = np.zeros(shape, bool)
    mask[:, :, lo:hi] = True  # a plate across X, 6 voxels thick, through every slice
    hr = Volume(np.where(mask, 1000.0, 50.0).astype(np.float32), SPACING, calibration=CAL)
    lr = simulate_acquisition(hr, AcquisitionConfig(quick=True, seed=0))
    return mask, hr, lr


def test_hr_equal_to_truth_has_zero_truth_error_and_sr_equal_to_hr_matches_it():
    mask, hr, lr = _plate_pair()
    config = ScoreConfig(morphometry=MorphometryConfig(ta="roi"))
    result = evaluate_volumes(hr, lr, hr, name="plate", truth=mask, config=config)
    slices, feats = result.slices, result.summary["features_3d"]
    assert np.allclose(slices["ba_ta_truth"], slices["ba_ta_hr"])
    assert np.allclose(slices["ba_ta_truth"], 6 / 32)  # TA: the whole field
    assert feats["truth"]["bv_tv"] == pytest.approx(6 / 32)
    assert feats["hr"]["bv_tv_truth_err"] == pytest.approx(0.0, abs=1e-9)
    assert feats["sr"]["bv_tv_truth_err"] == feats["hr"]["bv_tv_truth_err"]
    assert feats["sr"]["tb_th_lt_mm_truth_err"] == pytest.approx(0.0, abs=1e-6)
    assert "bv_tv_truth_err" in feats["lr"] and "bv_tv_err" in feats["lr"]


def test_truth_of_another_shape_is_an_error(tmp_path):
    mask, hr, lr = _plate_pair()
    with pytest.raises(MicrosrError, match="truth mask shape"):
        evaluate_volumes(hr, lr, name="plate", truth=mask[1:])
    paths = [write_volume(v, tmp_path / f"{n}.mha") for n, v in (("hr", hr), ("lr", lr))]
    bad = write_volume(Volume(mask[1:].astype(np.uint8), SPACING), tmp_path / "m.mha")
    with pytest.raises(InputFileError, match="truth mask shape"):
        evaluate_files(*paths, truth=bad)


def test_manifest_keeps_truth_path(tmp_path):
    _, hr, lr = _plate_pair()
    mask = write_volume(Volume(np.ones((2, 2, 2), np.uint8), SPACING), tmp_path / "t.nrrd")
    row = SpecimenRow(
        "a", "spine", write_volume(lr, tmp_path / "lr.mha"), write_volume(hr, tmp_path / "hr.mha"),
        extra={"subject": "d1"}, truth_path=mask,
    )  # fmt: skip
    rows = read_manifest(write_manifest([row], tmp_path / "m.csv"))
    assert rows[0].truth_path == mask and rows[0].extra == {"subject": "d1"}
    (tmp_path / "bad.csv").write_text(
        "specimen,site,lr_path,hr_path,truth_path\na,spine,lr.mha,hr.mha,nothere.nrrd\n"
    )
    with pytest.raises(InputFileError, match="truth_path"):
        read_manifest(tmp_path / "bad.csv")
