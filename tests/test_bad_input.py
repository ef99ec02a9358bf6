"""Bad and adversarial input through the CLI, one row per case (issue: never lose data).

Every case must give exit code 2, one ``error:`` message naming the problem, no
traceback, leave every input byte-for-byte unchanged and leave nothing new behind.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from conftest import make_pair, save_model
from typer.testing import CliRunner

from microsr.cli import app
from microsr.data.manifest import SpecimenRow, write_manifest
from microsr.data.prepare import PrepareConfig, prepare_dataset
from microsr.io import write_volume
from microsr.models.factory import ModelConfig
from microsr.simulate import AcquisitionConfig, make_phantom, simulate_acquisition
from microsr.volume import Volume

runner = CliRunner()


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """Inputs shared by every case (they must never change)."""
    w = tmp_path_factory.mktemp("inputs")
    rows = []
    for i in range(4):
        lr, hr = make_pair(i, shape=(8, 32, 32))
        rows.append(
            SpecimenRow(
                f"s{i}",
                "femur",
                write_volume(lr, w / f"lr{i}.mha"),
                write_volume(hr, w / f"hr{i}.mha"),
            )
        )
    write_manifest(rows, w / "manifest.csv")
    prepare_dataset(w / "manifest.csv", w / "ds", PrepareConfig(roi=24))
    ckpt = save_model(w / "model.ckpt", ModelConfig(width=4, depth=1))
    raw = torch.load(ckpt, weights_only=False)
    for key, value in raw["state_dict"].items():
        if value.is_floating_point():
            raw["state_dict"][key] = torch.full_like(value, float("nan"))
    torch.save(raw, w / "nan.ckpt")
    raw = torch.load(ckpt, weights_only=False)
    raw["microsr"]["factor"] = 0
    torch.save(raw, w / "factor0.ckpt")
    raw["microsr"]["factor"] = 3
    torch.save(raw, w / "factor3.ckpt")
    (w / "badacq.json").write_text('{"format": "microsr-acquisition", "version": 1,')
    (w / "newacq.json").write_text(
        '{"format": "microsr-acquisition", "version": 99, "acquisition": {"future": 1}}'
    )
    raw = torch.load(ckpt, weights_only=False)  # trained on 0.02 mm LR for a 0.01 mm target
    raw["microsr"].update(lr_spacing_mm=[0.02] * 3, hr_spacing_mm=[0.01] * 3)
    torch.save(raw, w / "spaced.ckpt")
    raw["microsr"]["units"] = {"kind": "mgha"}  # a model in mg HA/cm3
    torch.save(raw, w / "mgha.ckpt")
    write_volume(make_pair(9, shape=(32, 96, 96))[0], w / "big_lr.mha")  # SR: 1.2 MB
    (w / "badbytes.csv").write_bytes(
        b"specimen,site,lr_path,hr_path\ns\xff0,femur,lr0.mha,hr0.mha\n"
    )
    (w / "extra.csv").write_text("specimen,site,lr_path,hr_path\ns0,femur,lr0.mha,hr0.mha,oops\n")
    (w / "escape.csv").write_text(
        "specimen,site,lr_path,hr_path\n../../etc,femur,lr0.mha,hr0.mha\n"
    )
    tifffile.imwrite(w / "empty.tif", np.zeros((0, 16, 16), np.uint8))
    (w / "empty.mha").write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 16 16 0\nElementType = MET_UCHAR\n"
        "ElementSpacing = 0.01 0.01 0.01\nElementDataFile = LOCAL\n"
    )
    (w / "cut.mha").write_bytes((w / "lr0.mha").read_bytes()[:-500])
    write_volume(Volume(np.full((4, 16, 16), 7.0, np.float32), (0.02,) * 3), w / "flat.mha")
    for name, values in (("nonbinary", [0, 1, 2]), ("nobone", [0]), ("allbone", [1]),
                         ("nospacing", [0, 1])):  # fmt: skip
        mask = np.resize(np.array(values, np.uint8), (8, 8, 8))
        spacing = (1.0,) * 3 if name == "nospacing" else (0.05,) * 3
        write_volume(Volume(mask, spacing), w / f"mask_{name}.nrrd")
    (w / "afile.txt").write_text("not a folder")
    _fit_inputs(w)
    return w


def _fit_inputs(w: Path) -> None:
    """fit-acquisition: a scan too small, one with bone everywhere (no flat marrow), one
    without bone."""
    rng = np.random.default_rng(0)
    write_volume(Volume(rng.normal(100, 5, (1, 16, 16)).astype(np.float32), (0.02,) * 3),
                 w / "tiny_lr.mha")  # fmt: skip
    stripes = np.where(np.arange(64) % 8 < 4, 1000.0, 100.0)[None, None, :]
    busy = np.broadcast_to(stripes, (4, 64, 64)) + rng.normal(0, 20, (4, 64, 64))
    write_volume(Volume(busy.astype(np.float32), (0.02,) * 3), w / "busy_lr.mha")
    noise = rng.normal(100, 5, (4, 48, 48)).astype(np.float32)
    write_volume(Volume(noise, (0.02,) * 3), w / "noise_lr.mha")
    # references: HR bone at the scan's voxel / 2, the same at 0.013 mm, noise without bone
    bone = make_phantom((4, 64, 64), spacing_mm=0.01, seed=1)
    write_volume(bone, w / "ref_hr.mha")
    write_volume(bone.with_array(bone.array, spacing_mm=(0.013,) * 3), w / "ref_coarse.mha")
    flat = rng.normal(100, 5, (4, 64, 64)).astype(np.float32)
    write_volume(Volume(flat, (0.01,) * 3), w / "ref_flat.mha")
    lr = simulate_acquisition(bone, AcquisitionConfig(photons=5000))
    write_volume(lr, w / "fit_lr.mha")


def _damaged_dataset(ws: Path, out: Path, how: str) -> Path:
    ds = out / "ds"
    shutil.copytree(ws / "ds", ds)
    for target in ds.rglob("hr.npy"):  # every specimen, whichever split it is in
        if how == "missing":
            target.unlink()
        else:
            target.write_bytes(target.read_bytes()[:-200])
    return ds


def _folder_with_user_files(ws: Path, out: Path) -> Path:
    proj = out / "proj"
    (proj / "raw").mkdir(parents=True)
    (proj / "raw/scan1.txt").write_text("a")
    (proj / "README.txt").write_text("b")
    return proj


def _symlink_to_input(ws: Path, out: Path) -> Path:
    link = out / "link.mha"
    link.symlink_to(ws / "lr0.mha")
    return link


def _zarr_without_ome(ws: Path, out: Path) -> Path:
    import zarr

    group = zarr.open_group(str(out / "plain.zarr"), mode="w", zarr_format=2)
    group.create_array("0", shape=(4, 16, 16), dtype="uint8")
    return out / "plain.zarr"


def _zarr_without_spacing(ws: Path, out: Path) -> Path:
    import zarr

    path = write_volume(Volume(np.ones((4, 16, 16), np.uint8), (0.02,) * 3), out / "a.zarr")
    group = zarr.open_group(str(path), mode="r+")
    ms = group.attrs["multiscales"]
    for ds in ms[0]["datasets"]:
        ds["coordinateTransformations"] = [{"type": "identity"}]
    group.attrs["multiscales"] = ms
    return path


def _zarr_with_nan_late(ws: Path, out: Path) -> Path:
    """A float32 store whose NaN voxel sits in its second z chunk (found while streaming)."""
    a = np.ones((40, 16, 16), np.float32)
    a[:, 4:8, 4:8] = 900.0  # contrast for simulate's attenuation reference
    a[37, 3, 3] = np.nan
    return write_volume(Volume(a, (0.02,) * 3), out / "nan.zarr")


def _locked_store(ws: Path, out: Path) -> Path:
    import json
    import os
    import socket

    lock = out / "sr.zarr.lock"  # held by this (live) process
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    return out / "sr.zarr"


def _sr_off_the_hr_box(ws: Path, out: Path) -> Path:
    from microsr.io import read_volume

    hr = read_volume(ws / "hr0.mha")
    return write_volume(hr.with_array(np.asarray(hr.array)[:, :24]), out / "sr.mha")


def _hr_as_lr_manifest(ws: Path, out: Path) -> Path:
    rows = [SpecimenRow(f"s{i}", "femur", ws / f"hr{i}.mha", ws / f"hr{i}.mha") for i in range(3)]
    return write_manifest(rows, out / "same.csv")


def _tiny_tmpfs(ws: Path, out: Path) -> Path:
    """A 64 KiB tmpfs in ``out`` (skipped where the tests may not mount one)."""
    mnt = out / "tiny"
    mnt.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                              capture_output=True, timeout=20)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    return mnt


def _unmount(mnt: Path) -> None:
    subprocess.run(["umount", str(mnt)], capture_output=True, timeout=20)


@dataclass
class Case:
    name: str
    args: list[str]  # {w}: the shared inputs, {o}: this case's own folder
    message: str  # a fragment the one error message must hold
    setup: object = None  # optional callable(ws, out) -> Path, available as {s}
    teardown: object = None  # optional callable(setup's path), after the checks


CASES = [
    # data loss: existing folders, outputs that are inputs
    Case("convert into a folder of user files", ["convert", "{w}/lr0.mha", "{s}"], "not empty",
         _folder_with_user_files),
    Case("predict into a folder of user files",
         ["predict", "{w}/model.ckpt", "{w}/lr0.mha", "{s}"], "not empty", _folder_with_user_files),
    Case("predict output is its input", ["predict", "{w}/model.ckpt", "{w}/lr0.mha", "{w}/lr0.mha"],
         "input"),
    Case("predict output is its input via ..",
         ["predict", "{w}/model.ckpt", "{w}/lr0.mha", "{w}/ds/../lr0.mha"], "input"),
    Case("predict output is a symlink to its input",
         ["predict", "{w}/model.ckpt", "{w}/lr0.mha", "{s}"], "input", _symlink_to_input),
    Case("convert output is its input", ["convert", "{w}/lr0.mha", "{w}/lr0.mha"], "input"),
    Case("simulate output is its input", ["simulate", "{w}/hr0.mha", "{w}/hr0.mha", "--quick"],
         "input"),
    Case("existing output file needs --overwrite",
         ["convert", "{w}/lr0.mha", "{w}/lr1.mha"], "--overwrite"),
    Case("specimen id escapes the dataset", ["prepare", "{w}/escape.csv", "{o}/ds"], "../../etc"),
    # model sanity
    Case("checkpoint with NaN weights", ["predict", "{w}/nan.ckpt", "{w}/lr0.mha", "{o}/sr.mha"],
         "NaN or Inf"),
    Case("checkpoint with factor 0", ["predict", "{w}/factor0.ckpt", "{w}/lr0.mha", "{o}/sr.mha"],
         "factor"),
    # unwritable outputs (a file where a folder should be: fails even as root)
    Case("predict, unwritable output",
         ["predict", "{w}/model.ckpt", "{w}/lr0.mha", "{w}/afile.txt/sr.mha"], "afile.txt"),
    Case("prepare, unwritable output", ["prepare", "{w}/manifest.csv", "{w}/afile.txt/ds"],
         "afile.txt"),
    Case("train, unwritable output", ["train", "{w}/ds", "{w}/afile.txt/run"], "afile.txt"),
    Case("evaluate, unwritable output",
         ["evaluate", "{w}/afile.txt/ev", "--hr", "{w}/hr0.mha", "--lr", "{w}/lr0.mha"],
         "afile.txt"),
    Case("morphometry, unwritable output", ["morphometry", "{w}/hr0.mha", "{w}/afile.txt/m"],
         "afile.txt"),
    # damaged datasets leave no half-made run folder
    Case("train on a dataset with a missing .npy", ["train", "{s}", "{o}/run"], "hr.npy",
         lambda ws, out: _damaged_dataset(ws, out, "missing")),
    Case("train on a dataset with a truncated .npy", ["train", "{s}", "{o}/run"], "hr.npy",
         lambda ws, out: _damaged_dataset(ws, out, "truncated")),
    Case("evaluate a dataset with a truncated .npy",
         ["evaluate", "{s}", "{w}/model.ckpt", "{o}/ev", "--device", "cpu"], "hr.npy",
         lambda ws, out: _damaged_dataset(ws, out, "truncated")),
    Case("evaluate --split foo",
         ["evaluate", "{w}/ds", "{w}/model.ckpt", "{o}/ev", "--split", "foo"], "--split"),
    # manifests
    Case("manifest with non-UTF-8 bytes (prepare)", ["prepare", "{w}/badbytes.csv", "{o}/ds"],
         "UTF-8"),
    Case("manifest with non-UTF-8 bytes (study)", ["study", "{w}/badbytes.csv", "{o}/st"],
         "UTF-8"),
    Case("manifest with non-UTF-8 bytes (predict)",
         ["predict", "{w}/model.ckpt", "--manifest", "{w}/badbytes.csv"], "UTF-8"),
    Case("manifest row with extra columns", ["prepare", "{w}/extra.csv", "{o}/ds"], "column"),
    # options and volumes
    Case("prepare --roi 0", ["prepare", "{w}/manifest.csv", "{o}/ds", "--roi", "0"], "--roi"),
    Case("train --context -1", ["train", "{w}/ds", "{o}/run", "--context", "-1"], "--context"),
    Case("0-slice TIFF (predict)", ["predict", "{w}/model.ckpt", "{w}/empty.tif", "{o}/sr.mha",
                                    "--spacing", "0.02"], "0 slices"),
    Case("0-slice TIFF (convert)", ["convert", "{w}/empty.tif", "{o}/x.mha", "--spacing", "0.02"],
         "0 slices"),
    Case("0-slice MHA", ["convert", "{w}/empty.mha", "{o}/x.mha"], "no voxels"),
    Case("truncated MHA", ["convert", "{w}/cut.mha", "{o}/x.mha"], "truncated"),
    Case("unknown output extension", ["predict", "{w}/model.ckpt", "{w}/lr0.mha", "{o}/sr.xyz"],
         ".xyz"),
    Case("register a constant LR", ["register", "{w}/flat.mha", "{w}/hr0.mha"], "constant"),
    # OME-Zarr stores and predict --dask
    Case("Zarr store without OME metadata", ["convert", "{s}", "{o}/x.mha"], "multiscales",
         _zarr_without_ome),
    Case("OME-Zarr store without spacing", ["convert", "{s}", "{o}/x.mha"], "no voxel spacing",
         _zarr_without_spacing),
    Case("convert a .zarr with NaN in a late chunk (streamed)",
         ["convert", "{s}", "{o}/x.zarr"], "NaN or Inf", _zarr_with_nan_late),
    Case("simulate a .zarr with NaN in a late chunk (streamed)",
         ["simulate", "{s}", "{o}/x.zarr"], "NaN or Inf", _zarr_with_nan_late),
    Case("predict --dask into a store locked by another job",
         ["predict", "{w}/model.ckpt", "{w}/lr0.mha", "{s}", "--dask", "local:1"],
         "another job", _locked_store),
    Case("convert onto a .zarr folder of user files",
         ["convert", "{w}/lr0.mha", "{s}", "--overwrite"], "not a Zarr store",
         lambda ws, out: _folder_with_user_files(ws, out).rename(out / "proj.zarr")),
    Case("predict --dask into a non-Zarr output",
         ["predict", "{w}/model.ckpt", "{w}/lr0.mha", "{o}/sr.mha", "--dask", "local:1"], ".zarr"),
    Case("more folds than subjects", ["study", "{w}/manifest.csv", "{o}/st", "--folds", "9"],
         "more than the 4 subjects"),
    Case("study-demo --masks with --data", ["study-demo", "{o}/d", "--masks", "{w}",
                                            "--data", "{w}/hr0.mha"], "--masks goes alone"),
    # grey HR scans from masks (phantom --from-mask)
    Case("mask not binary", ["phantom", "{o}/g.mha", "--from-mask", "{w}/mask_nonbinary.nrrd"],
         "not a binary mask"),
    Case("mask without bone", ["phantom", "{o}/g.mha", "--from-mask", "{w}/mask_nobone.nrrd"],
         "empty mask"),
    Case("mask all bone", ["phantom", "{o}/g.mha", "--from-mask", "{w}/mask_allbone.nrrd"],
         "all bone"),
    Case("mask without spacing", ["phantom", "{o}/g.mha", "--from-mask",
                                  "{w}/mask_nospacing.nrrd"], "--spacing"),
    # fit-acquisition
    Case("fit-acquisition, scan too small",
         ["fit-acquisition", "{w}/tiny_lr.mha", "{o}/a.json", "--reference", "{w}/ref_hr.mha"], "too small"),
    Case("fit-acquisition, no flat region",
         ["fit-acquisition", "{w}/busy_lr.mha", "{o}/a.json", "--reference", "{w}/ref_hr.mha"], "no flat region"),
    Case("fit-acquisition, noise without bone",
         ["fit-acquisition", "{w}/noise_lr.mha", "{o}/a.json", "--reference", "{w}/ref_hr.mha"],
         "bone and marrow are not told apart"),
    Case("fit-acquisition without --reference",
         ["fit-acquisition", "{w}/fit_lr.mha", "{o}/a.json"], "needs --reference: an HR scan"),
    Case("fit-acquisition, reference at another voxel size",
         ["fit-acquisition", "{w}/fit_lr.mha", "{o}/a.json", "--reference",
          "{w}/ref_coarse.mha"], "voxel size 0.013 mm is not the scan's 0.02 mm / factor 2"),
    Case("fit-acquisition, reference without bone",
         ["fit-acquisition", "{w}/fit_lr.mha", "{o}/a.json", "--reference",
          "{w}/ref_flat.mha"], "not bone-like"),
    # fine-tuning (train --init) from a checkpoint that does not fit
    Case("train --init, checkpoint of another factor",
         ["train", "{w}/ds", "{o}/run", "--init", "{w}/factor3.ckpt"], "scale factors"),
    Case("train --init, another model than the checkpoint's",
         ["train", "{w}/ds", "{o}/run", "--init", "{w}/model.ckpt", "--model", "rcan"],
         "--model"),
    Case("train --init, another context than the checkpoint's",
         ["train", "{w}/ds", "{o}/run", "--init", "{w}/model.ckpt", "--context", "1"],
         "--context"),
    # acquisition files (--acquisition)
    Case("simulate --acquisition, malformed file",
         ["simulate", "{w}/hr0.mha", "{o}/lr.mha", "--acquisition", "{w}/badacq.json"],
         "not valid JSON"),
    Case("prepare --acquisition, newer-format file",
         ["prepare", "{w}/manifest.csv", "{o}/ds", "--acquisition", "{w}/newacq.json"], "newer"),
    # geometry and disks (issue 19)
    Case("predict an HR scan given as LR", ["predict", "{w}/spaced.ckpt", "{w}/hr0.mha",
                                            "{o}/sr.mha"], "already at or finer than"),
    Case("evaluate an HR scan given as LR",
         ["evaluate", "{o}/ev", "--hr", "{w}/hr0.mha", "--lr", "{w}/hr0.mha"], "not coarser"),
    Case("evaluate an SR off the HR box",
         ["evaluate", "{o}/ev", "--hr", "{w}/hr0.mha", "--lr", "{w}/lr0.mha", "--sr", "{s}"],
         "SR and HR extents disagree", _sr_off_the_hr_box),
    Case("prepare an HR scan given as LR", ["prepare", "{s}", "{o}/ds"], "not coarser",
         _hr_as_lr_manifest),
    Case("predict onto a full disk (64 KiB tmpfs)",
         ["predict", "{w}/model.ckpt", "{w}/big_lr.mha", "{s}/sr"], "no space left on device",
         _tiny_tmpfs, _unmount),
    # units (issue 25): grey values into a mg HA/cm3 model
    Case("predict grey values with a mg HA/cm3 model",
         ["predict", "{w}/mgha.ckpt", "{w}/lr0.mha", "{o}/sr.mha"], "cannot be converted"),
    Case("predict --output-units mgha with a grey-value input and model",
         ["predict", "{w}/model.ckpt", "{w}/lr0.mha", "{o}/sr.mha", "--output-units", "mgha"],
         "needs density units"),
    Case("predict --input-units foo", ["predict", "{w}/model.ckpt", "{w}/lr0.mha", "{o}/sr.mha",
                                       "--input-units", "foo"], "--input-units"),
]  # fmt: skip


def _hashes(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` (folders too) with its file's hash."""
    return {
        str(p.relative_to(folder)): (
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else ""
        )
        for p in sorted(folder.rglob("*"))
    }


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_message_and_nothing_changes(case, ws, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    special = case.setup(ws, out) if case.setup else None
    try:
        before_inputs, before_out = _hashes(ws), _hashes(out)
        args = [a.format(w=ws, o=out, s=special) for a in case.args]
        res = runner.invoke(app, args)
        assert res.exit_code == 2, f"exit {res.exit_code}: {res.output}"
        assert "Traceback" not in res.output
        errors = [line for line in res.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, res.output
        assert case.message in errors[0], errors[0]
        assert _hashes(ws) == before_inputs  # inputs unchanged, nothing added beside them
        assert _hashes(out) == before_out  # nothing left behind, not even a temporary
    finally:
        if case.teardown:
            case.teardown(special)


def test_unexpected_errors_are_one_line_unless_debug(monkeypatch, ws, tmp_path):
    import microsr.io as mio

    def boom(*args, **kwargs):
        raise ZeroDivisionError("planted bug")

    monkeypatch.setattr(mio, "read_volume", boom)
    res = runner.invoke(app, ["info", str(ws / "lr0.mha")])
    assert res.exit_code == 1 and "internal error (ZeroDivisionError: planted bug)" in res.output
    assert "--debug" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["--debug", "info", str(ws / "lr0.mha")])
    assert isinstance(res.exception, ZeroDivisionError)


def test_non_finite_prediction_stops_without_output(tmp_path):
    from conftest import loaded_model

    from microsr.errors import MicrosrError
    from microsr.inference.engine import predict_stream
    from microsr.io import volume_source

    class NaNModel(torch.nn.Module):
        def forward(self, x):
            return torch.full_like(x[:, :1], float("nan"))

    lr, _ = make_pair(0)
    out = tmp_path / "sr.mha"
    with pytest.raises(MicrosrError, match="NaN or Inf"):  # the streaming writer, as predict
        predict_stream(loaded_model(NaNModel()), volume_source(lr), out, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_fit_acquisition_of_an_hr_scan_warns_with_the_numbers(tmp_path):
    """A scan sharper than its voxel size suggests is a warning (with the numbers), not an
    error: the fit and its figure are written."""
    from test_fit_acquisition import sharp_blocks

    scan = write_volume(sharp_blocks(), tmp_path / "sharp.mha")
    ref = write_volume(sharp_blocks(1, factor=2), tmp_path / "ref.mha")
    args = ["fit-acquisition", str(scan), str(tmp_path / "a.json"), "--reference", str(ref)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "a.json").is_file() and (tmp_path / "a.png").is_file()
    record = (tmp_path / "a.json").read_text()
    assert "sharper than its voxel size suggests: edge width" in record
