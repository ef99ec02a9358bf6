"""Batch prediction: manifests, --out-dir, skipping complete outputs, failures."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from conftest import save_model
from typer.testing import CliRunner

from microsr.cli import app
from microsr.data.normalize import NormalizationConfig
from microsr.errors import InputFileError, MicrosrError
from microsr.inference.batch import jobs_for_folder, predict_batch, read_predict_manifest
from microsr.io import read_volume, write_volume
from microsr.models.factory import ModelConfig
from microsr.volume import Volume


@pytest.fixture
def ckpt(tmp_path):
    norm = NormalizationConfig(mode="window", low=0.0, high=1.0)  # the scans' grey range
    return save_model(tmp_path / "m.ckpt", ModelConfig(width=4, depth=1), normalization=norm)


def _scans(tmp_path, n=3):
    rng = np.random.default_rng(1)
    return [
        write_volume(
            Volume(rng.random((3 + i, 7, 9)).astype(np.float32), (0.02,) * 3),
            tmp_path / f"scan{i}.mha",
        )
        for i in range(n)
    ]


def test_out_dir_batch_writes_all_then_skips_complete_outputs(tmp_path, ckpt):
    scans = _scans(tmp_path)
    jobs = jobs_for_folder(scans, tmp_path / "out", suffix=".tif")
    assert [j.output.name for j in jobs] == ["scan0.tif", "scan1.tif", "scan2.tif"]
    done = predict_batch(ckpt, jobs, device="cpu", progress=False)
    assert len(done["written"]) == 3 and not done["skipped"]
    assert read_volume(tmp_path / "out/scan2.tif").shape == (10, 14, 18)  # the HR grid
    (tmp_path / "out/scan1.tif").unlink()  # as if a run had been killed before scan1
    done = predict_batch(ckpt, jobs, device="cpu", progress=False)
    assert [p.name for p in done["written"]] == ["scan1.tif"] and len(done["skipped"]) == 2


def test_manifest_relative_paths_and_bad_rows(tmp_path, ckpt):
    _scans(tmp_path, 2)
    m = tmp_path / "jobs.csv"
    m.write_text("input,output\nscan0.mha,sr/a.mha\nscan1.mha,sr/b.nii.gz\n")
    jobs = read_predict_manifest(m)
    assert jobs[1].input == tmp_path / "scan1.mha" and jobs[1].output == tmp_path / "sr/b.nii.gz"
    predict_batch(ckpt, jobs, device="cpu", progress=False)
    assert read_volume(tmp_path / "sr/b.nii.gz").shape == (8, 14, 18)
    m.write_text("input,output\nscan0.mha,x.mha\nscan1.mha,x.mha\n")
    with pytest.raises(InputFileError, match="both be written to"):
        read_predict_manifest(m)
    m.write_text("in,out\na,b\n")
    with pytest.raises(InputFileError, match="input,output"):
        read_predict_manifest(m)


def test_a_bad_scan_does_not_stop_the_batch_but_fails_it(tmp_path, ckpt):
    scans = _scans(tmp_path, 2)
    bad = tmp_path / "bad.mha"
    bad.write_bytes(b"garbage")
    jobs = jobs_for_folder([scans[0], bad, scans[1]], tmp_path / "out")
    with pytest.raises(MicrosrError, match=r"1 of 3 scans failed:\n.*bad.mha"):
        predict_batch(ckpt, jobs, device="cpu", progress=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["scan0.mha", "scan1.mha"]


def test_cli_batch_and_usage_errors(tmp_path, ckpt):
    scans = _scans(tmp_path, 2)
    runner = CliRunner()
    args = ["predict", str(ckpt), *map(str, scans), "--out-dir", str(tmp_path / "o")]
    res = runner.invoke(app, [*args, "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "written: 2" in res.output
    res = runner.invoke(app, [*args, "--device", "cpu"])
    assert "skipped (already complete): 2" in res.output
    res = runner.invoke(app, ["predict", str(ckpt), str(scans[0])])
    assert res.exit_code == 2 and "use: microsr predict" in res.output


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from microsr import io as writer
    from microsr.volume import Volume

    target = writer.template((50, 64, 64), (0.01,) * 3, (0.0,) * 3)

    def slow():
        for _ in range(50):
            time.sleep(0.1)
            yield np.zeros((1, 64, 64), np.float32)

    writer.write_slices(target, slow(), sys.argv[1])
    """
)


@pytest.mark.parametrize("name", ["sr.tif", "sr.mha"])
def test_killed_writer_leaves_no_file_at_the_final_path(tmp_path, name):
    script = tmp_path / "w.py"
    script.write_text(KILL_SCRIPT)
    out = tmp_path / "out" / name
    proc = subprocess.Popen([sys.executable, str(script), str(out)])
    deadline = time.time() + 60
    while time.time() < deadline and not any((tmp_path / "out").glob(".microsr-tmp-*")):
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # only a hidden temporary, which a rerun ignores and replaces
    assert list((tmp_path / "out").glob(".microsr-tmp-*"))


def test_cli_precision_and_layout_options_reach_the_engine(tmp_path, ckpt):
    scan = _scans(tmp_path, 1)[0]
    runner = CliRunner()
    outs = {}
    for name, extra in {
        "fp32": ["--precision", "32", "--no-channels-last"],
        "bf16": ["--precision", "bf16"],
    }.items():
        out = tmp_path / f"{name}.tif"
        res = runner.invoke(
            app, ["predict", str(ckpt), str(scan), str(out), "--device", "cpu", *extra]
        )
        assert res.exit_code == 0, res.output
        outs[name] = read_volume(out)
    assert outs["fp32"].metadata["microsr_precision"] == "float32"
    assert outs["bf16"].metadata["microsr_precision"] == "bfloat16"
    width = 1.0  # the checkpoint's window: the range of values the model can output
    np.testing.assert_allclose(outs["bf16"].array, outs["fp32"].array, atol=0.01 * width)
    assert not np.array_equal(outs["bf16"].array, outs["fp32"].array)  # bf16 really ran
    res = runner.invoke(app, ["predict", str(ckpt), str(scan), str(tmp_path / "x.tif"),
                              "--precision", "64"])  # fmt: skip
    assert res.exit_code == 2 and "precision" in res.output
    assert not (tmp_path / "x.tif").exists()
