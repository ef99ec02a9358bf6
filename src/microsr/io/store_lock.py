"""A lock file that keeps two jobs from writing the same output (``OUT.lock`` beside it).

The lock holds ``{"host", "pid", "since"}`` and is made with ``O_CREAT | O_EXCL`` (atomic on
local file systems and on NFSv3+). A lock whose process is gone (same host) is taken over
with a warning; a lock of a live process, or of another host, is refused with one message
that says how to clear it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from microsr.errors import InputFileError

log = logging.getLogger(__name__)


def lock_path(path: Path) -> Path:
    """The lock file of output ``path``."""
    return path.with_name(path.name + ".lock")


@contextmanager
def store_lock(path: str | Path) -> Iterator[Path]:
    """Hold the lock of output ``path`` for the block; removed on exit (also on error).

    Raises
    ------
    InputFileError
        Another live job (or a job on another host) holds the lock.
    """
    path = Path(path)
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    _acquire(path, lock)
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)


def _acquire(path: Path, lock: Path) -> None:
    me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%FT%T")}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(lock)
            if not _stale(holder):
                raise InputFileError(
                    path, f"is being written by another job (lock {lock}: host "
                    f"{holder.get('host')}, pid {holder.get('pid')}, since "
                    f"{holder.get('since')}); wait for it, or delete the lock if that job is gone",
                ) from None  # fmt: skip
            log.warning("%s: taking over the lock of a finished process %s", path, holder)
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return
    raise InputFileError(path, f"could not take the lock {lock}")


def _holder(lock: Path) -> dict:
    try:
        return dict(json.loads(lock.read_text()))
    except (OSError, ValueError, TypeError):
        return {}


def _stale(holder: dict) -> bool:
    """Whether the holder is a process of this host that no longer runs."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
