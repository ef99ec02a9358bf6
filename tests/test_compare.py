"""``microsr compare``: statistics, scoring and a tiny end-to-end run."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from conftest import make_pair
from pydantic import ValidationError
from scipy import stats  # an outside reference for the paired tests
from typer.testing import CliRunner

from microsr.cli import app
from microsr.compare import Candidate, CompareConfig, run_compare
from microsr.compare.scoring import SLICE_METRICS, SPECIMEN_METRICS
from microsr.compare.table import summary_table
from microsr.data.manifest import SpecimenRow, write_manifest
from microsr.data.prepare import PrepareConfig, prepare_dataset
from microsr.data.splits import Splits, read_splits, write_splits
from microsr.errors import MicrosrError
from microsr.io import write_volume
from microsr.models.factory import ModelConfig
from microsr.stats import mean_ci, paired_comparison


def test_t_interval_matches_the_textbook_value():
    ci = mean_ci(np.array([1.0, 2.0, 3.0]))
    half = 4.302652729911275 * 1 / math.sqrt(3)  # t_{0.975, 2} * s / sqrt(n), s = 1
    assert (ci["mean"], ci["ci_low"], ci["ci_high"]) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    assert math.isnan(mean_ci(np.array([5.0]))["ci_low"])


def test_paired_matches_scipy_and_a_constant_shift():
    """One sign convention everywhere: ``paired_comparison(a, b)`` reports ``b - a``."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=12), rng.normal(size=12)
    got = paired_comparison(b, a)
    assert got["p_t"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert got["p_wilcoxon"] == pytest.approx(stats.wilcoxon(a - b).pvalue)
    assert got["mean_diff"] == pytest.approx(np.mean(a - b))
    shift = paired_comparison(b, b + 0.5)
    triple = (shift["mean_diff"], shift["diff_ci_low"], shift["diff_ci_high"])
    assert triple == pytest.approx((0.5,) * 3)


def _fake_scores():
    rows, specs = [], []
    rng = np.random.default_rng(1)
    for spec in ("a", "b", "c"):
        for k in range(4):
            base = {m: rng.normal() for m in SLICE_METRICS}
            for name, shift in (("bilinear", 0.0), ("unet_bce", 1.0), ("better", 1.5)):
                rows.append({"candidate": name, "specimen": spec, "slice": k,
                             **{m: v + shift for m, v in base.items()}})  # fmt: skip
        base = {m: rng.normal() for m in SPECIMEN_METRICS}
        for name, shift in (("bilinear", 0.0), ("unet_bce", 1.0), ("better", 1.5)):
            specs.append({"candidate": name, "specimen": spec,
                          **{m: v + shift for m, v in base.items()}})  # fmt: skip
    return pd.DataFrame(rows), pd.DataFrame(specs)


def test_summary_table_levels_and_paired_differences():
    table = summary_table(*_fake_scores(), reference="unet_bce").set_index(
        ["level", "candidate", "metric"]
    )
    assert table.loc[("slice", "better", "psnr"), "n"] == 12
    assert table.loc[("specimen", "better", "psnr"), "n"] == 3
    for level in ("slice", "specimen"):
        row = table.loc[(level, "better", "ssim")]
        assert row["diff_ref"] == pytest.approx(0.5) and row["diff_bilinear"] == pytest.approx(1.5)
    # intensity bias and 3D errors exist per specimen only
    assert ("specimen", "better", "tb_th_err") in table.index
    assert ("slice", "better", "tb_th_err") not in table.index


def test_compare_config_checks_names():
    c = Candidate(name="x", model=ModelConfig(width=4, depth=1))
    with pytest.raises(ValidationError, match="unique"):
        CompareConfig(candidates=(c, c), reference="x")
    with pytest.raises(ValidationError, match="reference"):
        CompareConfig(candidates=(c,))


def test_cli_rejects_unknown_candidates(tmp_path):
    result = CliRunner().invoke(app, ["compare", str(tmp_path / "o"), "--candidates", "srgan"])
    assert result.exit_code == 2 and "srgan" in result.output


@pytest.mark.slow
def test_compare_end_to_end_on_tiny_specimens(pair_manifest, tmp_path):
    dataset = prepare_dataset(pair_manifest, tmp_path / "ds", PrepareConfig(roi=24))
    tiny = {"width": 4, "depth": 1}
    config = CompareConfig(
        candidates=(
            Candidate(name="unet_bce", model=ModelConfig(**tiny)),
            Candidate(
                name="res25d",
                model=ModelConfig(name="unet_residual", in_channels=3, **tiny),
                loss="l1_ssim",
                structure_weight=0.5,  # the structure term, threshold from the dataset
            ),
        ),
        minutes=None, epochs=1, patch=16, batch_size=4, device="cpu", tta=True,
    )  # fmt: skip
    other = _other_acquisition(tmp_path)
    result = run_compare(dataset, tmp_path / "cmp", config, also_test=[other])
    assert set(result.slices["candidate"]) == {"bilinear", "unet_bce", "res25d"}
    cross = pd.read_csv(tmp_path / "cmp/cross/ds_other/slices.csv")
    assert set(cross["candidate"]) == {"bilinear", "unet_bce", "res25d"}
    assert set(cross["specimen"]) == set(read_splits(other / "splits.json").test)
    spec = result.specimens.set_index(["candidate", "specimen"])
    assert {"bias_bone", "bias_marrow", "bv_tv_err", "tb_th_err"} <= set(spec.columns)
    assert len(result.slices.query("candidate == 'bilinear'")) == 8  # every HR slice
    assert list(result.runs["epochs"]) == [1, 1]
    saved = json.loads((tmp_path / "cmp" / "runs" / "res25d" / "train_config.json").read_text())
    assert saved["structure_weight"] == 0.5
    assert (tmp_path / "cmp" / "table.md").read_text().count("| res25d |") == 2
    ref = result.table.query("candidate == 'unet_bce' and metric == 'psnr'")
    assert (ref["diff_ref"] == 0).all()


def _other_acquisition(tmp_path):
    """Other bones, acquired with more noise: a dataset to cross-test on."""
    rows = []
    for i in range(4):
        lr, hr = make_pair(10 + i)
        noisy = lr.with_array(lr.array + np.random.default_rng(i).normal(0, 60, lr.shape))
        rows.append(
            SpecimenRow(
                f"o{i}", "femur", write_volume(noisy.with_array(noisy.array.astype(np.float32)),
                tmp_path / f"o{i}_lr.mha"), write_volume(hr, tmp_path / f"o{i}_hr.mha"),
            )
        )  # fmt: skip
    manifest = write_manifest(rows, tmp_path / "other.csv")
    return prepare_dataset(manifest, tmp_path / "ds_other", PrepareConfig(roi=24))


def test_cross_test_refuses_bones_that_were_trained_on(pair_manifest, tmp_path):
    from microsr.compare.run import check_disjoint

    ds = prepare_dataset(pair_manifest, tmp_path / "ds", PrepareConfig(roi=24))
    splits = read_splits(ds / "splits.json")
    swapped = Splits(seed=0, train=splits.test, val=splits.val, test=splits.train)
    write_splits(swapped, tmp_path / "swap.json")
    leak = prepare_dataset(
        pair_manifest, tmp_path / "leak", PrepareConfig(roi=24, split_file=tmp_path / "swap.json")
    )
    with pytest.raises(MicrosrError, match="were trained on"):
        check_disjoint(ds, leak)
    check_disjoint(ds, ds)  # its own test specimens are fine


def test_compare_and_study_give_the_same_ba_ta(pair_manifest, tmp_path):
    """compare (dataset stacks) and study (predicted files) score through one path."""
    from conftest import save_model

    from microsr.compare.scoring import score_candidate
    from microsr.data.manifest import read_manifest
    from microsr.data.prepare import load_dataset_info
    from microsr.evaluation import score_stacks
    from microsr.evaluation.stacks import volume_stacks
    from microsr.inference.checkpoint import load_checkpoint
    from microsr.io import read_volume
    from microsr.morphometry import MorphometryConfig
    from microsr.study import StudyConfig
    from microsr.study.evaluate import predict_specimen, score_config

    ds = prepare_dataset(pair_manifest, tmp_path / "ds", PrepareConfig(roi=400))  # whole slices
    info, splits = load_dataset_info(ds)
    norm = info.normalization
    ckpt = save_model(tmp_path / "m.ckpt", ModelConfig(width=4, depth=1), normalization=norm)
    study = StudyConfig(
        morphometry=MorphometryConfig(threshold="otsu"), features_3d=False, device="cpu"
    )
    config = score_config(study, info.normalization)
    sid = splits["test"][0]
    by_compare, _ = score_candidate(
        ds, info, [sid], load_checkpoint(ckpt, device="cpu"), name="m", config=config
    )
    row = next(r for r in read_manifest(pair_manifest) if r.specimen == sid)
    sr = predict_specimen(ckpt, row, tmp_path / "sr.mha", study)  # the options study uses
    vols = [read_volume(p) for p in (row.hr_path, row.lr_path, sr)]
    by_study = score_stacks(volume_stacks(*vols, name=sid), config).slices
    expected = (by_study["ba_ta_sr"] - by_study["ba_ta_hr"]).abs()
    np.testing.assert_allclose(by_compare["ba_ta_abserr"], expected, atol=1e-8)
    np.testing.assert_allclose(by_compare["psnr"], by_study["psnr_sr"], rtol=1e-4)
