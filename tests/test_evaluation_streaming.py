"""``evaluate`` reads its files slab by slab and reports progress on every pass."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import make_pair

from microsr.evaluation import ScoreConfig, evaluate_files, evaluate_volumes
from microsr.io import read_volume, write_volume
from microsr.io.lazy import LazySlices, open_volume
from microsr.morphometry import MorphometryConfig

OTSU = ScoreConfig(morphometry=MorphometryConfig(threshold="otsu", ta="roi"))


@pytest.mark.parametrize("suffix", [".mha", ".tif", ".nii"])
def test_streamable_files_open_lazily_for_evaluate_only(tmp_path, suffix):
    _, hr = make_pair(3, shape=(9, 34, 30))
    path = write_volume(hr, tmp_path / f"hr{suffix}")
    spacing = hr.spacing_mm if suffix == ".tif" else None  # TIFF stores no spacing
    lazy = open_volume(path, spacing_mm=spacing, any_format=True)
    assert isinstance(lazy.array, LazySlices)
    np.testing.assert_array_equal(lazy.array[2:5], read_volume(path, spacing_mm=spacing).array[2:5])
    assert not isinstance(open_volume(path, spacing_mm=spacing).array, LazySlices)
    gz = write_volume(hr, tmp_path / "hr.nii.gz")  # not streamable: read whole, once
    assert isinstance(open_volume(gz, any_format=True).array, np.ndarray)


def test_files_score_as_the_volumes_read_whole(tmp_path):
    lr, hr = make_pair(3, shape=(9, 34, 30))
    paths = [write_volume(v, tmp_path / f"{k}.mha") for k, v in (("hr", hr), ("lr", lr))]
    (got,) = evaluate_files(*paths, config=OTSU, default_threshold=False)
    want = evaluate_volumes(*(read_volume(p) for p in paths), name="lr", config=OTSU)
    np.testing.assert_array_equal(got.slices.to_numpy(), want.slices.to_numpy())
    assert got.summary["features_3d"] == want.summary["features_3d"]


def test_every_pass_reports_progress_in_a_log(caplog, monkeypatch):
    monkeypatch.setenv("MICROSR_PROGRESS", "log")
    lr, hr = make_pair(4, shape=(8, 34, 30))
    with caplog.at_level(logging.INFO, logger="microsr.progress"):
        evaluate_volumes(hr, lr, hr, name="s4", config=OTSU)
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == "microsr.progress")
    for step in ("HR window", "HR bone, TA", "PSNR, SSIM, BA/TA"):
        assert f"s4: {step}: 8/8 slice (100%)" in text, text
    for image in ("LR", "SR", "HR"):
        assert f"s4 {image}: 3D features: " in text, text
