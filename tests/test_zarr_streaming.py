"""``convert``, ``simulate`` and ``evaluate`` stream OME-Zarr inputs slab by slab (issue 23).

Each is checked against the whole-volume path (the store read whole with ``read_volume``, or
the same volume as a MetaImage file): identical output or scores; and a recording reader checks that no read spans more than one
z chunk slab (32 slices) of a store three chunk slabs deep.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_pair
from typer.testing import CliRunner

import microsr.io.source as source_module
from microsr.calibration import to_units
from microsr.cli import app
from microsr.evaluation import evaluate_files
from microsr.io import read_volume, write_volume
from microsr.io.lazy import LazySlices, open_volume
from microsr.simulate import AcquisitionConfig, simulate_acquisition
from microsr.volume import Calibration, Volume, strided_sample

runner = CliRunner()
Z = 70  # three z chunk slabs of 32, the last partial


@pytest.fixture
def reads(monkeypatch):
    """The slice counts of every read from an OME-Zarr store, in order."""
    seen: list[int] = []
    opener = source_module.open_ome_zarr

    def recording(path):
        shape, dtype, header, read = opener(path)

        def read_and_record(start, stop):
            seen.append(stop - start)
            return read(start, stop)

        return shape, dtype, header, read_and_record

    monkeypatch.setattr(source_module, "open_ome_zarr", recording)
    return seen


def _hr(tmp_path, *, calibrated=False):
    rng = np.random.default_rng(3)
    a = rng.integers(0, 1000, (Z, 24, 20)).astype(np.uint16)
    a[:, 8:16, 6:14] += 2000  # contrast for the automatic attenuation reference
    cal = Calibration(2.0, -5.0) if calibrated else None
    v = Volume(a, (0.01, 0.01, 0.01), (1.0, 2.0, 3.0), cal, {"scan": "x"})
    return write_volume(v, tmp_path / "hr.zarr"), write_volume(v, tmp_path / "hr.mha")


def test_lazy_array_reads_only_the_slices_an_index_needs(tmp_path, reads):
    zarr_path, _ = _hr(tmp_path)
    whole = read_volume(zarr_path).array
    lazy = open_volume(zarr_path).array
    assert isinstance(lazy, LazySlices) and lazy.slab == 32 and lazy.dtype == np.uint16
    reads.clear()
    assert np.array_equal(lazy[40:45, 2:5], whole[40:45, 2:5])
    assert np.array_equal(lazy[np.array([7, 5, 9]), :3], whole[np.array([7, 5, 9]), :3])
    assert np.array_equal(lazy[-1], whole[-1]) and np.array_equal(lazy[60:], whole[60:])
    assert reads == [5, 5, 1, 10]
    assert np.array_equal(np.asarray(lazy), whole)  # explicitly whole: one read of all


def test_convert_streams_a_store_to_the_same_values(tmp_path, reads):
    zarr_path, _ = _hr(tmp_path, calibrated=True)
    for ext in ("zarr", "mha"):
        out = tmp_path / f"out.{ext}"
        res = runner.invoke(app, ["convert", str(zarr_path), str(out), "--units", "mgha"])
        assert res.exit_code == 0, res.output
        got = read_volume(out)
        # the whole-volume path: read whole, converted whole, written whole
        whole = to_units(read_volume(zarr_path), "mgha")
        want = read_volume(write_volume(whole, tmp_path / f"w.{ext}"))
        assert got.array.dtype == np.float32 and np.array_equal(got.array, want.array)
        assert got.calibration == want.calibration
        assert got.spacing_mm == want.spacing_mm and got.origin_mm == want.origin_mm
        drop = {"source"}
        assert {k: v for k, v in got.metadata.items() if k not in drop} == {
            k: v for k, v in want.metadata.items() if k not in drop
        }
    assert reads and max(reads) <= 32 and sum(reads) <= 2 * Z + 2  # each chunk slab once


def test_native_convert_keeps_the_stored_type(tmp_path):
    zarr_path, mha_path = _hr(tmp_path)
    res = runner.invoke(app, ["convert", str(zarr_path), str(tmp_path / "o.tif")])
    assert res.exit_code == 0, res.output
    got = read_volume(tmp_path / "o.tif").array
    assert got.dtype == np.uint16 and np.array_equal(got, read_volume(mha_path).array)


def test_strided_sample_matches_the_whole_volume(tmp_path):
    """The one voxel sample (:func:`microsr.volume.strided_sample`) is the same whether the
    volume is read lazily, slab by slab, or whole; the dataset records' sample is it."""
    from microsr.data.normalize import sample_voxels

    zarr_path, _ = _hr(tmp_path)
    lazy, whole = open_volume(zarr_path), read_volume(zarr_path)
    flat = whole.array.reshape(-1)
    want = flat[:: -(-flat.size // 997)].astype(np.float64)  # step 34: crosses slab edges
    assert np.array_equal(strided_sample(lazy.array, max_voxels=997, dtype=np.float64), want)
    assert np.array_equal(strided_sample(whole.array, max_voxels=997, dtype=np.float64), want)
    assert np.array_equal(sample_voxels(whole.array, max_voxels=997), want.astype(np.float32))
    assert np.array_equal(strided_sample(flat, max_voxels=997), want.astype(np.float32))  # 1D


@pytest.mark.parametrize("factor", [2, 3])
def test_simulate_streams_a_store_to_the_same_scan(tmp_path, reads, factor):
    zarr_path, _ = _hr(tmp_path)
    out = tmp_path / "lr.zarr"
    args = ["simulate", str(zarr_path), str(out), "--factor", str(factor), "--photons", "2000"]
    res = runner.invoke(app, [*args, "--projections-ratio", "0.3", "--seed", "4"])
    assert res.exit_code == 0, res.output
    config = AcquisitionConfig(factor=factor, photons=2000, projections_ratio=0.3, seed=4)
    want = simulate_acquisition(read_volume(zarr_path), config)
    got = read_volume(out)
    assert np.array_equal(got.array, want.array)
    assert got.spacing_mm == pytest.approx(want.spacing_mm)
    assert got.origin_mm == pytest.approx(want.origin_mm)
    resolved = want.metadata["acquisition_resolved"]
    assert got.metadata["acquisition_resolved"] == json.loads(json.dumps(resolved))
    # one pass for the attenuation reference, one for the scan, one chunk slab at a time
    assert max(reads) <= 32 and sum(reads) <= 2 * Z


def test_evaluate_streams_stores_to_the_same_scores(tmp_path, reads):
    lr, hr = make_pair(5, shape=(Z, 36, 36))
    sr = hr.with_array(hr.array + np.float32(7.0))
    paths = {}
    for kind, v in (("hr", hr), ("lr", lr), ("sr", sr)):
        paths[kind] = [write_volume(v, tmp_path / f"{kind}.{ext}") for ext in ("zarr", "mha")]
    stream = evaluate_files(*(paths[k][0] for k in ("hr", "lr", "sr")))[0]
    reads_seen = list(reads)
    whole = evaluate_files(*(paths[k][1] for k in ("hr", "lr", "sr")))[0]
    cols = [c for c in whole.slices.columns if c != "specimen"]
    assert np.array_equal(stream.slices[cols].to_numpy(), whole.slices[cols].to_numpy())
    assert json.dumps(stream.summary, default=str) == json.dumps(
        {**whole.summary, "specimen": stream.summary["specimen"]}, default=str
    )
    assert reads_seen and max(reads_seen) <= 32


@pytest.mark.parametrize("ext", ["nrrd", "nii.gz", "aim"])
def test_convert_a_store_to_formats_written_whole(tmp_path, ext):
    zarr_path, _ = _hr(tmp_path)
    res = runner.invoke(app, ["convert", str(zarr_path), str(tmp_path / f"o.{ext}")])
    assert res.exit_code == 0, res.output
    got = read_volume(tmp_path / f"o.{ext}")
    assert np.array_equal(got.array, read_volume(zarr_path).array)


def test_pyramid_is_built_one_chunk_slab_at_a_time(tmp_path, monkeypatch):
    import microsr.io.omezarr as omezarr

    depths: list[int] = []
    downsample = omezarr.downsample

    def recording(block, step, *, dtype):
        depths.append(len(block))
        return downsample(block, step, dtype=dtype)

    monkeypatch.setattr(omezarr, "downsample", recording)
    v = Volume(np.zeros((200, 8, 8), np.uint8), (0.01,) * 3)
    write_volume(v, tmp_path / "deep.zarr")
    assert sum(depths) == 200 and max(depths) <= 2 * 32  # level 1: 2 x its 32-slice chunk


@pytest.mark.parametrize(
    "settings", [{"quick": True}, {"shift_hr_voxels": (0.5, 0.0, -0.3), "photons": 1e4}]
)
def test_simulate_paths_that_read_whole_give_the_same_scan(tmp_path, settings):
    zarr_path, _ = _hr(tmp_path)
    config = AcquisitionConfig(factor=2, projections_ratio=0.3, seed=1, **settings)
    lazy = simulate_acquisition(open_volume(zarr_path), config)
    whole = simulate_acquisition(read_volume(zarr_path), config)
    assert np.array_equal(lazy.array, whole.array)
