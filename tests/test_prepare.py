import json

import numpy as np
import pytest

from microsr.data.dataset import PatchDataset, SliceDataset, SlicePairs
from microsr.data.normalize import NormalizationConfig
from microsr.data.prepare import (
    PrepareConfig,
    bone_centre,
    load_dataset_info,
    prepare_dataset,
    roi_box,
)
from microsr.errors import MicrosrError
from microsr.io import read_volume, write_volume
from microsr.pairing.upsample import upsample_bilinear
from microsr.volume import Volume


def test_prepare_pairs_every_hr_slice_on_the_hr_grid(pair_manifest, tmp_path):
    out = prepare_dataset(pair_manifest, tmp_path / "ds", PrepareConfig(roi=24), progress=False)
    info, splits = load_dataset_info(out)
    info = info.to_json()  # the file's content
    assert info["factor"] == 2 and info["z_factor"] == 2 and info["z_grid"] == "hr"
    assert set(info["specimens"]) == {f"s{i}" for i in range(5)}
    assert sorted(s for k in ("train", "val", "test") for s in splits[k]) == sorted(
        info["specimens"]
    )
    m = info["specimens"]["s1"]
    lr_np, hr_np = np.load(out / "specimens/s1/lr.npy"), np.load(out / "specimens/s1/hr.npy")
    # every HR slice is a pair (8 HR slices, 4 LR), at t = (j - 0.5) / 2
    assert lr_np.shape == (4, 24, 24) and hr_np.shape == (8, 24, 24) and m["n_slices"] == 8
    np.testing.assert_allclose(m["lr_t"], (np.arange(8) - 0.5) / 2)
    # Analytic: the stored arrays are raw: crop(bilinear(LR)) and crop(HR)
    lr_vol, hr_vol = read_volume(m["lr_path"]), read_volume(m["hr_path"])
    y0, x0, h, w = m["crop_yxhw"]
    exp_lr = upsample_bilinear(lr_vol.array, factor=2)[:, y0 : y0 + h, x0 : x0 + w]
    np.testing.assert_allclose(lr_np, exp_lr, atol=1e-4)
    np.testing.assert_array_equal(hr_np, hr_vol.array[:, y0 : y0 + h, x0 : x0 + w])
    # one window for all, fitted on the training specimens' HR voxels (robust percentiles)
    norm = NormalizationConfig.model_validate(info["normalization"])
    train_hr = np.concatenate([read_volume(info["specimens"][s]["hr_path"]).array.ravel()
                               for s in splits["train"]])  # fmt: skip
    lo, hi = np.percentile(train_hr, (0.1, 99.9))
    assert norm.mode == "window" and norm.lr_low is None
    assert norm.low == pytest.approx(lo - 0.05 * (hi - lo), rel=0.05)
    assert norm.high == pytest.approx(hi + 0.05 * (hi - lo), rel=0.05)


def test_minmax_preset_fits_the_output_range_on_training_pairs(pair_manifest, tmp_path):
    cfg = PrepareConfig(roi=24, normalize="minmax")
    out = prepare_dataset(pair_manifest, tmp_path / "ds", cfg, progress=False)
    info, splits = load_dataset_info(out)
    norm = info.normalization
    assert norm.mode == "minmax" and norm.inverse.n_slices == 8 * len(splits["train"])
    with pytest.raises(ValueError, match="not used"):
        PrepareConfig(normalize="minmax", window=(0, 1))


