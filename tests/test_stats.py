"""Statistics against outside references and analytic cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from microsr.stats import bland_altman, mean_ci, paired_comparison, run_stats

# Student's sleep data (Cushny & Peebles 1905), extra hours of sleep with two drugs for
# the same 10 patients. R: t.test(extra ~ group, data = sleep, paired = TRUE) gives
# t = -4.0621, df = 9, p-value = 0.002833, 95 % CI of the mean difference
# (-2.4598858, -0.7001142), mean difference -1.58 (group 1 - group 2).
SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def test_paired_t_test_matches_r_and_scipy_on_sleep_data():
    res = paired_comparison(SLEEP_2, SLEEP_1)  # difference b - a = group 1 - group 2
    assert res["t"] == pytest.approx(-4.0621, abs=1e-4)
    assert res["p_t"] == pytest.approx(0.002833, abs=1e-6)
    assert res["mean_diff"] == pytest.approx(-1.58)
    assert res["diff_ci_low"] == pytest.approx(-2.4598858, abs=1e-7)
    assert res["diff_ci_high"] == pytest.approx(-0.7001142, abs=1e-7)
    assert res["significant"]
    ref = stats.wilcoxon(SLEEP_1, SLEEP_2)
    assert res["p_wilcoxon"] == pytest.approx(ref.pvalue)
    d = np.subtract(SLEEP_1, SLEEP_2)
    assert res["cohen_dz"] == pytest.approx(d.mean() / d.std(ddof=1))


def test_too_few_pairs_and_constant_differences_give_notes():
    assert "too few" in paired_comparison([1.0], [2.0])["note"]
    res = paired_comparison([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    assert "constant" in res["note"] and np.isnan(res["p_t"]) and not res["significant"]
    assert mean_ci([5.0])["note"] == "fewer than 2 values"


def test_mean_ci_matches_t_interval():
    x = np.array([2.0, 4.0, 4.0, 5.0, 7.0, 9.0])
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    res = mean_ci(x)
    assert (res["ci_low"], res["ci_high"]) == pytest.approx((lo, hi))


def test_bland_altman_of_identical_series_has_zero_bias_and_width():
    x = np.linspace(0.1, 0.4, 17)
    res = bland_altman(x, x)
    for key in ("bias", "sd", "loa_low", "loa_high", "bias_ci_low", "loa_high_ci_high"):
        assert res[key] == 0.0


def test_bland_altman_known_example():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    b = a - np.array([0.5, 1.5, 0.5, 1.5])  # differences: mean 1, SD sqrt(1/3)
    res = bland_altman(a, b)
    sd = np.sqrt(1 / 3)
    assert res["bias"] == pytest.approx(1.0)
    assert res["sd"] == pytest.approx(sd)
    assert (res["loa_low"], res["loa_high"]) == pytest.approx((1 - 1.96 * sd, 1 + 1.96 * sd))
    q = stats.t.ppf(0.975, 3)
    assert res["loa_high_ci_high"] == pytest.approx(1 + 1.96 * sd + q * sd * np.sqrt(3 / 4))
    assert "too few" in bland_altman([1.0], [1.0])["note"]


def _slices(n_per=(5, 4, 1)):
    rng = np.random.default_rng(1)
    rows = []
    for i, n in enumerate(n_per):
        for k in range(n):
            hr = rng.uniform(0.2, 0.3)
            rows.append(
                {
                    "specimen": f"s{i}",
                    "site": "femur" if i < 2 else "spine",
                    "lr_slice": k,
                    "psnr_lr": rng.normal(20, 1),
                    "psnr_sr": rng.normal(26, 1),
                    "ssim_lr": rng.normal(0.5, 0.05),
                    "ssim_sr": rng.normal(0.8, 0.05),
                    "ba_ta_hr": hr,
                    "ba_ta_lr": hr + rng.normal(0.08, 0.02),
                    "ba_ta_sr": hr + rng.normal(0.0, 0.01),
                }
            )
    return pd.DataFrame(rows)


def test_run_stats_tables_and_a_specimen_with_one_slice():
    t = run_stats(_slices())
    spec = t["specimens"].set_index("specimen")
    assert spec.loc["s2", "n_slices"] == 1 and "fewer than 2" in spec.loc["s2", "note"]
    assert np.isnan(spec.loc["s2", "psnr_sr_ci_low"])
    cmp = t["comparisons"].set_index(["group", "unit", "metric"])
    slice_psnr = cmp.loc[("all", "slice", "psnr")]
    assert slice_psnr["n"] == 10 and slice_psnr["significant"]
    assert slice_psnr["p_t"] == pytest.approx(
        stats.ttest_rel(_slices()["psnr_sr"], _slices()["psnr_lr"]).pvalue
    )
    assert "too few" in cmp.loc[("spine", "specimen", "psnr"), "note"]
    ba = t["bland_altman"].set_index(["group", "unit", "pair"])
    assert ba.loc[("all", "slice", "LR-HR"), "bias"] > ba.loc[("all", "slice", "SR-HR"), "bias"]
