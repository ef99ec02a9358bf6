"""The TA choice and the direct 3D features in the one evaluation path."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_pair

from microsr.evaluation import ScoreConfig, evaluate_volumes
from microsr.morphometry import MorphometryConfig

AUTO = ScoreConfig(morphometry=MorphometryConfig(threshold="otsu"))


@pytest.mark.slow  # the first `import itk` of a process takes 10 s or more
def test_summary_records_ta_and_direct_3d_features():
    lr, hr = make_pair(0, shape=(8, 34, 30))
    result = evaluate_volumes(hr, lr, hr, name="s0", config=AUTO)
    s = result.summary
    assert s["ta_rule"] == "roi" and "trabecular VOI" in s["ta_reason"]
    f = s["features_3d"]
    for key in ("tb_th_lt_mm", "tb_sp_lt_mm", "conn_d_per_mm3", "tb_th_mm"):
        assert np.isfinite(f["hr"][key]), key
        assert f["sr"][f"{key}_err"] == 0.0  # SR = HR
        assert f["lr"][f"{key}_err"] == pytest.approx(f["lr"][key] - f["hr"][key])
    assert 0.01 < f["hr"]["tb_th_lt_mm"] < 0.1  # tens of um on 10 um voxels
    assert "tb_th_lt_mm_err" not in f["hr"]


def test_zeros_outside_the_hr_contour_are_the_ta_of_all_images():
    lr, hr = make_pair(1, shape=(8, 34, 30))
    yy, xx = np.mgrid[:34, :30]
    outside = np.hypot(yy - 16.5, xx - 14.5) > 12
    arr = np.array(hr.array)
    arr[:, outside] = 0.0
    cfg = AUTO.model_copy(update={"features_3d": False})
    result = evaluate_volumes(hr.with_array(arr), lr, None, name="s1", config=cfg)
    assert result.summary["ta_rule"] == "nonzero", result.summary["ta_reason"]
    assert (result.slices["ta"] == (~outside).sum()).all()


def test_sweep_at_factor_one_is_the_slice_table_error():
    """The sweep's level 1.0 reuses the resolved segmentation: its error is the table's."""
    from microsr.evaluation import ScoreConfig, array_stacks, score_stacks
    from microsr.morphometry import MorphometryConfig
    from microsr.morphometry.area import ba_ta_abserr

    rng = np.random.default_rng(3)
    hr = rng.uniform(0, 1000, (6, 23, 19)).astype(np.float32)
    lr = hr + rng.normal(0, 150, hr.shape).astype(np.float32)
    config = ScoreConfig(
        morphometry=MorphometryConfig(threshold="otsu", ta="roi"), features_3d=False
    )
    stacks = array_stacks(
        "s", {"lr": lr, "hr": hr}, lr_t=np.arange(6.0), n_lr=6, spacing_mm=(0.01,) * 3
    )
    result = score_stacks(stacks, config)
    at_one = next(r for r in result.summary["sweep"] if r["factor"] == 1.0)
    assert at_one["abs_err_lr"] == pytest.approx(ba_ta_abserr(result.slices, "lr").mean())
    assert at_one["abs_err_lr"] > 0
