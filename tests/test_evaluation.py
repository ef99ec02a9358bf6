"""The one evaluation path: paired stacks on the HR grid and every score, with analytic checks."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_pair

from microsr.errors import MicrosrError
from microsr.evaluation import (
    ScoreConfig,
    array_stacks,
    evaluate_volumes,
    format_summary,
    score_stacks,
    summarize,
    write_evaluation,
)
from microsr.metrics import psnr
from microsr.morphometry import MorphometryConfig
from microsr.volume import Calibration, Volume

OTSU = ScoreConfig(morphometry=MorphometryConfig(threshold="otsu", ta="roi"))


def _trilinear(lr: Volume) -> Volume:
    t = torch.from_numpy(np.asarray(lr.array, np.float32))[None, None]
    up = torch.nn.functional.interpolate(t, scale_factor=2, mode="trilinear")[0, 0].numpy()
    sz, sy, sx = (s / 2 for s in lr.spacing_mm)
    origin = tuple(o - s / 2 for o, s in zip(lr.origin_mm, (sz, sy, sx)))
    return Volume(up, (sz, sy, sx), origin)


def test_sr_equal_to_hr_has_no_error_anywhere():
    """A "model" that returns HR: infinite PSNR, SSIM 1, zero bias, zero BA/TA error."""
    lr, hr = make_pair(0, shape=(8, 34, 30))
    result = evaluate_volumes(hr, lr, hr, name="s0", config=OTSU)
    s = result.slices
    assert len(s) == 8  # every HR slice
    assert np.all(np.isinf(s.psnr_sr)) and np.allclose(s.ssim_sr, 1.0)
    np.testing.assert_array_equal(s.ba_ta_sr, s.ba_ta_hr)
    assert result.summary["intensity_bias"]["sr"] == {"bone": 0.0, "marrow": 0.0}
    assert all(row["abs_err_sr"] == 0 for row in result.summary["sweep"])
    f = result.summary["features_3d"]
    assert f["sr"]["bv_tv"] == f["hr"]["bv_tv"]
    assert abs(result.summary["intensity_bias"]["lr"]["bone"]) > 0.01  # LR is blurred


def test_trilinear_sr_scores_like_the_lr_baseline_and_psnr_cross_check():
    lr, hr = make_pair(1, shape=(8, 34, 30))
    cfg = OTSU.model_copy(update={"window": (0.0, 1000.0), "features_3d": False})
    s = evaluate_volumes(hr, lr, _trilinear(lr), name="s1", config=cfg).slices
    np.testing.assert_allclose(s.psnr_sr, s.psnr_lr, rtol=1e-5)
    np.testing.assert_allclose(s.ba_ta_sr, s.ba_ta_lr)
    # an independent path for one slice: HR slice 3 lies at LR t = 1.25
    up = _trilinear(lr).array[3]
    expected = psnr(up / 1000, hr.array[3] / 1000, data_range=1.0)
    assert s.psnr_lr[3] == pytest.approx(expected, rel=1e-5)
    # at_lr_centre: the HR slice nearest to each LR centre (ties to the lower index)
    assert s.at_lr_centre.tolist() == [True, False] * 4


def test_offset_sr_shows_as_intensity_bias():
    lr, hr = make_pair(2, shape=(8, 34, 30))
    shifted = hr.with_array(hr.array - 45.0)  # SR 45 grey values too dark everywhere
    cfg = OTSU.model_copy(update={"window": (0.0, 900.0), "features_3d": False})
    bias = evaluate_volumes(hr, lr, shifted, name="s", config=cfg).summary["intensity_bias"]
    assert bias["sr"]["bone"] == pytest.approx(-0.05) and bias["sr"]["marrow"] == pytest.approx(
        -0.05
    )


def test_minmax_scale_is_the_papers():
    lr, hr = make_pair(3, shape=(8, 34, 30))
    cfg = OTSU.model_copy(update={"scale": "minmax", "features_3d": False})
    s = evaluate_volumes(hr, lr, hr.with_array(hr.array * 2 + 7), name="s", config=cfg).slices
    assert (s.psnr_sr > 100).all()  # an affine copy is perfect (to float rounding) after min-max


def test_lr_grid_sr_is_interpolated_to_every_hr_slice():
    lr, hr = make_pair(4, shape=(8, 34, 30))
    on_lr = hr.with_array(hr.array[::2], spacing_mm=(0.02, 0.01, 0.01))  # at HR slices 0, 2, ..
    s = evaluate_volumes(hr, lr, on_lr, name="s", config=OTSU).slices
    assert len(s) == 8 and np.all(np.isinf(s.psnr_sr[::2]))  # exact where it has slices
    assert np.isfinite(s.psnr_sr[1::2]).all()


def test_sr_on_wrong_grid_is_rejected():
    lr, hr = make_pair(5, shape=(8, 34, 30))
    with pytest.raises(MicrosrError, match="not on the HR grid"):
        evaluate_volumes(hr, lr, lr, name="x")


def test_mgha_threshold_on_uncalibrated_data_is_one_error():
    lr, hr = make_pair(6, shape=(8, 34, 30))
    with pytest.raises(MicrosrError, match="mg HA/cm3 needs density-calibrated"):
        evaluate_volumes(hr, lr, hr, name="x", config=ScoreConfig())
    cal = Calibration(1.0, 0.0, "mg HA/cm3")
    ok = evaluate_volumes(hr.with_array(hr.array, calibration=cal), lr, None, name="x")
    assert ok.summary["threshold"].startswith(">= 500 mg HA/cm3")


def test_summary_files_and_table(tmp_path):
    lr, hr = make_pair(7, shape=(8, 34, 30))
    results = [evaluate_volumes(hr, lr, hr, name=n, config=OTSU) for n in ("a", "b")]
    summary = write_evaluation(results, tmp_path / "ev")
    saved = json.loads((tmp_path / "ev/summary.json").read_text())
    assert saved["n_slices"] == 16 and saved["slices_between_lr_centres"]["n_slices"] == 8
    assert saved["psnr_lr"] == pytest.approx(results[0].slices.psnr_lr.mean())
    assert saved["per_specimen"]["a"]["intensity_bias"]["sr"]["bone"] == 0.0
    header = (tmp_path / "ev/slices.csv").read_text().splitlines()[0]
    assert header.startswith("specimen,hr_slice,lr_t,at_lr_centre,psnr_lr,ssim_lr,psnr_sr")
    per = pd.read_csv(tmp_path / "ev/specimens.csv")
    assert list(per.specimen) == ["a", "b"] and "bias_bone_sr" in per and "bv_tv_hr" in per
    text = format_summary(summary)
    assert "between LR centres" in text and text.splitlines()[2].startswith("a ")


def test_summarize_means_over_all_and_per_specimen():
    def result(name, psnr_lr):
        slices = pd.DataFrame({"specimen": name, "at_lr_centre": [True, False],
                               "psnr_lr": psnr_lr, "ba_ta_lr": [0.1, 0.2], "ba_ta_hr": [0.1, 0.3]})  # fmt: skip
        return type("R", (), {"slices": slices, "summary": {"specimen": name}})()

    s = summarize([result("a", [10.0, 20.0]), result("b", [30.0, 40.0])])
    assert s["psnr_lr"] == 25 and s["per_specimen"]["a"]["psnr_lr"] == 15
    assert s["slices_at_lr_centres"]["psnr_lr"] == 20
    assert s["ba_ta_abserr_lr"] == pytest.approx(0.05)


def test_array_stacks_score_like_volume_stacks():
    lr, hr = make_pair(8, shape=(8, 34, 30))
    from microsr.evaluation.stacks import volume_stacks

    vs = volume_stacks(hr, lr, hr, name="v")
    images = vs.read(0, len(vs))
    arr = array_stacks("v", images, lr_t=vs.lr_t, n_lr=4, spacing_mm=hr.spacing_mm)
    a = score_stacks(vs, OTSU).slices
    b = score_stacks(arr, OTSU).slices
    pd.testing.assert_frame_equal(a, b)
