"""End to end through the command line, as a user runs it (tiny, CPU, ~1 minute)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from microsr.cli import app
from microsr.data.splits import read_splits
from microsr.io import read_volume, write_volume
from microsr.volume import Volume


def microsr(*args, cwd):
    proc = subprocess.run(
        [sys.executable, "-m", "microsr", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        encoding="utf-8",  # not the locale's: the CLI prints non-ASCII (e.g. progress bars)
        errors="replace",
        timeout=600,
    )
    assert proc.returncode == 0, (
        f"microsr {' '.join(map(str, args))} failed:\n{proc.stderr[-3000:]}"
    )
    return proc.stdout


@pytest.mark.slow
def test_whole_pipeline_through_the_cli(tmp_path):
    rows = ["specimen,site,lr_path,hr_path"]
    for i in range(4):
        microsr("phantom", f"hr{i}.mha", "--shape", 8, 48, 48, "--seed", i, cwd=tmp_path)
        microsr("simulate", f"hr{i}.mha", f"lr{i}.mha", "--seed", i, cwd=tmp_path)
        rows.append(f"p{i},femur,lr{i}.mha,hr{i}.mha")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    microsr("prepare", "manifest.csv", "ds", "--roi", 32, cwd=tmp_path)
    microsr(
        "train",
        "ds",
        "run",
        "--epochs",
        2,
        "--width",
        4,
        "--depth",
        2,
        "--patch",
        16,
        "--batch-size",
        4,
        "--device",
        "cpu",
        "--seed",
        1,
        cwd=tmp_path,
    )
    assert (tmp_path / "run/best.ckpt").is_file() and (tmp_path / "run/last.ckpt").is_file()
    test_id = read_splits(tmp_path / "ds/splits.json").test[0]
    i = int(test_id[1:])
    microsr("predict", "run/best.ckpt", f"lr{i}.mha", "sr.nii.gz", "--device", "cpu", cwd=tmp_path)
    lr, sr = read_volume(tmp_path / f"lr{i}.mha"), read_volume(tmp_path / "sr.nii.gz")
    assert sr.shape == (8, 48, 48) and sr.spacing_mm == pytest.approx((0.01, 0.01, 0.01))
    assert lr.shape == (4, 24, 24)
    out = microsr(
        "evaluate",
        "--hr",
        f"hr{i}.mha",
        "--lr",
        f"lr{i}.mha",
        "--sr",
        "sr.nii.gz",
        "ev",
        cwd=tmp_path,
    )
    summary = json.loads((tmp_path / "ev/summary.json").read_text())
    assert {"psnr_lr", "psnr_sr", "ssim_lr", "ssim_sr", "n_slices"} <= set(summary)
    assert summary["n_slices"] == 8 and "PSNR LR" in out  # every HR slice
    microsr("evaluate", "ds", "run", "ev2", cwd=tmp_path)
    assert json.loads((tmp_path / "ev2/summary.json").read_text())["per_specimen"].keys() == {
        test_id
    }


runner = CliRunner()


def test_missing_input_is_one_clear_error(tmp_path):
    res = runner.invoke(app, ["simulate", str(tmp_path / "nope.mha"), str(tmp_path / "out.mha")])
    assert res.exit_code == 2
    assert "nope.mha" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "out.mha").exists()


def test_plain_tiff_needs_spacing(tmp_path):
    import tifffile

    plain = np.zeros((4, 16, 16), np.uint8)
    plain[:, 4:12, 4:12] = 200  # contrast: the automatic attenuation reference needs some
    tifffile.imwrite(tmp_path / "plain.tif", plain)
    res = runner.invoke(
        app, ["simulate", str(tmp_path / "plain.tif"), str(tmp_path / "lr.tif"), "--quick"]
    )
    assert res.exit_code == 2 and "spacing" in res.output
    res = runner.invoke(
        app,
        [
            "simulate",
            str(tmp_path / "plain.tif"),
            str(tmp_path / "lr.tif"),
            "--quick",
            "--spacing",
            "0.01",
        ],
    )
    assert res.exit_code == 0, res.output
    assert read_volume(tmp_path / "lr.tif").spacing_mm == pytest.approx((0.02,) * 3)


def test_nan_voxels_are_refused_and_input_untouched(tmp_path):
    arr = np.ones((4, 16, 16), np.float32)
    arr[1, 2, 3] = np.nan
    src = write_volume(Volume(arr, (0.01,) * 3), tmp_path / "nan.mha")
    before = src.read_bytes()
    res = runner.invoke(app, ["simulate", str(src), str(tmp_path / "out.mha")])
    assert res.exit_code == 2 and "nan.mha" in res.output
    assert src.read_bytes() == before and not (tmp_path / "out.mha").exists()


def test_bad_spacing_and_bad_manifest(tmp_path):
    res = runner.invoke(app, ["simulate", "a.mha", "b.mha", "--spacing", "abc"])
    assert res.exit_code == 2 and "--spacing" in res.output
    (tmp_path / "m.csv").write_text("specimen,site\n")
    res = runner.invoke(app, ["prepare", str(tmp_path / "m.csv"), str(tmp_path / "ds")])
    assert res.exit_code == 2 and "missing column" in res.output and not (tmp_path / "ds").exists()


def test_invalid_option_values_name_the_option(tmp_path):
    res = runner.invoke(
        app, ["train", str(tmp_path / "ds"), str(tmp_path / "run"), "--epochs", "0"]
    )
    assert (
        res.exit_code == 2
        and "--epochs 0: Input should be greater than or equal to 1" in res.output
    )
    res = runner.invoke(app, ["prepare", "m.csv", str(tmp_path / "ds"), "--window", "5", "5"])
    assert res.exit_code == 2 and "--window" in res.output and "LOW < HIGH" in res.output
    assert not (tmp_path / "run").exists() and not (tmp_path / "ds").exists()
