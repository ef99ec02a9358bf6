"""Process runtime: progress that stays readable in log files, and the CPU thread budget.

:func:`progress` is a tqdm bar on a terminal and, when stderr is not a TTY (a SLURM log, a
pipe, ``2> file``), one log line every ~10 % (or every ``every`` items when the total is
unknown) instead of carriage-return frames. ``MICROSR_PROGRESS=bar|log|off`` overrides.

:func:`cpu_budget` is the number of CPUs this process may really use: its CPU affinity
(``os.sched_getaffinity``; SLURM, ``taskset``) capped by a cgroup quota (v2 ``cpu.max``,
v1 ``cpu.cfs_quota_us / cpu.cfs_period_us``: Docker ``--cpus``, Kubernetes limits), which
``os.cpu_count()`` ignores. :func:`configure_threads` gives PyTorch that many threads
(less the background I/O threads of a command). Nothing here imports torch at import time.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from microsr.errors import MicrosrError

log = logging.getLogger("microsr.progress")

#: Background threads of streaming prediction (one reader, one writer:
#: :mod:`microsr.inference.threads`), left out of the intra-op threads.
IO_THREADS = 2


def set_omp_passive() -> None:
    """``OMP_WAIT_POLICY=PASSIVE`` unless set: idle OpenMP threads sleep instead of spinning.

    Spinning threads burn the CPUs of other processes (two predictions on one machine, the
    reader and writer threads). Takes effect only before torch is first imported.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _cgroup_quota(root: Path, self_cgroup: Path) -> float | None:
    """CPUs allowed by the cgroup quota (``None``: no quota found)."""
    own = ""
    try:
        for line in self_cgroup.read_text().splitlines():
            if line.startswith("0::"):  # cgroup v2: "0::/path"
                own = line[3:].strip().lstrip("/")
    except OSError:
        pass
    for cpu_max in dict.fromkeys([root / own / "cpu.max", root / "cpu.max"]):
        try:
            quota, period = cpu_max.read_text().split()[:2]
        except (OSError, ValueError):
            continue
        return None if quota == "max" else int(quota) / int(period)
    for v1 in ("cpu,cpuacct", "cpu"):
        try:
            quota = int((root / v1 / "cpu.cfs_quota_us").read_text())
            period = int((root / v1 / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if quota <= 0 or period <= 0 else quota / period
    return None


def cpu_budget(
    *, cgroup_root: str | Path = "/sys/fs/cgroup", self_cgroup: str | Path = "/proc/self/cgroup"
) -> int:
    """CPUs this process may use: its affinity, capped by a cgroup CPU quota.

    Parameters
    ----------
    cgroup_root, self_cgroup
        Where the cgroup files are (for tests).

    Returns
    -------
    int
        At least 1. A fractional quota is rounded down (1.5 CPUs -> 1), never below 1.
    """
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        n = os.cpu_count() or 1
    quota = _cgroup_quota(Path(cgroup_root), Path(self_cgroup))
    if quota is not None:
        n = min(n, max(1, math.floor(quota)))
    return max(1, n)


def configure_threads(threads: int | None = None, *, io_threads: int = 0) -> int:
    """Set PyTorch's intra-op (and inter-op) threads within the CPU budget.

    Parameters
    ----------
    threads
        The CPUs this command may use; ``None`` or 0: :func:`cpu_budget`.
    io_threads
        Background threads of the command that also need a CPU (e.g. :data:`IO_THREADS`
        for streaming prediction); intra-op threads are ``threads - io_threads``, at least 1.

    Returns
    -------
    int
        The intra-op threads set.

    Raises
    ------
    MicrosrError
        A negative ``threads``.
    """
    if threads is not None and threads < 0:
        raise MicrosrError(f"--threads {threads}: give a positive number (0: automatic)")
    set_omp_passive()
    import torch

    budget = threads or cpu_budget()
    intra = max(1, budget - io_threads)
    torch.set_num_threads(intra)
    # allowed once, before any inter-op work (a RuntimeError after); the model is sequential
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(max(1, min(2, budget // 4)))
    logging.getLogger("microsr").debug("CPU budget %d: %d torch threads", budget, intra)
    return intra


def progress_mode() -> str:
    """``"bar"`` on a terminal (or Jupyter), ``"log"`` otherwise; ``MICROSR_PROGRESS`` wins."""
    mode = os.environ.get("MICROSR_PROGRESS", "").strip().lower()
    if mode in ("bar", "log", "off"):
        return mode
    interactive = "ipykernel" in sys.modules or (
        hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    )
    return "bar" if interactive else "log"


class LogProgress:
    """A tqdm stand-in for log files: one line per ~10 % (``every`` items), no ``\\r``."""

    def __init__(self, iterable, total, desc, unit, every) -> None:
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.every = every or (max(1, math.ceil(total / 10)) if total else 100)
        self.n, self._next, self._t0 = 0, self.every, time.perf_counter()
        self._logged_at = -1

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more items; log when a step of ``every`` items is crossed."""
        self.n += n
        if self.n >= self._next:
            self._log()
            self._next = (self.n // self.every + 1) * self.every

    def _log(self) -> None:
        if self.n == self._logged_at:
            return
        self._logged_at = self.n
        dt = time.perf_counter() - self._t0
        of = f"/{self.total}" if self.total else ""
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        rate = f", {self.n / dt:.3g} {self.unit}/s" if dt > 0 else ""
        log.info("%s: %d%s %s%s, %.1f s%s", self.desc, self.n, of, self.unit, pct, dt, rate)

    def close(self) -> None:
        """Log the final count (once)."""
        if self.n:
            self._log()

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    disable: bool = False,
    every: int | None = None,
):
    """A tqdm bar on a terminal, one log line per ~10 % otherwise.

    Parameters
    ----------
    iterable
        Items to wrap; ``None`` for a manual counter (``update(n)``, ``close()``).
    total
        Number of items (default: ``len(iterable)`` when it has one).
    desc, unit
        Label and item name, as in tqdm.
    disable
        No output at all.
    every
        Log every this many items when not on a terminal (default: ~10 % of ``total``,
        else 100).

    Returns
    -------
    tqdm or LogProgress
        Iterable, usable as a context manager, with ``update`` and ``close``.
    """
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    mode = "off" if disable else progress_mode()
    if mode == "log":
        return LogProgress(iterable if iterable is not None else (), total, desc, unit, every)
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=mode == "off")
