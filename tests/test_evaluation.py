import json
import math

import numpy as np
import pytest
from conftest import make_pair

from microsr.data.normalize import NormalizationConfig
from microsr.data.upsample import upsample_bilinear
from microsr.errors import MicrosrError
from microsr.evaluation import evaluate_volumes, format_summary, summarize, write_evaluation
from microsr.metrics import psnr
from microsr.volume import Volume

NORM = NormalizationConfig()


def test_sr_equal_to_hr_scores_perfectly_and_bilinear_sr_equals_lr(tmp_path):
    lr, hr = make_pair(0, shape=(8, 34, 30))
    perfect = Volume(hr.array[::2], (0.02, 0.01, 0.01), (0.005, 0.0, 0.0))
    df = evaluate_volumes(hr, lr, perfect, normalization=NORM, name="s0")
    assert len(df) == 4 and np.all(np.isinf(df.psnr_sr)) and np.allclose(df.ssim_sr, 1.0)
    bilinear = Volume(upsample_bilinear(lr.array, factor=2), (0.02, 0.01, 0.01), (0.005, 0.0, 0.0))
    df2 = evaluate_volumes(hr, lr, bilinear, normalization=NORM, name="s0")
    np.testing.assert_allclose(df2.psnr_sr, df2.psnr_lr, rtol=1e-6)
    np.testing.assert_allclose(df2.ssim_sr, df2.ssim_lr, rtol=1e-6)
    # Analytic cross-check of one slice with an independent path.
    up = upsample_bilinear(lr.array[1], factor=2)
    a = (up - up.min()) / (up.max() - up.min())
    b = (hr.array[2] - hr.array[2].min()) / (hr.array[2].max() - hr.array[2].min())
    assert df2.psnr_lr[1] == pytest.approx(psnr(a, b, data_range=1.0), rel=1e-6)


def test_summary_files_and_table(tmp_path):
    lr, hr = make_pair(1, shape=(8, 34, 30))
    df = evaluate_volumes(hr, lr, None, normalization=NORM, name="s1")
    summary = write_evaluation(df, tmp_path / "ev")
    saved = json.loads((tmp_path / "ev/summary.json").read_text())
    assert saved["n_slices"] == 4 and saved["psnr_lr"] == pytest.approx(df.psnr_lr.mean())
    assert "psnr_sr" not in saved
    assert (tmp_path / "ev/slices.csv").read_text().startswith("specimen,lr_slice,hr_slice,psnr_lr")
    assert "s1" in format_summary(summary)
    per = (tmp_path / "ev/specimens.csv").read_text().splitlines()
    assert per[0].startswith("specimen,psnr_lr") and per[1].startswith("s1,")


def test_summarize_means_per_specimen():
    import pandas as pd

    df = pd.DataFrame(
        {
            "specimen": ["a", "a", "b"],
            "psnr_lr": [10, 20, 30.0],
            "ssim_lr": [0.1, 0.3, 0.5],
            "psnr_sr": [11, 21, 31.0],
            "ssim_sr": [0.2, 0.4, 0.6],
        }
    )
    s = summarize(df)
    assert s["psnr_lr"] == 20 and s["per_specimen"]["a"]["psnr_lr"] == 15 and s["n_slices"] == 3
    assert math.isclose(s["per_specimen"]["b"]["ssim_sr"], 0.6)


def test_sr_on_wrong_grid_is_rejected():
    lr, hr = make_pair(2, shape=(8, 34, 30))
    with pytest.raises(MicrosrError, match="not on the HR grid"):
        evaluate_volumes(hr, lr, lr, normalization=NORM, name="x")