def test_prepare_refuses_existing_output_and_bad_pair_leaves_nothing(pair_manifest, tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(MicrosrError, match="not empty"):
        prepare_dataset(pair_manifest, out, progress=False)
    assert (out / "keep.txt").read_text() == "x"
    # --overwrite writes the dataset beside the user's file, which stays
    prepare_dataset(pair_manifest, out, PrepareConfig(roi=24), overwrite=True, progress=False)
    assert (out / "keep.txt").read_text() == "x" and (out / "dataset.json").is_file()
    # Replace s4's HR by a volume that is too small: the whole run fails, nothing is written.
    bad_hr = Volume(np.zeros((8, 20, 36), np.float32), (0.01,) * 3)
    write_volume(bad_hr, pair_manifest.parent / "s4_hr.mha", overwrite=True)
    with pytest.raises(MicrosrError, match="s4: LR and HR extents disagree along y"):
        prepare_dataset(pair_manifest, tmp_path / "ds2", progress=False)
    assert not (tmp_path / "ds2").exists()
    assert [p.name for p in tmp_path.iterdir() if "tmp" in p.name] == []


def test_window_normalisation_and_user_split(pair_manifest, tmp_path):
    split = tmp_path / "my_split.json"
    split.write_text(json.dumps({"train": ["s0", "s1", "s2"], "val": ["s3"], "test": ["s4"]}))
    cfg = PrepareConfig(roi=400, window=(0, 2000), split_file=split)
    out = prepare_dataset(pair_manifest, tmp_path / "ds", cfg, progress=False)
    info, splits = load_dataset_info(out)
    info = info.to_json()
    assert splits["test"] == ["s4"] and info["normalization"]["mode"] == "window"
    assert (info["normalization"]["low"], info["normalization"]["high"]) == (0, 2000)
    hr = np.load(out / "specimens/s0/hr.npy")
    assert hr.shape[1:] == (36, 36)  # ROI larger than the slice -> whole slice
    pairs = SlicePairs(out, info, ["s0"])
    _lr_n, hr_n = pairs.pair(3)
    assert hr_n.min() > 0.0 and hr_n.max() < 1.0  # fixed window, not stretched
    np.testing.assert_allclose(hr_n, hr[3] / 2000, atol=1e-6)


def test_bone_centre_and_roi_box():
    vol = np.zeros((3, 50, 60), np.float32)
    vol[:, 30:40, 10:20] = 1000
    cy, cx = bone_centre(vol)
    assert (cy, cx) == pytest.approx((34.5, 14.5))
    # centre (34.5, 14.5), side 20: y0 = round(24.5) = 24 (banker's), x0 = round(4.5) = 4
    assert roi_box((cy, cx), (50, 60), 20) == (24, 4, 20, 20)
    assert roi_box((0, 0), (50, 60), 20) == (0, 0, 20, 20)
    assert roi_box((49, 59), (50, 60), 20) == (30, 40, 20, 20)
    assert roi_box((25, 30), (50, 60), 400) == (0, 0, 50, 60)


def test_datasets_stream_only_requested_specimens(pair_manifest, tmp_path):
    out = prepare_dataset(pair_manifest, tmp_path / "ds", PrepareConfig(roi=24), progress=False)
    info, splits = load_dataset_info(out)
    pairs = SlicePairs(out, info, splits["train"])
    assert len(pairs) == 8 * len(splits["train"])
    assert set(pairs.specimens).isdisjoint(splits["test"])
    ds = PatchDataset(pairs, patch=16)
    a, b = ds[0]
    assert a.shape == b.shape == (1, 16, 16)
    assert isinstance(np.load(out / "specimens/s0/lr.npy", mmap_mode="r"), np.memmap)
    whole = SliceDataset(pairs, max_slices=3)
    assert len(whole) == 3 and whole[0][0].shape == (1, 24, 24)
    with pytest.raises(ValueError, match="larger than the smallest slice"):
        PatchDataset(pairs, patch=32)


def test_context_stack_is_the_lr_volume_around_the_hr_slice(pair_manifest, tmp_path):
    out = prepare_dataset(pair_manifest, tmp_path / "ds", PrepareConfig(roi=24), progress=False)
    info, _ = load_dataset_info(out)
    lr_np = np.load(out / "specimens/s0/lr.npy")
    pairs = SlicePairs(out, info, ["s0"], context=1)
    lr, _hr = pairs.raw_pair(5)  # HR slice 5: t = 2.25
    assert lr.shape == (3, 24, 24)
    np.testing.assert_allclose(lr[1], 0.75 * lr_np[2] + 0.25 * lr_np[3], atol=1e-5)
    np.testing.assert_allclose(lr[0], 0.75 * lr_np[1] + 0.25 * lr_np[2], atol=1e-5)
    np.testing.assert_allclose(lr[2], lr_np[3], atol=1e-5)  # t + 1 = 3.25: clamped to the end


def test_damaged_arrays_are_one_clear_error(pair_manifest, tmp_path):
    out = prepare_dataset(pair_manifest, tmp_path / "ds", PrepareConfig(roi=24), progress=False)
    info, _ = load_dataset_info(out)
    path = out / "specimens/s0/hr.npy"
    path.write_bytes(path.read_bytes()[:-100])  # truncated
    with pytest.raises(MicrosrError, match="hr.npy: prepared array is missing or damaged"):
        SlicePairs(out, info, ["s0"])


def test_one_slice_lr_and_non_integer_z_ratio_are_refused(tmp_path):
    from conftest import make_pair

    from microsr.data.manifest import SpecimenRow, write_manifest

    lr, hr = make_pair(0, shape=(2, 20, 20))  # one LR slice
    rows = [
        SpecimenRow(f"a{i}", "x", write_volume(lr, tmp_path / f"a{i}_lr.mha"),
                    write_volume(hr, tmp_path / f"a{i}_hr.mha"))
        for i in range(3)
    ]  # fmt: skip
    with pytest.raises(MicrosrError, match="a0: the LR volume has 1 slice"):
        prepare_dataset(write_manifest(rows, tmp_path / "m.csv"), tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds").exists()


def test_prepare_paper_flag_is_the_minmax_preset(pair_manifest, tmp_path):
    from typer.testing import CliRunner

    from microsr.cli import app

    res = CliRunner().invoke(
        app, ["prepare", str(pair_manifest), str(tmp_path / "ds"), "--roi", "24", "--paper"]
    )
    assert res.exit_code == 0, res.output
    info = json.loads((tmp_path / "ds/dataset.json").read_text())
    assert info["normalization"]["mode"] == "minmax" and info["normalization"]["inverse"]


def test_typed_dataset_records_read_dataset_json_and_keep_extra_keys(pair_manifest, tmp_path):
    """``DatasetInfo.of`` types what ``load_dataset_info`` reads; unknown keys pass through."""
    from microsr.data.normalize import NormalizationConfig
    from microsr.data.records import DatasetInfo

    out = prepare_dataset(pair_manifest, tmp_path / "ds", PrepareConfig(roi=24), progress=False)
    info = json.loads((out / "dataset.json").read_text())
    info["specimens"]["s0"]["acquisition_file"] = "a.json"  # a newer writer's key
    typed = DatasetInfo.of(info)
    assert DatasetInfo.of(typed) is typed
    assert typed.normalization == NormalizationConfig.model_validate(info["normalization"])
    record = typed.specimens["s0"]
    assert record.model_extra["acquisition_file"] == "a.json"
    assert record.hr_slices == info["specimens"]["s0"]["hr_slices"]
    assert record.n_slices == len(record.hr_slices) and record.crop_yxhw[2:] == (24, 24)
    assert typed.factor == info["factor"] and set(typed.specimens) == set(info["specimens"])


def test_dataset_json_round_trips_through_dataset_info(pair_manifest, tmp_path):
    """prepare's ``dataset.json``, read as a ``DatasetInfo`` and written again, is the same
    text: real and simulated LR scans (with a second draw), extra manifest columns."""
    from microsr.data.records import DatasetInfo
    from microsr.data.simulated import SimulationConfig

    lines = pair_manifest.read_text().splitlines()
    rows = [lines[0] + ",subject,scanner"]
    for i, line in enumerate(lines[1:]):
        fields = line.split(",")
        fields[2] = fields[2] if i < 2 else ""  # s2..s4: LR simulated from HR
        rows.append(",".join(fields) + f",d{i // 2},{'X' if i % 2 else ''}")
    (tmp_path / "extra.csv").write_text("\n".join(rows) + "\n")
    cfg = PrepareConfig(roi=24, simulation=SimulationConfig(draws=2))
    out = prepare_dataset(tmp_path / "extra.csv", tmp_path / "ds", cfg, progress=False)
    text = (out / "dataset.json").read_text()
    info = DatasetInfo.of(json.loads(text))
    assert json.dumps(info.to_json(), indent=2) == text
    records = info.specimens
    assert [records[f"s{i}"].subject for i in range(5)] == ["d0", "d0", "d1", "d1", "d2"]
    assert records["s1"].model_extra["scanner"] == "X" and "scanner" not in records["s0"].to_json()
    assert records["s0"].lr_path and records["s0"].simulated is None
    assert all(records[s].simulated and records[s].lr_path is None for s in ("s2", "s3", "s4"))
    assert {r.n_lr_draws for r in records.values()} == {1, 2}  # a simulated training specimen
    assert info.slice_factor == info.factor == 2 and info.units == cfg.units
    window = NormalizationConfig(mode="window", low=0.0, high=1.0)
    assert info.with_normalization(window).to_json() == info.to_json() | {
        "normalization": window.model_dump(mode="json")
    }


def test_a_dataset_json_of_wrong_types_is_one_error_naming_the_field(pair_manifest, tmp_path):
    out = prepare_dataset(pair_manifest, tmp_path / "ds", PrepareConfig(roi=24), progress=False)
    info = json.loads((out / "dataset.json").read_text())
    info["factor"] = "two"
    (out / "dataset.json").write_text(json.dumps(info))
    with pytest.raises(MicrosrError, match=r"ds/dataset.json: factor: .*integer"):
        load_dataset_info(out)
