"""DDP on CPU (2 processes, gloo) and an honest resume after a killed run.

Lightning's DDP launcher re-runs the current script for every extra rank, so training runs
in a subprocess executing a small script file, never in pytest's own process.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from microsr.checkpoint import read_checkpoint
from microsr.data.prepare import PrepareConfig, prepare_dataset
from microsr.io.atomic import temp_prefix

SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    import lightning as L
    from microsr.models.factory import ModelConfig
    from microsr.training.config import TrainConfig
    from microsr.training.train import train

    class Report(L.Callback):
        '''Each rank writes a hash of its weights and the specimens its sampler gave it.'''

        def on_train_end(self, trainer, module):
            h = hashlib.sha256()
            for name, t in sorted(module.named_parameters()):
                h.update(name.encode()); h.update(t.detach().cpu().numpy().tobytes())
            loader = trainer.train_dataloader
            pairs = loader.dataset.pairs
            index = list(iter(loader.sampler))
            report = {
                "rank": trainer.global_rank, "world": trainer.world_size, "sha": h.hexdigest(),
                "index": [int(i) for i in index],
                "specimens": sorted({pairs.specimens[pairs.spec_index[i]] for i in index}),
                "n": len(pairs), "steps": trainer.global_step,
            }
            out = f"{sys.argv[2]}/rank{trainer.global_rank}.json"
            open(out, "w").write(json.dumps(report))

    cfg = TrainConfig(model=ModelConfig(width=4, depth=2), epochs=int(sys.argv[3]),
                      batch_size=2, patch=16, seed=3, device="cpu", val_max_slices=2,
                      devices=int(sys.argv[4]))
    train(sys.argv[1], sys.argv[2], cfg, resume=sys.argv[5] == "1", progress=False,
          callbacks=[Report()])
    """
)


@pytest.fixture
def dataset(pair_manifest, tmp_path):
    return prepare_dataset(pair_manifest, tmp_path / "ds", PrepareConfig(roi=24), progress=False)


def _run(tmp_path, dataset, run, epochs, devices, resume=False, **kw):
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)
    args = [sys.executable, str(script), str(dataset), str(run), str(epochs), str(devices)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([*args, "1" if resume else "0"], cwd=tmp_path, env=env, **kw)


@pytest.mark.slow
def test_ddp_two_cpu_ranks_hold_identical_weights_and_respect_the_split(dataset, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    proc = _run(tmp_path, dataset, run, 2, 2, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out.decode()[-3000:]
    r0, r1 = (json.loads((run / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2 and r0["steps"] == r1["steps"] > 0
    # identical parameters (BatchNorm running statistics are per rank on CPU, where PyTorch
    # has no SyncBatchNorm; DDP broadcasts rank 0's before each forward)
    assert r0["sha"] == r1["sha"]
    splits = json.loads((dataset / "splits.json").read_text())
    assert set(r0["specimens"]) | set(r1["specimens"]) <= set(splits["train"])
    # the two ranks share the train slices (DistributedSampler pads by at most one)
    assert set(r0["index"]) | set(r1["index"]) == set(range(r0["n"]))
    assert len(set(r0["index"]) & set(r1["index"])) <= 1
    # the checkpoint (rank 0's) holds those same weights
    ckpt = read_checkpoint(run / "last.ckpt")
    h = hashlib.sha256()
    params = {k: v for k, v in ckpt["state_dict"].items() if "running_" not in k}
    for name, t in sorted(params.items()):
        if name.endswith("num_batches_tracked"):
            continue
        h.update(name.encode())
        h.update(t.numpy().tobytes())
    assert h.hexdigest() == r0["sha"] and ckpt["epoch"] == 1


@pytest.mark.slow
def test_killed_training_resumes_to_the_same_epoch_count(dataset, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    epochs = 12
    proc = _run(tmp_path, dataset, run, epochs, 1, stdout=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "last.ckpt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)  # a little further, possibly into another checkpoint write
    assert proc.poll() is None, "training finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = read_checkpoint(run / "last.ckpt")["epoch"]  # readable: written atomically
    assert killed_at < epochs - 1
    # a kill during a checkpoint write leaves its temporary (SIGKILL cannot be cleaned up
    # after); plant one so that the resume below must remove it whatever the kill hit
    (run / f"{temp_prefix(proc.pid)}abc123-last.ckpt").write_bytes(b"half a checkpoint")
    proc = _run(tmp_path, dataset, run, epochs, 1, resume=True, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT)  # fmt: skip
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out.decode()[-3000:]
    ckpt = read_checkpoint(run / "last.ckpt")
    assert ckpt["epoch"] == epochs - 1  # epochs 0 .. epochs - 1, no more, no fewer
    assert not [p for p in run.iterdir() if p.name.startswith(".microsr-tmp")]
    assert ckpt["microsr"]["seed"] == 3
