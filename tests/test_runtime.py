"""Operations: readable logs off a terminal, TensorBoard, the CPU budget, --shard, lazy CLI."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import save_model
from typer.testing import CliRunner

from microsr.cli import app
from microsr.data.normalize import NormalizationConfig
from microsr.errors import MicrosrError
from microsr.inference.batch import PredictJob, parse_shard, select_shard, shard, slurm_shard
from microsr.io import write_volume
from microsr.models.factory import ModelConfig
from microsr.runtime import LogProgress, configure_threads, cpu_budget, progress
from microsr.volume import Volume

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _run(args, tmp_path, **env):
    """``python -m microsr ARGS`` with stderr to a file (not a TTY); returns its text."""
    err = tmp_path / "stderr.txt"
    environ = {**os.environ, "PYTHONPATH": SRC, **env}
    environ.pop("MICROSR_PROGRESS", None)
    with err.open("w") as f:
        done = subprocess.run([sys.executable, "-m", "microsr", *args], stderr=f,
                              stdout=subprocess.PIPE, env=environ, text=True, timeout=600)  # fmt: skip
    text = err.read_text(encoding="utf-8", errors="replace")
    assert done.returncode == 0, text
    return text


def test_help_imports_no_torch_and_sets_a_passive_omp_policy():
    code = (
        "import os, sys\nfrom typer.testing import CliRunner\nimport microsr.cli\n"
        "for args in (['--help'], ['predict', '--help'], ['train', '--help']):\n"
        "    assert CliRunner().invoke(microsr.cli.app, args).exit_code == 0\n"
        "print('torch' in sys.modules, 'lightning' in sys.modules, os.environ['OMP_WAIT_POLICY'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | {"PYTHONPATH": SRC}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False", "PASSIVE"]


def test_cli_train_defaults_are_train_configs():
    """Every ``microsr train`` option that sets a TrainConfig field defaults to its value."""
    import inspect

    from microsr.cli import pipeline
    from microsr.training.config import DEFAULT_MODEL, TrainConfig

    fields = {"learning_rate": "lr", "workers": "num_workers"}
    model = {"width": DEFAULT_MODEL.width, "depth": DEFAULT_MODEL.depth,
             "model": DEFAULT_MODEL.name, "context": DEFAULT_MODEL.context_slices}  # fmt: skip
    checked = 0
    for name, param in inspect.signature(pipeline.train).parameters.items():
        field = fields.get(name, name)
        if field in TrainConfig.model_fields and field not in ("model", "device"):
            assert param.default == TrainConfig.model_fields[field].default, name
            checked += 1
        elif name in model:
            assert param.default == model[name], name
            checked += 1
    assert checked >= 20


def test_config_modules_are_torch_free():
    code = (
        "import sys\nimport microsr.training.config, microsr.models.config\n"
        "import microsr.morphometry.config, microsr.data.config\n"
        "print('torch' in sys.modules)"
    )
    env = dict(os.environ) | {"PYTHONPATH": SRC}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False"]


def test_log_progress_writes_about_ten_lines_and_no_carriage_returns(monkeypatch, caplog):
    monkeypatch.setenv("MICROSR_PROGRESS", "log")
    with caplog.at_level(logging.INFO, logger="microsr.progress"):
        bar = progress(range(1000), desc="scan", unit="slice")
        assert isinstance(bar, LogProgress)
        assert sum(1 for _ in bar) == 1000
    lines = caplog.messages
    assert 10 <= len(lines) <= 11 and lines[-1].startswith("scan: 1000/1000 slice (100%)")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="microsr.progress"):
        with progress(total=7, desc="manual", unit="slice") as bar:
            for _ in range(3):
                bar.update(3)  # overshoots the total: still one line per step, no error
        assert len(caplog.messages) <= 9
        assert list(progress(range(5), disable=True)) == list(range(5))


def _cgroup(tmp_path, files: dict[str, str], own="/job") -> tuple[Path, Path]:
    root = tmp_path / "cg"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (tmp_path / "self").write_text(f"0::{own}\n")
    return root, tmp_path / "self"


def test_cpu_budget_respects_affinity_and_cgroup_quotas(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    root, me = _cgroup(tmp_path, {})
    assert cpu_budget(cgroup_root=root, self_cgroup=me) == affinity
    root, me = _cgroup(tmp_path, {"job/cpu.max": "150000 100000\n"})  # v2, own cgroup
    assert cpu_budget(cgroup_root=root, self_cgroup=me) == 1  # 1.5 CPUs -> 1
    root, me = _cgroup(tmp_path / "b", {"cpu.max": "max 100000\n"})
    assert cpu_budget(cgroup_root=root, self_cgroup=me) == affinity
    v1 = {"cpu/cpu.cfs_quota_us": "50000", "cpu/cpu.cfs_period_us": "100000"}
    root, me = _cgroup(tmp_path / "c", v1)
    assert cpu_budget(cgroup_root=root, self_cgroup=me) == 1  # half a CPU: still 1
    v1["cpu/cpu.cfs_quota_us"] = "-1"  # no limit
    root, me = _cgroup(tmp_path / "d", v1)
    assert cpu_budget(cgroup_root=root, self_cgroup=me) == affinity


def test_configure_threads_leaves_room_for_io_threads():
    import torch

    before = torch.get_num_threads()
    try:
        assert configure_threads(4, io_threads=2) == 2 == torch.get_num_threads()
        assert configure_threads(2, io_threads=2) == 1
        assert configure_threads(3) == 3
        with pytest.raises(MicrosrError, match="--threads"):
            configure_threads(-1)
    finally:
        torch.set_num_threads(before)


def test_shards_cover_every_job_once():
    for n_jobs in (0, 1, 5, 7, 100):
        jobs = [PredictJob(Path(f"{i}.mha"), Path(f"o{i}.mha")) for i in range(n_jobs)]
        for count in (1, 2, 3, 8):
            parts = [shard(jobs, i, count) for i in range(count)]
            assert [j for p in parts for j in p] == jobs  # in order: no gap, no overlap
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(MicrosrError, match="--shard"):
            parse_shard(bad)


def test_slurm_array_gives_the_default_shard(monkeypatch):
    assert slurm_shard({}) is None
    assert slurm_shard({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}) == (3, 4)
    one_based = {
        "SLURM_ARRAY_TASK_ID": "1",
        "SLURM_ARRAY_TASK_MIN": "1",
        "SLURM_ARRAY_TASK_MAX": "8",
    }
    assert slurm_shard(one_based) == (0, 8)
    stepped = {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "0",
               "SLURM_ARRAY_TASK_MAX": "6", "SLURM_ARRAY_TASK_STEP": "2"}  # fmt: skip
    assert slurm_shard(stepped) == (2, 4)
    with pytest.raises(MicrosrError, match="array's size"):
        slurm_shard({"SLURM_ARRAY_TASK_ID": "1"})
    jobs = [PredictJob(Path(f"{i}"), Path(f"o{i}")) for i in range(5)]
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    assert select_shard(jobs) == jobs[2:]
    assert select_shard(jobs, "0/1") == jobs  # an explicit --shard wins


@pytest.fixture
def ckpt(tmp_path):
    norm = NormalizationConfig(mode="window", low=0.0, high=1.0)
    return save_model(tmp_path / "m.ckpt", ModelConfig(width=4, depth=1), normalization=norm)


def test_cli_shards_a_manifest_from_the_slurm_array(tmp_path, ckpt):
    rng = np.random.default_rng(0)
    lines = ["input,output"]
    for i in range(5):
        write_volume(Volume(rng.random((3, 7, 9)).astype(np.float32), (0.02,) * 3),
                     tmp_path / f"s{i}.mha")  # fmt: skip
        lines.append(f"s{i}.mha,out/s{i}.mha")
    (tmp_path / "jobs.csv").write_text("\n".join(lines) + "\n")
    args = ["predict", str(ckpt), "--manifest", str(tmp_path / "jobs.csv"), "--device", "cpu"]
    for task in ("0", "1"):
        env = {"SLURM_ARRAY_TASK_ID": task, "SLURM_ARRAY_TASK_COUNT": "2"}
        res = CliRunner().invoke(app, [*args, "--threads", "1"], env=env)
        assert res.exit_code == 0, res.output
        written = sorted(p.name for p in (tmp_path / "out").iterdir())
        assert written == [f"s{i}.mha" for i in range(2 if task == "0" else 5)]
    res = CliRunner().invoke(app, [*args, "--shard", "5/2"])
    assert res.exit_code == 2 and "0 <= I < N" in res.output


def test_predict_log_off_a_terminal_is_short_and_has_no_carriage_returns(tmp_path, ckpt):
    scan = write_volume(Volume(np.random.default_rng(0).random((40, 7, 9)).astype(np.float32),
                               (0.02,) * 3), tmp_path / "scan.mha")  # fmt: skip
    text = _run(["predict", str(ckpt), str(scan), str(tmp_path / "sr.mha"), "--device", "cpu",
                 "--batch-size", "1", "--threads", "1"], tmp_path)  # fmt: skip
    assert "\r" not in text
    assert len(text.splitlines()) <= 15, text
    assert "wrote" in text and "shape (80, 14, 18)" in text  # the written HR-grid shape


def test_train_log_off_a_terminal_is_one_line_per_epoch_and_tensorboard_events(
    pair_manifest, tmp_path
):
    from microsr.data.prepare import PrepareConfig, prepare_dataset

    ds = prepare_dataset(pair_manifest, tmp_path / "ds", PrepareConfig(roi=24), progress=False)
    run = tmp_path / "run"
    text = _run(["train", str(ds), str(run), "--epochs", "3", "--batch-size", "4", "--patch",
                 "16", "--width", "4", "--depth", "2", "--device", "cpu", "--seed", "7",
                 "--threads", "1"], tmp_path)  # fmt: skip
    assert "\r" not in text
    epochs = [line for line in text.splitlines() if " epoch " in f" {line}"]
    assert len(epochs) == 3 and "train_loss" in epochs[-1] and "val_loss" in epochs[-1]
    assert len(text.splitlines()) <= 30, text
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert (run / "logs" / "metrics.csv").is_file()
