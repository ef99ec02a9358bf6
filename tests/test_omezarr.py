"""OME-Zarr read/write (microsr.io.omezarr) and one volume predicted across Dask workers."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest
import zarr
from conftest import make_pair, save_model

from microsr.errors import InputFileError, MicrosrError
from microsr.io import open_slices, read_volume, write_volume
from microsr.io.omezarr import downsample, level_factors
from microsr.models.factory import ModelConfig
from microsr.volume import Calibration, Volume


def _volume(shape=(37, 70, 45), dtype=np.uint16) -> Volume:
    a = (np.arange(np.prod(shape)) % 1000).reshape(shape).astype(dtype)
    return Volume(a, (0.02, 0.01, 0.015), (1.0, 2.0, 3.0), Calibration(2.0, -5.0), {"scan": "x"})


def test_round_trip_keeps_voxels_geometry_and_calibration(tmp_path):
    v = _volume()
    path = write_volume(v, tmp_path / "a.ome.zarr")
    r = read_volume(path)
    assert r.array.dtype == np.uint16 and np.array_equal(r.array, v.array)
    assert r.spacing_mm == v.spacing_mm and r.origin_mm == v.origin_mm
    assert r.calibration == v.calibration and r.metadata["scan"] == "x"
    src = open_slices(path)  # streamed, not read whole
    assert src.streamed and np.array_equal(src.read(33, 37), v.array[33:37].astype(np.float32))
    level0 = zarr.open_group(str(path), mode="r")["0"]
    assert level0.chunks == (32, 70, 45)  # z chunk 32 (a 37-slice volume: 2 chunk slabs)
    assert "zstd" in str(level0.compressors)
    assert not list(tmp_path.glob(".microsr-tmp-*"))


def test_ome_zarr_reader_sees_the_pyramid_and_scales(tmp_path):
    """An outside reader (ome-zarr-py, what napari-ome-zarr uses) opens the store."""
    from ome_zarr.format import FormatV04
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    v = _volume()
    path = write_volume(v, tmp_path / "a.ome.zarr")
    node = next(iter(Reader(parse_url(str(path), fmt=FormatV04()))()))
    assert node.load(Multiscales) is not None
    shapes = [tuple(d.shape) for d in node.data]
    assert shapes == [(37, 70, 45), (19, 35, 23)]
    ct = node.metadata["coordinateTransformations"]
    assert ct[0] == [{"type": "scale", "scale": [0.02, 0.01, 0.015]},
                     {"type": "translation", "translation": [1.0, 2.0, 3.0]}]  # fmt: skip
    assert ct[1][0]["scale"] == pytest.approx([0.04, 0.02, 0.03])
    # level 1's voxel centre: the centre of the 2 x 2 x 2 block it averages
    assert ct[1][1]["translation"] == pytest.approx([1.01, 2.005, 3.0075])
    assert [a["unit"] for a in node.metadata["axes"]] == ["millimeter"] * 3
    block = np.asarray(node.data[1][:2, :2, :2])
    assert block[0, 0, 0] == round(v.array[:2, :2, :2].astype(float).mean())


def test_ome_zarr_info_lists_the_levels(tmp_path, capsys):
    from ome_zarr.cli import main

    path = write_volume(_volume(), tmp_path / "a.ome.zarr")
    main(["info", str(path)])
    out = capsys.readouterr().out
    assert "version: 0.4" in out and "(37, 70, 45)" in out and "(19, 35, 23)" in out


def test_downsample_is_the_block_mean_with_edge_padding():
    a = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    d = downsample(a, (2, 2, 2), dtype=np.float32)
    assert d.shape == (2, 2, 2)
    assert d[0, 0, 0] == a[:2, :2, :2].mean()
    assert d[1, 1, 1] == a[2, 2, 2]  # the padded corner block: one voxel replicated
    assert level_factors((1, 500, 500))[1] == (1, 2, 2)  # one slice: z is not halved
    assert len(level_factors((4, 8, 8))) == 2  # at least 2 levels, even when tiny


def test_store_without_ome_metadata_or_spacing_is_one_message(tmp_path):
    plain = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w", zarr_format=2)
    plain.create_array("0", shape=(2, 3, 4), dtype="uint8")
    with pytest.raises(InputFileError, match="no OME 'multiscales' metadata$"):
        read_volume(tmp_path / "plain.zarr")
    path = write_volume(_volume((4, 8, 8)), tmp_path / "b.zarr")
    group = zarr.open_group(str(path), mode="r+")
    ms = group.attrs["multiscales"]
    ms[0]["datasets"][0]["coordinateTransformations"] = [{"type": "identity"}]
    group.attrs["multiscales"] = ms
    with pytest.raises(InputFileError, match="no voxel spacing"):
        read_volume(path)
    assert read_volume(path, spacing_mm=0.05).spacing_mm == (0.05,) * 3


# --- one volume across Dask workers ---------------------------------------------------------


@pytest.fixture(scope="module")
def lr_and_model(tmp_path_factory):
    """A 2.5D model and an LR volume whose HR grid (80 slices) is 3 blocks of 32, 32 and 16."""
    w = tmp_path_factory.mktemp("dask")
    lr, _ = make_pair(0, shape=(80, 24, 22))
    lr_path = write_volume(lr, w / "lr.mha")
    ckpt = save_model(w / "m.ckpt", ModelConfig(width=4, depth=1, in_channels=3))
    return lr_path, ckpt


@pytest.fixture(scope="module")
def reference(lr_and_model, tmp_path_factory):
    from microsr.inference.predict import predict_file

    lr_path, ckpt = lr_and_model
    out = tmp_path_factory.mktemp("ref") / "sr.zarr"
    predict_file(ckpt, lr_path, out, device="cpu", progress=False)
    return read_volume(out)


def _levels(path):
    group = zarr.open_group(str(path), mode="r")
    return [
        np.asarray(group[str(i)][:]) for i in range(len(group.attrs["multiscales"][0]["datasets"]))
    ]


def test_dask_prediction_equals_single_process_exactly(lr_and_model, reference, client, tmp_path):
    from microsr.inference.distributed import DaskConfig, predict_dask

    lr_path, ckpt = lr_and_model
    out = predict_dask(ckpt, lr_path, tmp_path / "sr.zarr", client=client,
                       config=DaskConfig(block_slices=32))  # fmt: skip
    sr = read_volume(out)
    assert sr.shape == reference.shape == (80, 24, 22)
    assert np.array_equal(sr.array, reference.array)  # bit for bit, block edges included
    assert (sr.spacing_mm, sr.origin_mm) == (reference.spacing_mm, reference.origin_mm)
    ref_store = reference.metadata["source"]
    for a, b in zip(_levels(out), _levels(ref_store)):
        assert np.array_equal(a, b)
    assert not (out / ".microsr-done").exists() and not (tmp_path / "sr.zarr.lock").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sr.zarr"]  # no work store left
    assert "microsr_plan" not in zarr.open_group(str(out), mode="r").attrs


def test_a_block_that_fails_once_is_redone(lr_and_model, reference, client, tmp_path, monkeypatch):
    import microsr.inference.distributed as dist

    calls: list[int] = []
    real = dist._write_block

    def flaky(out, start, srs):
        calls.append(start)
        if start == 32 and calls.count(32) == 1:
            next(iter(srs))  # die mid-block, after computing part of it
            raise OSError("worker lost")
        real(out, start, srs)

    monkeypatch.setattr(dist, "_write_block", flaky)
    lr_path, ckpt = lr_and_model
    out = dist.predict_dask(ckpt, lr_path, tmp_path / "sr.zarr", client=client,
                            config=dist.DaskConfig(block_slices=32, retries=1))  # fmt: skip
    assert sorted(calls) == [0, 32, 32, 64]
    assert np.array_equal(read_volume(out).array, reference.array)


def test_killed_job_resumes_and_skips_finished_blocks(
    lr_and_model, reference, client, tmp_path, monkeypatch
):
    """A job killed outright leaves its work store; a rerun of the same plan resumes it."""
    import microsr.inference.distributed as dist

    lr_path, ckpt = lr_and_model
    out, calls = tmp_path / "sr.zarr", []
    work = dist.work_path(out)
    real = dist._write_block

    def broken(o, start, srs):
        calls.append(start)
        if start == 64:
            raise OSError("node gone")
        real(o, start, srs)

    monkeypatch.setattr(dist, "_write_block", broken)
    monkeypatch.setattr(dist, "_discard", lambda path: None)  # killed: no cleanup ran
    cfg = dist.DaskConfig(block_slices=32, retries=0)
    with pytest.raises(MicrosrError, match="failed after 0 retries"):
        dist.predict_dask(ckpt, lr_path, out, client=client, config=cfg)
    assert not out.exists() and work.is_dir()  # the target never holds a partial store
    assert not (tmp_path / "sr.zarr.lock").exists()
    monkeypatch.undo()
    with pytest.raises(InputFileError, match="another input"):  # another plan: refused, kept
        dist.predict_dask(ckpt, lr_path, out, client=client,
                          config=dist.DaskConfig(block_slices=64))  # fmt: skip
    assert work.is_dir() and not out.exists()
    calls.clear()
    monkeypatch.setattr(dist, "_write_block", lambda o, s, srs: (calls.append(s), real(o, s, srs)))
    dist.predict_dask(ckpt, lr_path, out, client=client, config=cfg)
    assert calls == [64]  # blocks 0 and 32 were finished: skipped
    assert np.array_equal(read_volume(out).array, reference.array) and not work.exists()
    with pytest.raises(InputFileError, match="--overwrite"):  # a finished store is not redone
        dist.predict_dask(ckpt, lr_path, out, client=client, config=cfg)


def test_a_store_locked_by_another_job_is_refused(lr_and_model, tmp_path):
    from microsr.inference.distributed import predict_dask

    lr_path, ckpt = lr_and_model
    lock = tmp_path / "sr.zarr.lock"
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getppid()}))
    with pytest.raises(InputFileError, match="being written by another job"):
        predict_dask(ckpt, lr_path, tmp_path / "sr.zarr", config=None)
    assert lock.exists() and not (tmp_path / "sr.zarr").exists()
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": 999999999}))
    from microsr.io.store_lock import store_lock

    with store_lock(tmp_path / "sr.zarr"):  # a dead process's lock is taken over
        assert str(os.getpid()) in lock.read_text()
    assert not lock.exists()


@pytest.mark.slow
def test_cli_predict_dask_with_worker_processes(lr_and_model, reference, tmp_path):
    """The real path: `microsr predict --dask local:2` spawns worker processes (pickled jobs,
    one model per process); torch threads differ there, so equal up to float rounding."""
    from typer.testing import CliRunner

    from microsr.cli import app

    lr_path, ckpt = lr_and_model
    out = tmp_path / "sr.ome.zarr"
    args = ["predict", str(ckpt), str(lr_path), str(out), "--dask", "local:2", "--block-slices",
            "32", "--device", "cpu"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    np.testing.assert_allclose(read_volume(out).array, reference.array, rtol=0, atol=1e-3)
