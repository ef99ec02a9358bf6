"""``predict --dask`` leaves no partial output, whatever fails (issue 35, bad input).

The store is filled as ``OUT.zarr.partial`` and renamed onto ``OUT.zarr`` once complete; a
failure microsr sees removes it. Each test lists the folder afterwards: only the inputs (and an
old output, byte for byte) may remain.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from conftest import make_pair, save_model

import microsr.inference.distributed as dist
from microsr.errors import InputFileError, MicrosrError
from microsr.io import read_volume, write_volume
from microsr.models.factory import ModelConfig
from microsr.volume import Volume


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A 2.5D model and an LR volume whose HR grid (80 slices) is 3 blocks of 32, 32, 16."""
    w = tmp_path_factory.mktemp("dask_in")
    lr, _ = make_pair(1, shape=(80, 20, 18))
    return write_volume(lr, w / "lr.mha"), save_model(
        w / "m.ckpt", ModelConfig(width=4, depth=1, in_channels=3)
    )


def _tree(folder):
    """``{relative path: sha256}`` of every file under ``folder`` (folders as ``None``)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_file()
        else None
        for p in sorted(folder.rglob("*"))
    }


def _fail_from_second_block(monkeypatch):
    """The model raises on every block but the first (also on Dask's retries)."""
    real = dist.predict_slices

    def predict_slices(loaded, source, *, zrange, **kw):
        if zrange[0] > 0:
            raise RuntimeError("model blew up")
        return real(loaded, source, zrange=zrange, **kw)

    monkeypatch.setattr(dist, "predict_slices", predict_slices)


def test_unreachable_scheduler_writes_nothing(inputs, tmp_path):
    lr_path, ckpt = inputs
    cfg = dist.DaskConfig(scheduler="tcp://127.0.0.1:1", connect_timeout_s=1)
    with pytest.raises(MicrosrError, match="cannot reach the scheduler.*nothing was written"):
        dist.predict_dask(ckpt, lr_path, tmp_path / "sr.ome.zarr", config=cfg)
    assert list(tmp_path.iterdir()) == []


def test_a_worker_failure_mid_run_writes_nothing(inputs, client, tmp_path, monkeypatch):
    lr_path, ckpt = inputs
    _fail_from_second_block(monkeypatch)
    cfg = dist.DaskConfig(block_slices=32, retries=1)
    with pytest.raises(MicrosrError, match="2 block.*failed after 1 retries.*nothing was written"):
        dist.predict_dask(ckpt, lr_path, tmp_path / "sr.zarr", client=client, config=cfg)
    assert list(tmp_path.iterdir()) == []  # no store, no .partial, no lock


def test_an_existing_output_is_untouched_by_a_failed_overwrite(
    inputs, client, tmp_path, monkeypatch
):
    lr_path, ckpt = inputs
    out = tmp_path / "sr.zarr"
    cfg = dist.DaskConfig(block_slices=32, retries=0)
    dist.predict_dask(ckpt, lr_path, out, client=client, config=cfg)
    before = _tree(tmp_path)
    with pytest.raises(InputFileError, match="--overwrite"):  # refused before any work
        dist.predict_dask(ckpt, lr_path, out, client=client, config=cfg)
    _fail_from_second_block(monkeypatch)
    with pytest.raises(MicrosrError, match="nothing was written"):
        dist.predict_dask(ckpt, lr_path, out, client=client, config=cfg, overwrite=True)
    assert _tree(tmp_path) == before


def test_a_successful_overwrite_replaces_the_store_whole(inputs, client, tmp_path):
    lr_path, ckpt = inputs
    out = tmp_path / "sr.zarr"
    write_volume(Volume(np.ones((10, 6, 6), np.float32), (0.1,) * 3), out)  # an older store
    cfg = dist.DaskConfig(block_slices=32)
    dist.predict_dask(ckpt, lr_path, out, client=client, config=cfg, overwrite=True)
    sr = read_volume(out)
    assert sr.shape == (80, 20, 18) and np.isfinite(sr.array).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sr.zarr"]


def test_a_bad_checkpoint_fails_before_the_scheduler_is_asked(inputs, tmp_path):
    lr_path, _ = inputs
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    cfg = dist.DaskConfig(scheduler="tcp://127.0.0.1:1", connect_timeout_s=30)
    with pytest.raises(MicrosrError, match=r"bad\.ckpt.*not a readable PyTorch checkpoint") as err:
        dist.predict_dask(bad, lr_path, tmp_path / "sr.zarr", config=cfg)
    assert "scheduler" not in str(err.value)  # the checkpoint's error, at once
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.ckpt"]


def test_a_straggler_block_does_not_recreate_a_discarded_store(tmp_path):
    """A block still running when its job gave up stops before writing a slab."""
    from microsr.io.omezarr import create_store
    from microsr.io.sink import template

    work = tmp_path / "sr.zarr.partial"
    create_store(work, template((32, 4, 4), (0.01,) * 3, (0.0,) * 3))  # no done-marker folder
    with pytest.raises(MicrosrError, match="abandoned"):
        dist._write_block(work, 0, iter([np.ones((32, 4, 4), np.float32)]))
    assert not [p for p in (work / "0").rglob("*") if not p.name.startswith(".z")]  # no chunk


@pytest.mark.slow
def test_cli_unreachable_scheduler_leaves_nothing(inputs, tmp_path):
    """The issue's command: a clear message, no ``OUT.ome.zarr/0/`` left (waits the 30 s
    connect timeout)."""
    from typer.testing import CliRunner

    from microsr.cli import app

    lr_path, ckpt = inputs
    out = tmp_path / "sr.ome.zarr"
    args = ["predict", str(ckpt), str(lr_path), str(out), "--dask", "tcp://127.0.0.1:1"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code != 0 and "cannot reach the scheduler" in res.output
    assert list(tmp_path.iterdir()) == []
