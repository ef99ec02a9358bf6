"""The demo's promise: on a held-out phantom specimen the model beats bilinear (slow, ~3 min)."""

import json

import numpy as np
import pytest
from conftest import SHARED_DATA

from microsr.data.simulated import slab_specimens
from microsr.demo import run_demo
from microsr.errors import MicrosrError
from microsr.evaluation import evaluate_volumes
from microsr.io import read_volume
from microsr.simulate import AcquisitionConfig, simulate_acquisition
from microsr.volume import Volume


@pytest.mark.slow
def test_demo_model_beats_bilinear_on_held_out_specimen(tmp_path):
    summary = run_demo(tmp_path / "demo", minutes=2.0, seed=0, progress=False)
    assert (tmp_path / "demo/best.ckpt").is_file()
    saved = json.loads((tmp_path / "demo/summary.json").read_text())
    assert saved["n_slices"] == summary["n_slices"] > 0
    assert summary["psnr_sr"] > summary["psnr_lr"]
    assert summary["ssim_sr"] > summary["ssim_lr"]


def test_slabs_are_contiguous_pseudo_specimens():
    hr = Volume(np.arange(50 * 4 * 4, dtype=np.float32).reshape(50, 4, 4), (0.01,) * 3, (1.0, 0, 0))
    slabs = slab_specimens(hr, 4, factor=2)
    assert [s[0] for s in slabs] == ["slab00", "slab01", "slab02", "slab03"]
    assert all(v.shape[0] == 12 for _, _, v in slabs)  # 50 // 4 = 12, a multiple of 2
    assert slabs[1][2].origin_mm[0] == pytest.approx(1.12)
    np.testing.assert_array_equal(slabs[1][2].array, hr.array[12:24])
    with pytest.raises(MicrosrError, match="too few"):
        slab_specimens(hr, 40, factor=2)


def test_demo_refuses_non_empty_output(tmp_path):
    (tmp_path / "x").write_text("keep")
    with pytest.raises(MicrosrError, match="not empty"):
        run_demo(tmp_path)


@pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason="shared LHDL data (../shared/data) not present"
)
def test_real_bone_slab_simulation_and_bilinear_scores():
    """Real trabecular bone (LHDL, HR only): simulate LR, score bilinear against HR."""
    hr = read_volume(SHARED_DATA, spacing_mm=0.0195)
    slab = hr.with_array(np.asarray(hr.array[:16], np.float32))
    ref = float(np.percentile(slab.array, 99.5))
    lr = simulate_acquisition(slab, AcquisitionConfig(reference_value=ref, seed=0))
    assert lr.shape == (8, 100, 100) and lr.spacing_mm == pytest.approx((0.039,) * 3)
    df = evaluate_volumes(slab, lr, None, name="lhdl").slices
    assert len(df) == 16  # every HR slice
    # Simulated 39 um LR of 19.5 um bone is clearly degraded but correlated.
    assert 12 < df.psnr_lr.mean() < 35 and 0.2 < df.ssim_lr.mean() < 0.95
