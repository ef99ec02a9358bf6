"""``prepare`` simulates the LR scans a manifest lacks (optionally randomised, per specimen)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_pair

from microsr.data.prepare import PrepareConfig, load_dataset_info, prepare_dataset
from microsr.data.simulated import SimulationConfig
from microsr.errors import InputFileError
from microsr.io import write_volume
from microsr.simulate import AcquisitionConfig, AcquisitionRanges


def _manifest(tmp_path, n=5, *, real_lr=(0,)):
    rows = ["specimen,site,lr_path,hr_path"]
    for i in range(n):
        lr, hr = make_pair(i, shape=(8, 40, 40))
        write_volume(hr, tmp_path / f"s{i}_hr.mha")
        lr_name = ""
        if i in real_lr:
            lr_name = write_volume(lr, tmp_path / f"s{i}_lr.mha").name
        rows.append(f"s{i},femur,{lr_name},s{i}_hr.mha")
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def _prepare(tmp_path, name, simulation):
    cfg = PrepareConfig(roi=32, simulation=simulation)
    manifest = tmp_path / "manifest.csv"
    manifest = manifest if manifest.is_file() else _manifest(tmp_path)
    out = prepare_dataset(manifest, tmp_path / name, cfg, progress=False)
    return load_dataset_info(out)[0].to_json()["specimens"]


def test_missing_lr_is_simulated_and_recorded(tmp_path):
    sim = SimulationConfig(acquisition=AcquisitionConfig(photons=3000.0), seed=4)
    specimens = _prepare(tmp_path, "ds", sim)
    assert "simulated" not in specimens["s0"] and specimens["s0"]["lr_path"].endswith("s0_lr.mha")
    for sid in ("s1", "s2", "s3", "s4"):
        rec = specimens[sid]["simulated"]
        assert specimens[sid]["lr_path"] is None and specimens[sid]["factor"] == 2
        assert rec["randomized"] is False and rec["acquisition"]["photons"] == 3000.0
        assert rec["attenuation"]["rule"] == "percentile"
    seeds = {specimens[s]["simulated"]["acquisition"]["seed"] for s in ("s1", "s2", "s3")}
    assert len(seeds) == 3  # seeded per specimen
    lr = np.load(tmp_path / "ds/specimens/s2/lr.npy")
    assert lr.shape[0] == 4 and np.isfinite(lr).all()


def test_randomised_draws_are_per_specimen_and_reproducible(tmp_path):
    ranges = AcquisitionRanges(photons=(1000.0, 4000.0), shift_hr_voxels=(-0.2, 0.2))
    sim = SimulationConfig(randomize=True, ranges=ranges, seed=1)
    first = _prepare(tmp_path, "a", sim)
    again = _prepare(tmp_path, "b", sim)
    draws = {sid: first[sid]["simulated"]["acquisition"] for sid in ("s1", "s2", "s3", "s4")}
    assert all(1000.0 <= d["photons"] <= 4000.0 for d in draws.values())
    assert len({d["photons"] for d in draws.values()}) == 4
    assert draws == {sid: again[sid]["simulated"]["acquisition"] for sid in draws}
    assert json.loads(json.dumps(draws)) == draws
    np.testing.assert_array_equal(
        np.load(tmp_path / "a/specimens/s3/lr.npy"), np.load(tmp_path / "b/specimens/s3/lr.npy")
    )


def test_empty_lr_path_is_refused_where_a_scan_is_needed(tmp_path):
    from microsr.data.manifest import read_manifest

    path = _manifest(tmp_path, n=2)
    with pytest.raises(InputFileError, match="empty lr_path"):
        read_manifest(path)
    assert read_manifest(path, allow_missing_lr=True)[1].lr_path is None


def test_cli_prepare_randomize(tmp_path):
    from typer.testing import CliRunner

    from microsr.cli import app

    manifest = _manifest(tmp_path)
    (tmp_path / "r.json").write_text(json.dumps({"frames": [2, 2]}))
    args = ["prepare", str(manifest), str(tmp_path / "ds"), "--roi", "32", "--randomize",
            "--ranges", str(tmp_path / "r.json"), "--simulate-seed", "3", "--draws", "2"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    info, splits = load_dataset_info(tmp_path / "ds")
    specimens = info.to_json()["specimens"]
    assert specimens["s1"]["simulated"]["acquisition"]["frames"] == 2
    assert {specimens[s]["n_lr_draws"] for s in splits["train"] if s != "s0"} == {2}
    res = CliRunner().invoke(app, [*args[:-1], "0", "--overwrite"])
    assert res.exit_code == 2 and "--draws" in res.output, res.output
    (tmp_path / "bad.json").write_text(json.dumps({"photons": [-1, 5]}))
    args[7] = str(tmp_path / "bad.json")
    res = CliRunner().invoke(app, [*args[:3], "--overwrite", *args[3:]])
    assert res.exit_code == 2 and "photons must be > 0" in res.output


def test_demo_manifest_with_randomised_acquisitions(tmp_path):
    from microsr.data.simulated import simulated_manifest
    from microsr.simulate import make_phantom

    hr = make_phantom((16, 48, 48), spacing_mm=0.01, seed=0)
    data = write_volume(hr.with_array(hr.array * 0.2, calibration=None), tmp_path / "hr.mha")
    manifest = simulated_manifest(
        tmp_path / "data", data=data, n_specimens=2, seed=3, ranges=AcquisitionRanges()
    )
    assert manifest.is_file()
    records = json.loads((tmp_path / "data/acquisitions.json").read_text())
    assert set(records) == {"slab00", "slab01"}
    assert records["slab00"]["randomized"] and records["slab00"]["attenuation"]["rule"] == (
        "percentile"
    )
    assert records["slab00"]["acquisition"] != records["slab01"]["acquisition"]


def test_several_draws_per_training_specimen_are_paired_and_read(tmp_path):
    from microsr.data.dataset import SlicePairs

    ranges = AcquisitionRanges(photons=(1000.0, 4000.0))
    one = _prepare(tmp_path, "one", SimulationConfig(randomize=True, ranges=ranges, seed=1))
    sim = SimulationConfig(randomize=True, ranges=ranges, seed=1, draws=3)
    info, splits = load_dataset_info(prepare_dataset(
        tmp_path / "manifest.csv", tmp_path / "three", PrepareConfig(roi=32, simulation=sim),
        progress=False,
    ))  # fmt: skip
    specimens = info.to_json()["specimens"]
    train = [s for s in splits["train"] if s != "s0"]  # s0 has a real LR scan
    held_out = [s for s in splits["val"] + splits["test"] if s != "s0"]
    assert train and held_out
    for sid in train:
        rec = specimens[sid]["simulated"]
        assert specimens[sid]["n_lr_draws"] == 3 and len(rec["draws"]) == 2
        # draw 0 is the single-draw dataset's acquisition; the others are new draws
        assert rec["acquisition"] == one[sid]["simulated"]["acquisition"]
        photons = [d["photons"] for d in (rec["acquisition"], *rec["draws"])]
        assert len(set(photons)) == 3 and all(1000.0 <= p <= 4000.0 for p in photons)
        folder = tmp_path / "three/specimens" / sid
        np.testing.assert_array_equal(
            np.load(folder / "lr.npy"), np.load(tmp_path / "one/specimens" / sid / "lr.npy")
        )
        assert not np.array_equal(np.load(folder / "lr.npy"), np.load(folder / "lr_2.npy"))
    for sid in held_out:  # scored on one acquisition
        assert specimens[sid]["n_lr_draws"] == 1 and specimens[sid]["simulated"]["draws"] == []
        assert not (tmp_path / "three/specimens" / sid / "lr_1.npy").exists()
    assert "n_lr_draws" not in specimens["s0"]
    # Training indexes every draw; evaluation only the first.
    sid, n = train[0], specimens[train[0]]["n_slices"]
    pairs = SlicePairs(tmp_path / "three", info, [sid, "s0"], draws=True)
    assert len(pairs) == 3 * n + specimens["s0"]["n_slices"]
    firsts = [pairs.raw_pair(d * n + 2)[0] for d in range(3)]
    np.testing.assert_array_equal(
        firsts[0], SlicePairs(tmp_path / "three", info, [sid]).raw_pair(2)[0]
    )
    assert not np.array_equal(firsts[0], firsts[1]) and not np.array_equal(firsts[1], firsts[2])
    assert all(np.array_equal(pairs.raw_pair(d * n + 2)[1], pairs.raw_pair(2)[1]) for d in range(3))
    assert len(SlicePairs(tmp_path / "three", info, [sid])) == n


def test_simulated_specimens_are_seeded_by_id_not_order(tmp_path):
    """The one seeding rule: a specimen's LR scan does not depend on the list it is in."""
    from microsr.data.simulated import phantom_specimens, simulate_pairs
    from microsr.io import read_volume

    specs = phantom_specimens(2, shape=(4, 32, 32))
    config = SimulationConfig(acquisition=AcquisitionConfig(quick=True), seed=5)
    simulate_pairs(specs, tmp_path / "ab", config)
    simulate_pairs(specs[::-1], tmp_path / "ba", config)
    simulate_pairs(specs[1:], tmp_path / "b", config)
    for sid in ("phantom00", "phantom01"):
        a = read_volume(tmp_path / "ab" / f"{sid}_lr.mha").array
        np.testing.assert_array_equal(a, read_volume(tmp_path / "ba" / f"{sid}_lr.mha").array)
    b = read_volume(tmp_path / "b" / "phantom01_lr.mha").array
    np.testing.assert_array_equal(b, read_volume(tmp_path / "ab" / "phantom01_lr.mha").array)
    other = simulate_pairs(specs, tmp_path / "seed6", config.model_copy(update={"seed": 6}))
    assert not np.array_equal(b, read_volume(other.parent / "phantom01_lr.mha").array)
