import json

import numpy as np
import pytest

from microsr.data.dataset import PatchDataset, SliceDataset, SlicePairs
from microsr.data.normalize import NormalizationConfig, normalize
from microsr.data.prepare import (
    PrepareConfig,
    bone_centre,
    load_dataset_info,
    prepare_dataset,
    roi_box,
)
from microsr.data.upsample import upsample_bilinear
from microsr.errors import MicrosrError
from microsr.io import read_volume, write_volume
from microsr.volume import Volume


def test_prepare_writes_normalised_upsampled_pairs(pair_manifest, tmp_path):
    out = prepare_dataset(pair_manifest, tmp_path / "ds", PrepareConfig(roi=24), progress=False)
    info, splits = load_dataset_info(out)
    assert info["factor"] == 2 and set(info["specimens"]) == {f"s{i}" for i in range(5)}
    assert sorted(s for k in ("train", "val", "test") for s in splits[k]) == sorted(
        info["specimens"]
    )
    m = info["specimens"]["s1"]
    lr_np, hr_np = np.load(out / "specimens/s1/lr.npy"), np.load(out / "specimens/s1/hr.npy")
    assert lr_np.shape == hr_np.shape == (4, 24, 24) and m["n_slices"] == 4
    # Analytic: the stored LR is normalise(crop(bilinear(LR slice k))), HR is normalise(HR slice 2k).
    lr_vol, hr_vol = read_volume(m["lr_path"]), read_volume(m["hr_path"])
    y0, x0, h, w = m["crop_yxhw"]
    exp_lr = normalize(
        upsample_bilinear(lr_vol.array, factor=2)[:, y0 : y0 + h, x0 : x0 + w],
        NormalizationConfig(),
    )
    exp_hr = normalize(hr_vol.array[::2, y0 : y0 + h, x0 : x0 + w], NormalizationConfig())
    np.testing.assert_allclose(lr_np, exp_lr, atol=1e-6)
    np.testing.assert_allclose(hr_np, exp_hr, atol=1e-6)
    assert lr_np.min() == 0.0 and lr_np.max() == 1.0


def test_prepare_refuses_existing_output_and_bad_pair_leaves_nothing(pair_manifest, tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(MicrosrError, match="not empty"):
        prepare_dataset(pair_manifest, out, progress=False)
    assert (out / "keep.txt").read_text() == "x"
    # Replace s4's HR by a volume that is too small: the whole run fails, nothing is written.
    bad_hr = Volume(np.zeros((8, 20, 36), np.float32), (0.01,) * 3)
    write_volume(bad_hr, pair_manifest.parent / "s4_hr.mha")
    with pytest.raises(MicrosrError, match="s4: LR and HR extents disagree along y"):
        prepare_dataset(pair_manifest, tmp_path / "ds2", progress=False)
    assert not (tmp_path / "ds2").exists()
    assert [p.name for p in tmp_path.iterdir() if "tmp" in p.name] == []


def test_window_normalisation_and_user_split(pair_manifest, tmp_path):
    split = tmp_path / "my_split.json"
    split.write_text(json.dumps({"train": ["s0", "s1", "s2"], "val": ["s3"], "test": ["s4"]}))
    cfg = PrepareConfig(
        roi=400,
        normalization=NormalizationConfig(mode="window", low=0, high=2000),
        split_file=split,
    )
    out = prepare_dataset(pair_manifest, tmp_path / "ds", cfg, progress=False)
    info, splits = load_dataset_info(out)
    assert splits["test"] == ["s4"] and info["normalization"]["mode"] == "window"
    hr = np.load(out / "specimens/s0/hr.npy")
    assert hr.shape[1:] == (36, 36)  # ROI larger than the slice -> whole slice
    assert hr.min() > 0.0 and hr.max() < 1.0  # fixed window, not stretched


def test_bone_centre_and_roi_box():
    vol = np.zeros((3, 50, 60), np.float32)
    vol[:, 30:40, 10:20] = 1000
    cy, cx = bone_centre(vol)
    assert (cy, cx) == pytest.approx((34.5, 14.5))
    assert roi_box((cy, cx), (50, 60), 20) == (24, 4, 20, 20) or roi_box((cy, cx), (50, 60), 20)[
        2:
    ] == (20, 20)
    assert roi_box((0, 0), (50, 60), 20) == (0, 0, 20, 20)
    assert roi_box((49, 59), (50, 60), 20) == (30, 40, 20, 20)
    assert roi_box((25, 30), (50, 60), 400) == (0, 0, 50, 60)


def test_datasets_stream_only_requested_specimens(pair_manifest, tmp_path):
    out = prepare_dataset(pair_manifest, tmp_path / "ds", PrepareConfig(roi=24), progress=False)
    info, splits = load_dataset_info(out)
    pairs = SlicePairs(out, info, splits["train"])
    assert len(pairs) == 4 * len(splits["train"])
    assert set(pairs.specimens).isdisjoint(splits["test"])
    ds = PatchDataset(pairs, patch=16)
    a, b = ds[0]
    assert a.shape == b.shape == (1, 16, 16)
    assert isinstance(np.load(out / "specimens/s0/lr.npy", mmap_mode="r"), np.memmap)
    whole = SliceDataset(pairs, max_slices=3)
    assert len(whole) == 3 and whole[0][0].shape == (1, 24, 24)
    with pytest.raises(ValueError, match="larger than the smallest slice"):
        PatchDataset(pairs, patch=32)
