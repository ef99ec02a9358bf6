"""``microsr compare``: statistics, scoring and a tiny end-to-end run."""

import math

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from scipy import stats  # an outside reference for the paired tests
from typer.testing import CliRunner

from microsr.cli import app
from microsr.compare import Candidate, CompareConfig, run_compare
from microsr.compare.scoring import METRICS, score_images
from microsr.compare.table import paired, summary_table, t_interval
from microsr.data.prepare import PrepareConfig, prepare_dataset
from microsr.models.factory import ModelConfig
from microsr.morphometry import MorphometryConfig


def test_t_interval_matches_the_textbook_value():
    mean, low, high = t_interval(np.array([1.0, 2.0, 3.0]))
    half = 4.302652729911275 * 1 / math.sqrt(3)  # t_{0.975, 2} * s / sqrt(n), s = 1
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    assert math.isnan(t_interval(np.array([5.0]))[1])


def test_paired_matches_scipy_and_a_constant_shift():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=12), rng.normal(size=12)
    got = paired(a, b)
    assert got["p_t"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert got["p_wilcoxon"] == pytest.approx(stats.wilcoxon(a - b).pvalue)
    assert got["diff"] == pytest.approx(np.mean(a - b))
    shift = paired(b + 0.5, b)
    assert (shift["diff"], shift["diff_low"], shift["diff_high"]) == pytest.approx((0.5,) * 3)


def test_score_images_analytic():
    hr = np.zeros((2, 16, 16), np.float32)
    hr[:, 4:12, 4:12] = 0.8  # bone: 64 of 256 pixels
    sharp = MorphometryConfig(threshold="otsu", threshold_value=None, ta="roi", sigma_vox=0)
    perfect = score_images(hr, hr, morphometry=sharp)
    assert np.all(np.isinf(perfect["psnr"])) and perfect["ssim"] == pytest.approx([1, 1])
    assert perfect["mae_bone"] == pytest.approx([0, 0]) and perfect["baf_err"] == pytest.approx(0)
    darker = hr.copy()
    darker[:, 4:12, 4:12] = 0.7  # 0.1 darker bone, still above the Otsu level
    darker[:, 0, :16] = 0.8  # 16 extra bone pixels: BA/TA 64/256 -> 80/256
    got = score_images(darker, hr, morphometry=sharp)
    assert got["mae_bone"] == pytest.approx([0.1, 0.1], abs=1e-6)
    assert got["baf_err"] == pytest.approx([100 * 16 / 256] * 2)


def _fake_slices():
    rows = []
    rng = np.random.default_rng(1)
    for spec in ("a", "b", "c"):
        for k in range(4):
            base = {m: rng.normal() for m in METRICS}
            for name, shift in (("bilinear", 0.0), ("unet_bce", 1.0), ("better", 1.5)):
                rows.append({"candidate": name, "specimen": spec, "slice": k,
                             **{m: v + shift for m, v in base.items()}})  # fmt: skip
    return pd.DataFrame(rows)


def test_summary_table_levels_and_paired_differences():
    table = summary_table(_fake_slices(), reference="unet_bce").set_index(
        ["level", "candidate", "metric"]
    )
    assert table.loc[("slice", "better", "psnr"), "n"] == 12
    assert table.loc[("specimen", "better", "psnr"), "n"] == 3
    for level in ("slice", "specimen"):
        row = table.loc[(level, "better", "ssim")]
        assert row["diff_ref"] == pytest.approx(0.5) and row["diff_bilinear"] == pytest.approx(1.5)


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
            ),
        ),
        minutes=None, epochs=1, patch=16, batch_size=4, device="cpu", tta=True,
    )  # fmt: skip
    result = run_compare(dataset, tmp_path / "cmp", config)
    assert set(result.slices["candidate"]) == {"bilinear", "unet_bce", "res25d"}
    assert list(result.runs["epochs"]) == [1, 1]
    assert (tmp_path / "cmp" / "table.md").read_text().count("| res25d |") == 2
    ref = result.table.query("candidate == 'unet_bce' and metric == 'psnr'")
    assert (ref["diff_ref"] == 0).all()
