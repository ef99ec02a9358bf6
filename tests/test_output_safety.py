"""Outputs follow the umask; a full disk, quota or read-only file system is one message (issue 19)."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from conftest import make_pair, save_model
from typer.testing import CliRunner

from microsr.cli import app
from microsr.data.manifest import SpecimenRow, write_manifest
from microsr.data.prepare import PrepareConfig, prepare_dataset
from microsr.errors import MicrosrError
from microsr.io import write_volume
from microsr.io.atomic import TEMP_PREFIX, atomic_path, output_errors
from microsr.models.factory import ModelConfig
from microsr.volume import Volume

runner = CliRunner()


@contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): _mode(p) for p in [root, *root.rglob("*")]}


@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755),
                                                             (0o077, 0o600, 0o700)])  # fmt: skip
def test_outputs_follow_the_umask(tmp_path, mask, file_mode, dir_mode):
    lr, hr = make_pair(0, shape=(8, 32, 32))
    rows = []
    for i in range(3):
        lr, hr = make_pair(i, shape=(8, 32, 32))
        lr_p, hr_p = (
            write_volume(lr, tmp_path / f"lr{i}.mha"),
            write_volume(hr, tmp_path / f"hr{i}.mha"),
        )
        rows.append(SpecimenRow(f"s{i}", "femur", lr_p, hr_p))
    manifest = write_manifest(rows, tmp_path / "manifest.csv")
    out = tmp_path / "out"
    out.mkdir()
    os.chmod(out, 0o777)
    with umask(mask):
        written = [
            write_volume(lr, out / "v.mha"),
            write_volume(lr, out / "v.nii.gz"),
            write_volume(lr, out / "v.tif"),
            write_volume(lr, out / "v.nrrd"),
            save_model(out / "m.ckpt", ModelConfig(width=4, depth=1)),
        ]
        folder = write_volume(lr, out / "tiffs")
        dataset = prepare_dataset(manifest, out / "ds", PrepareConfig(roi=24), progress=False)
        res = runner.invoke(
            app, ["predict", str(written[-1]), str(tmp_path / "lr0.mha"), str(out / "sr")]
        )
        assert res.exit_code == 0, res.output
    for path in written:
        assert _mode(path) == file_mode, path
    for root in (folder, dataset, out / "sr"):
        modes = _modes(root)
        assert {m for p, m in modes.items() if (root / p).is_dir()} == {dir_mode}, root
        assert {m for p, m in modes.items() if (root / p).is_file()} == {file_mode}, root


def _fail_with(code: int):
    def write(path, *args, **kwargs):
        Path(path).write_bytes(b"partial")  # something on disk first, as a real write
        raise OSError(code, os.strerror(code))

    return write


@pytest.mark.parametrize(
    ("code", "cause"),
    [(errno.ENOSPC, "no space left on device"), (errno.EDQUOT, "disk quota exceeded"),
     (errno.EROFS, "read-only file system"), (errno.EACCES, "permission denied")],
)  # fmt: skip
def test_write_errors_are_one_message_naming_path_and_cause(tmp_path, monkeypatch, code, cause):
    import microsr.io.tiff_write as tw

    monkeypatch.setattr(tw.tifffile, "imwrite", _fail_with(code))
    lr, _ = make_pair(0, shape=(8, 32, 32))
    for name in ("sr_dir", "sr.tif"):
        with pytest.raises(MicrosrError, match=f"{name}: cannot be written: {cause}"):
            write_volume(lr, tmp_path / name)
    assert list(tmp_path.iterdir()) == []  # no temporary, nothing partial


def test_predict_onto_a_failing_disk_exits_2(tmp_path, monkeypatch):
    import microsr.io.tiff_write as tw

    lr, _ = make_pair(0, shape=(8, 32, 32))
    lr_path = write_volume(lr, tmp_path / "lr.mha")
    ckpt = save_model(tmp_path / "m.ckpt", ModelConfig(width=4, depth=1))
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(tw.tifffile, "imwrite", _fail_with(errno.ENOSPC))
    res = runner.invoke(app, ["predict", str(ckpt), str(lr_path), str(out / "sr")])
    assert res.exit_code == 2, res.output
    assert "no space left on device" in res.output and "internal error" not in res.output
    assert list(out.iterdir()) == []


def test_errors_of_other_files_pass_unchanged(tmp_path):
    """An unreadable input inside an output's block is not reported as the output's fault."""
    elsewhere = tmp_path / "in" / "lr.mha"
    with pytest.raises(PermissionError), output_errors(tmp_path / "out" / "sr.mha"):
        raise PermissionError(errno.EACCES, "Permission denied", str(elsewhere))
    with pytest.raises(ValueError), atomic_path(tmp_path / "x.npy"):
        raise ValueError("not an OSError")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 64 KiB tmpfs (needs the right to mount: root in a container that allows it)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
            capture_output=True, timeout=20,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, timeout=20)


@pytest.mark.parametrize("out", ["sr_dir", "sr.mha", "sr.nii.gz", "sr.nrrd", "sr.tif"])
def test_writing_onto_a_full_tmpfs(tiny_tmpfs, out):
    noise = np.random.default_rng(0).random((32, 64, 64), np.float32)  # 512 KiB > 64 KiB
    big = Volume(noise, (0.01,) * 3)  # (random: .nii.gz does not compress it below 64 KiB)
    with pytest.raises(MicrosrError, match="no space left on device"):
        write_volume(big, tiny_tmpfs / out)
    assert list(tiny_tmpfs.iterdir()) == []


def test_prepare_onto_a_full_tmpfs(tiny_tmpfs, pair_manifest):
    with pytest.raises(MicrosrError, match="no space left on device"):
        prepare_dataset(pair_manifest, tiny_tmpfs / "ds", PrepareConfig(roi=24), progress=False)
    assert [p for p in tiny_tmpfs.iterdir() if p.name.startswith(TEMP_PREFIX)] == []
    assert list(tiny_tmpfs.iterdir()) == []


def test_read_ahead_stops_when_the_consumer_stops_after_the_last_item():
    """A failed write after the last input block was read must not hang the reader thread."""
    import threading
    import time

    from microsr.inference.threads import prefetched

    it = prefetched(iter(range(2)), 1)
    assert next(it) == 0
    time.sleep(0.3)  # the reader queued block 1 and now waits to queue its end marker
    closer = threading.Thread(target=it.close, daemon=True)
    closer.start()
    closer.join(timeout=5)
    assert not closer.is_alive()


def test_a_read_only_file_system_is_named_before_any_work(tmp_path):
    from microsr.io.atomic import check_output

    mnt = tmp_path / "ro"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mnt)],
                          capture_output=True, timeout=20)  # fmt: skip
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        with pytest.raises(MicrosrError, match="read-only file system"):
            check_output(mnt / "sr.mha")
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, timeout=20)
