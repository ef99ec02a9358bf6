"""Subject-level K-fold cross-validation: the folds, and a tiny CV study end to end."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from microsr.data.manifest import SpecimenRow, write_manifest
from microsr.data.prepare import PrepareConfig
from microsr.data.splits import Splits, make_folds, read_folds, read_splits
from microsr.errors import MicrosrError
from microsr.io import write_volume
from microsr.models.factory import ModelConfig
from microsr.simulate import AcquisitionConfig, make_phantom, simulate_acquisition
from microsr.study import StudyConfig, run_study
from microsr.training.config import TrainConfig

# 7 regions of 5 donors, as the DIDSR data: two donors give two regions each
SUBJECTS = {"r1": "A", "r5": "A", "r2": "B", "r8": "B", "r4": "C", "r9": "D", "r7": "E"}


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_folds_never_share_a_subject_and_test_each_once(k, seed):
    folds = make_folds(SUBJECTS, k=k, seed=seed)
    assert len(folds) == k
    tested = []
    for fold in folds:
        owners = {key: {SUBJECTS[s] for s in fold[key]} for key in ("train", "val", "test")}
        assert not owners["train"] & owners["val"]
        assert not owners["train"] & owners["test"]
        assert not owners["val"] & owners["test"]
        assert owners["train"] and owners["val"] and owners["test"]
        assert set().union(*fold_ids(fold)) == set(SUBJECTS)  # every specimen in one split
        tested += sorted(owners["test"])
    assert sorted(tested) == sorted(set(SUBJECTS.values()))  # each subject tested once


def fold_ids(fold: Splits) -> list[set]:
    return [set(fold[key]) for key in ("train", "val", "test")]


def test_folds_are_seeded():
    """The same seed gives the same folds, and the seed is used: four seeds give four
    different assignments of subjects to train / val / test (and each is recorded)."""

    def assignment(seed: int) -> str:
        folds = make_folds(SUBJECTS, k=5, seed=seed)
        assert {fold.seed for fold in folds} == {seed}
        return json.dumps([fold_ids(fold) for fold in folds], default=sorted)

    assert make_folds(SUBJECTS, k=5, seed=3) == make_folds(SUBJECTS, k=5, seed=3)
    assert len({assignment(seed) for seed in range(4)}) == 4


def test_more_folds_than_subjects_is_one_clear_error():
    with pytest.raises(MicrosrError, match="more than the 5 subjects"):
        make_folds(SUBJECTS, k=6, seed=0)
    with pytest.raises(MicrosrError, match="2 folds or more"):
        make_folds(SUBJECTS, k=1, seed=0)
    with pytest.raises(MicrosrError, match="fewer than 2 training subjects"):
        make_folds({"a": "A", "b": "B"}, k=2, seed=0)


def _manifest(tmp: Path) -> Path:
    """Four subjects, one of them with two regions: 5 tiny phantoms at 10 um, quick LR."""
    rows = []
    for i, subject in enumerate(["A", "A", "B", "C", "D"]):
        sid = f"s{i}"
        hr, mask = make_phantom(
            (8, 40, 40), spacing_mm=0.01, site="spine", seed=i, return_mask=True
        )
        lr = simulate_acquisition(hr, AcquisitionConfig(quick=True, seed=i))
        lr_path = write_volume(lr, tmp / f"{sid}_lr.mha")
        hr_path = write_volume(hr, tmp / f"{sid}_hr.mha")
        truth = write_volume(replace(hr, array=mask.astype(np.uint8)), tmp / f"{sid}_m.nrrd")
        rows.append(
            SpecimenRow(
                sid, "spine", lr_path, hr_path, extra={"subject": subject}, truth_path=truth
            )
        )
    return write_manifest(rows, tmp / "manifest.csv")


@pytest.mark.slow
def test_tiny_cross_validated_study(tmp_path):
    config = StudyConfig(
        prepare=PrepareConfig(roi=32),
        train=TrainConfig(
            model=ModelConfig(width=4, depth=1), epochs=1, patch=16, batch_size=4, seed=0
        ),
        features_3d=False,
        device="cpu",
        folds=2,
    )
    out = tmp_path / "cv"
    summary = run_study(_manifest(tmp_path), out, config, progress=False)
    assert summary["subjects"] == ["A", "B", "C", "D"]
    folds = read_folds(out / "folds.json")
    for fold in folds:  # each fold's sub-study used its own split
        used = read_splits(out / f"fold_{fold.fold}" / "dataset" / "splits.json")
        assert used.test == fold.test and used.fold == fold.fold
    slices = pd.read_csv(out / "stats" / "slices.csv", dtype={"specimen": str})
    assert sorted(slices["specimen"].unique()) == ["s0", "s1", "s2", "s3", "s4"]
    assert slices.groupby("specimen")["fold"].nunique().eq(1).all()  # tested once
    subjects = pd.read_csv(out / "stats" / "cv_subjects.csv", dtype={"subject": str})
    assert sorted(subjects["subject"]) == ["A", "B", "C", "D"]
    assert {"psnr_gain", "psnr_gain_ci_low", "ssim_gain_ci_high"} <= set(subjects.columns)
    per_fold = pd.read_csv(out / "stats" / "cv_folds.csv")
    assert sorted(per_fold["fold"]) == [1, 2]
    assert (per_fold["wall_s"] > 0).all()  # each fold's wall time
    pooled = pd.read_csv(out / "stats" / "cv_pooled.csv")
    assert pooled.set_index("metric").loc["psnr_gain", "n_subjects"] == 4
    page = (out / "report" / "index.html").read_text()
    assert "cv_pooled" in page and "cv_folds" in page and "cv_subjects" in page
    # the truth mask: LR, SR and grey HR BA/TA scored against it, per subject
    truth = pd.read_csv(out / "stats" / "cv_truth.csv", dtype={"subject": str})
    assert sorted(truth["subject"]) == ["A", "B", "C", "D"]
    assert set(truth["metric"]) == {"ba_ta"}  # no 3D features in this config
    assert (truth[["abserr_lr", "abserr_sr", "abserr_hr"]] >= 0).all().all()
    assert "truth_abserr_ba_ta_sr" in set(pooled["metric"])


def test_a_study_from_before_folds_resumes(tmp_path):
    from microsr.study.config import StudyLayout
    from microsr.study.single import start_study

    layout, config = StudyLayout(tmp_path / "st"), StudyConfig()
    manifest = tmp_path / "m.csv"
    start_study(layout, manifest, config)
    record = json.loads(layout.study_json.read_text())
    del record["config"]["folds"]  # as written by microsr before --folds
    layout.study_json.write_text(json.dumps(record))
    start_study(layout, manifest, config)  # same config: resumes
    with pytest.raises(MicrosrError, match="another config"):
        start_study(layout, manifest, config.model_copy(update={"folds": 3}))
