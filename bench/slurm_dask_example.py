"""One large scan predicted on a SLURM cluster through Dask (``dask-jobqueue``).

Run on a login node (or in a small SLURM job) of a cluster whose nodes share a file system:
this process holds the Dask scheduler and submits ``--jobs`` SLURM jobs, each one Dask worker
job of ``--cores`` CPUs split into ``--processes`` worker processes; the workers connect back,
each predicts z-blocks of the output (:func:`microsr.inference.distributed.predict_dask`,
the same code as ``microsr predict ... --dask tcp://SCHEDULER:PORT``), and the finished store
appears at ``OUT.zarr`` only when every block is done.

Requirements: microsr and ``dask-jobqueue`` (``pip install dask-jobqueue``) in an environment
every node can run (``--prologue`` activates it in each job); the checkpoint, the LR volume
and the output folder on a shared file system (paths are made absolute). A job killed by its
time limit leaves ``OUT.zarr.partial``: rerun the same command to resume it.

Usage::

    # print the SLURM job script this would submit, submit nothing
    python bench/slurm_dask_example.py CKPT LR.zarr OUT.ome.zarr --dry-run
    # 4 jobs x 16 cores, one worker process per core
    python bench/slurm_dask_example.py CKPT LR.zarr OUT.ome.zarr --jobs 4 --cores 16 \\
        --memory 64GB --walltime 02:00:00 --queue compute --account myproject \\
        --prologue "source /shared/envs/microsr/bin/activate"
    # the same code on this machine: a LocalCluster of 2 worker processes, no SLURM
    python bench/slurm_dask_example.py CKPT LR.zarr OUT.ome.zarr --local 2

GPU nodes: ``--device cuda --processes 1 --extra "--gres=gpu:1"`` (one worker process per GPU).
"""

from __future__ import annotations

import argparse
import logging
import shlex
from pathlib import Path

from microsr.inference.distributed import DaskConfig, predict_dask


def slurm_cluster(a: argparse.Namespace):
    """A ``dask_jobqueue.SLURMCluster`` of ``a.jobs`` jobs (not yet scaled)."""
    from dask_jobqueue import SLURMCluster

    # Dask's profiler samples each busy worker thread every 10 ms (~4 % of a core, issue 35)
    prologue = [a.prologue] if a.prologue else []
    prologue.append("export DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False")
    return SLURMCluster(
        cores=a.cores,
        # one thread per worker process: each process predicts one block at a time with
        # cores / processes torch threads (microsr sets them from the worker's thread count)
        processes=a.processes or a.cores,
        memory=a.memory,
        walltime=a.walltime,
        queue=a.queue,
        account=a.account,
        job_script_prologue=prologue,
        job_extra_directives=shlex.split(a.extra) if a.extra else [],
        local_directory=a.local_directory,  # node-local scratch for Dask's own files
        log_directory=a.log_directory,
    )


def local_cluster(n: int):
    """A ``LocalCluster`` of ``n`` worker processes: the multi-node path on one machine."""
    from distributed import LocalCluster

    return LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("lr", type=Path)
    ap.add_argument("out", type=Path, help="*.zarr / *.ome.zarr")
    ap.add_argument("--jobs", type=int, default=2, help="SLURM jobs (one node's share each)")
    ap.add_argument("--cores", type=int, default=16, help="CPUs per job")
    ap.add_argument("--processes", type=int, default=None, help="worker processes per job "
                    "(default: one per core; fewer for less memory, same speed)")  # fmt: skip
    ap.add_argument("--memory", default="64GB", help="memory per job")
    ap.add_argument("--walltime", default="02:00:00")
    ap.add_argument("--queue", default=None, help="SLURM partition")
    ap.add_argument("--account", default=None)
    ap.add_argument("--prologue", default=None, help="shell line run first in each job")
    ap.add_argument("--extra", default=None, help='extra #SBATCH options, e.g. "--gres=gpu:1"')
    ap.add_argument("--local-directory", default=None, help="node-local scratch folder")
    ap.add_argument("--log-directory", default="dask-logs")
    ap.add_argument("--device", default="cpu", help="cpu | cuda (on every worker)")
    ap.add_argument("--block-slices", type=int, default=64, help="output slices per task")
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--dry-run", action="store_true", help="print the job script and stop")
    ap.add_argument("--local", type=int, default=None, help="N local worker processes instead")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cluster = local_cluster(a.local) if a.local else slurm_cluster(a)
    with cluster:
        if a.dry_run:
            print(cluster.job_script() if hasattr(cluster, "job_script") else cluster)
            return
        if not a.local:
            cluster.scale(jobs=a.jobs)  # the blocks wait in the scheduler until workers join
        config = DaskConfig(scheduler=cluster.scheduler_address, block_slices=a.block_slices)
        out = predict_dask(a.checkpoint, a.lr, a.out, config=config, device=a.device,
                           overwrite=a.overwrite)  # fmt: skip
    print(out)


if __name__ == "__main__":
    main()
