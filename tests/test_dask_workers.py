"""``predict --dask`` on worker processes: CPU per block like plain ``predict`` (issue 35).

- The malloc fix (:func:`microsr.inference.distributed.malloc_like_plain_python`), checked
  where it acts: a process started with the Dask nanny's ``MALLOC_TRIM_THRESHOLD_`` page-faults
  on every large buffer it allocates again, unless the fix ran.
- A scheduler address with separate worker processes (what ``dask-jobqueue`` gives on SLURM,
  here a ``LocalCluster`` of processes on one machine): the same volume as plain ``predict``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import numpy as np
import pytest
from conftest import make_pair, save_model

from microsr.io import read_volume, write_volume
from microsr.models.factory import ModelConfig

glibc = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc"
)

_FAULTS = """
import json, resource, sys
import numpy as np
from microsr.inference.distributed import malloc_like_plain_python
fixed = malloc_like_plain_python() if sys.argv[1] == "fix" else False
for _ in range(5):  # warm up: the first frees raise a dynamic threshold
    np.ones(3 * 2**17, np.float32)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):  # a 1.5 MiB activation, allocated, touched and freed, like a layer's
    np.ones(3 * 2**17, np.float32)  # (under 2 MiB: no transparent huge page hides the faults)
print(json.dumps({"fixed": fixed,
                  "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _faults(mode: str, env: dict) -> dict:
    run = subprocess.run(
        [sys.executable, "-c", _FAULTS, mode], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(run.stdout.strip().splitlines()[-1])


@glibc
def test_malloc_fix_stops_the_page_faults_of_a_dask_worker():
    plain = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    nanny = {**plain, "MALLOC_TRIM_THRESHOLD_": "65536"}  # distributed's pre-spawn-environ
    pages = 200 * 3 * 2**19 // 4096  # every page of every buffer, if each is a fresh mmap
    worker = _faults("as-is", nanny)
    fixed = _faults("fix", nanny)
    python = _faults("fix", plain)
    assert worker["faults"] > 0.5 * pages  # the cost: each buffer faulted in again
    assert fixed["fixed"] and fixed["faults"] < 0.05 * pages
    assert not python["fixed"] and python["faults"] < 0.05 * pages  # untouched: already so


def test_malloc_fix_leaves_a_user_choice_alone(monkeypatch):
    from microsr.inference import distributed as dist

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1048576")
    dist.malloc_like_plain_python.cache_clear()
    try:
        assert dist.malloc_like_plain_python() is False
    finally:
        dist.malloc_like_plain_python.cache_clear()


@pytest.mark.slow
def test_local_workers_run_without_the_profiler():
    """``local:N`` starts its workers without Dask's 10 ms stack sampler (issue 35)."""
    import dask

    from microsr.inference.distributed import _client

    with _client("local:1") as c:
        assert set(c.run(dask.config.get, "distributed.worker.profile.enabled").values()) == {False}
    assert dask.config.get("distributed.worker.profile.enabled") is True  # here: unchanged


@pytest.mark.slow
def test_a_scheduler_address_with_worker_processes(tmp_path):
    """The multi-node path on one machine: ``--dask tcp://...`` to a cluster of 2 worker
    processes started elsewhere (jobs pickled, one model per process, the malloc fix run in
    each); equal to plain ``predict`` up to float rounding (other torch threads)."""
    from distributed import Client, LocalCluster

    from microsr.inference.distributed import DaskConfig, malloc_like_plain_python, predict_dask
    from microsr.inference.predict import predict_file

    lr, _ = make_pair(2, shape=(80, 20, 18))
    lr_path = write_volume(lr, tmp_path / "lr.mha")
    ckpt = save_model(tmp_path / "m.ckpt", ModelConfig(width=4, depth=1, in_channels=3))
    ref = read_volume(predict_file(ckpt, lr_path, tmp_path / "ref.zarr", device="cpu",
                                   progress=False))  # fmt: skip
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:  # fmt: skip
        cfg = DaskConfig(scheduler=cluster.scheduler_address, block_slices=32)
        out = predict_dask(ckpt, lr_path, tmp_path / "sr.zarr", config=cfg, device="cpu")
        with Client(cluster) as c:
            fixed = c.run(malloc_like_plain_python)
    assert len(fixed) == 2 and all(fixed.values())  # nanny-started: the fix applies in each
    sr = read_volume(out)
    np.testing.assert_allclose(sr.array, ref.array, rtol=0, atol=1e-3)
    assert (sr.spacing_mm, sr.origin_mm) == (ref.spacing_mm, ref.origin_mm)
