"""Atomic writes and the output policy every writer follows.

Atomic writes: write to a temporary sibling, then rename it onto the target, so a reader (or
a crashed run) never sees a half-written file or folder. The temporary path is in the
target's own folder, so the final :func:`os.replace` is a rename on one file system.

The output policy (:func:`check_output`, called by every command before it computes):

* nothing the command did not create is deleted or replaced: an existing output file, or a
  non-empty output folder, is refused unless ``overwrite`` is given, and even then only the
  entries the command writes are replaced (:func:`atomic_folder`); a folder is never
  swapped as a whole unless microsr owns all of it (``replace_folder=True``, e.g. a study's
  ``report/``);
* an output that resolves to an input (through symlinks or ``..``) is refused;
* the output's parent must be a folder we can write to (or be creatable);
* temporaries that a killed run left (``.microsr-tmp-<host>-<pid>-*``, whose process is
  gone) are removed by the next run writing into the same folder
  (:func:`remove_stale_temporaries`);
* outputs get the modes the umask gives a plain ``open``/``mkdir`` (0644 files and 0755
  folders under umask 022), not the private 0600/0700 of :mod:`tempfile`
  (:func:`output_mode`), so colleagues on a shared server can read them;
* a write that fails for want of space, quota or permission, or on a read-only file system
  (ENOSPC, EDQUOT, EFBIG, EROFS, EACCES, EPERM) is one :class:`OutputError` naming the path and
  the cause, after the temporaries are removed (:func:`output_errors`).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from microsr.errors import InputFileError

logger = logging.getLogger(__name__)

#: Prefix of every temporary path made here; readers of folders skip such names.
TEMP_PREFIX = ".microsr-tmp-"
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:24] or "host"
_TAGGED = re.compile(re.escape(TEMP_PREFIX) + r"(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-")
#: Untagged temporaries (microsr 0.1) or other hosts' are removed only when this old.
_STALE_AGE_S = 24 * 3600


#: Why a write failed, for the errors that are the user's disk's, not microsr's.
WRITE_ERRORS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the file system",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
_UMASK_LOCK = threading.Lock()


class OutputError(InputFileError):
    """An output that could not be written (disk full, quota, read-only, permission)."""


def current_umask() -> int:
    """The process's umask, read without changing it where Linux allows (``/proc``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:  # elsewhere: set and restore (briefly process-wide)
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def output_mode(*, directory: bool = False) -> int:
    """The mode a plain ``open`` (0o666) or ``mkdir`` (0o777) would give under the umask."""
    return (0o777 if directory else 0o666) & ~current_umask()


@contextmanager
def output_errors(path: str | Path) -> Iterator[None]:
    """Turn an ``OSError`` of :data:`WRITE_ERRORS` in the block into one :class:`OutputError`.

    The message names ``path`` (or the file the error names, when that lies beside it) and
    the cause. Errors naming a file elsewhere (an input that cannot be read) pass unchanged.
    """
    path = Path(path)
    try:
        yield
    except (OSError, RuntimeError) as exc:  # RuntimeError: SimpleITK's write errors
        cause = _write_cause(exc)
        name = getattr(exc, "filename", None)
        where = Path(name) if isinstance(name, str | os.PathLike) else None
        if cause is None or (where is not None and not _beside(where, path)):
            raise
        raise OutputError(
            path, f"cannot be written: {cause}; nothing was written and temporaries were removed"
        ) from exc


def _write_cause(exc: BaseException) -> str | None:
    """The disk's reason for a failed write, or ``None`` when it is not one of those."""
    code = getattr(exc, "errno", None)
    if code in WRITE_ERRORS:
        return f"{WRITE_ERRORS[code]} (errno {errno.errorcode.get(code, '?')})"
    text = str(exc)
    short = re.search(r"\d+ requested and \d+ written|fwrite wrote only [^\n]*", text)
    if code is None and short:  # numpy's tofile, ITK's NRRD writer: a short write
        return f"no space left on device (short write: {short.group(0)})"
    if "No space left on device" in text or "Disk quota exceeded" in text:  # ITK's messages
        return WRITE_ERRORS[errno.ENOSPC if "space" in text else errno.EDQUOT]
    return None


def _beside(where: Path, path: Path) -> bool:
    """Whether ``where`` is ``path``, lies in it, or lies in the folder that holds it."""
    try:
        where, path = where.absolute(), path.absolute()
    except OSError:
        return False
    return where == path or where.is_relative_to(path) or where.is_relative_to(path.parent)


def new_memmap(path: str | Path, *, dtype, shape: tuple[int, ...]):
    """``numpy.lib.format.open_memmap(path, "w+")`` with its blocks allocated up front.

    A memory map onto a sparse file that the disk cannot hold fails later with SIGBUS (the
    process dies without a message); allocating first turns that into ENOSPC here.
    """
    from numpy.lib.format import open_memmap

    array = open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    if hasattr(os, "posix_fallocate"):
        with open(path, "r+b") as f:
            try:
                os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
            except OSError as exc:
                if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # file systems without it
                    return array
                del array
                raise OSError(exc.errno, exc.strerror, str(path)) from None
    return array


def temp_prefix(pid: int | None = None) -> str:
    """The temporary-name prefix of process ``pid`` (default: this one) on this host:
    ``.microsr-tmp-<host>-<pid>-``."""
    return f"{TEMP_PREFIX}{_HOST}-{os.getpid() if pid is None else pid}-"


@contextmanager
def atomic_path(
    path: str | Path, *, directory: bool = False, replace_folder: bool = False
) -> Iterator[Path]:
    """Yield a temporary path that becomes ``path`` only if the block succeeds.

    Parameters
    ----------
    path
        Final file or folder. Missing parent folders are created.
    directory
        ``False``: the temporary path is an (empty, existing) file whose name ends with the
        target's name, so extension-based writers such as SimpleITK pick the same format.
        ``True``: the temporary path is an empty folder, renamed onto ``path`` on success;
        ``path`` must then not exist or be an empty folder, unless ``replace_folder``.
    replace_folder
        Replace an existing folder as a whole (only for folders microsr owns entirely).

    Notes
    -----
    On any exception in the block the temporary file or folder is removed, ``path`` is left
    untouched and the exception propagates. A file target is replaced if it exists: callers
    apply the output policy (:func:`check_output`) first.
    """
    path = Path(path)
    with output_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        suffix = "-" + path.name
        if directory:
            tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(), suffix=suffix, dir=path.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=temp_prefix(), suffix=suffix, dir=path.parent)
            os.close(fd)
            tmp = Path(name)
        try:
            yield tmp
            if tmp.exists() and not tmp.is_symlink():
                os.chmod(tmp, output_mode(directory=directory))
            if directory:
                _move_folder(tmp, path, replace=replace_folder)
            else:
                os.replace(tmp, path)
        except BaseException:
            _remove(tmp)
            raise
    logger.debug("atomically wrote %s", path)


def _move_folder(tmp: Path, path: Path, *, replace: bool) -> None:
    """Rename folder ``tmp`` onto ``path`` (an absent or empty folder, or owned: ``replace``)."""
    if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
        path.rmdir()
    if not path.exists() and not path.is_symlink():
        os.replace(tmp, path)
        return
    if not replace:
        raise FileExistsError(f"{path} exists and is not empty; nothing was replaced")
    backup = Path(tempfile.mkdtemp(prefix=temp_prefix() + "old-", dir=path.parent))
    backup.rmdir()
    os.replace(path, backup)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(backup, path)
        raise
    _remove(backup)


@contextmanager
def atomic_folder(
    path: str | Path,
    *,
    overwrite: bool = False,
    replaceable: Callable[[Path], bool] = lambda entry: False,
) -> Iterator[Path]:
    """Yield an empty temporary folder whose entries end up in ``path`` if the block succeeds.

    A new or empty ``path`` is replaced by the temporary folder in one rename. A non-empty
    ``path`` needs ``overwrite``: then each entry of the temporary folder replaces the entry of
    the same name, entries for which ``replaceable(entry)`` is true and that were not written
    again are deleted (e.g. surplus slices of an older, deeper volume), and everything else in
    ``path`` stays. On an exception nothing in ``path`` changes.
    """
    path = Path(path)
    with output_errors(path), _temp_folder(path) as tmp:
        yield tmp
        if path.is_dir() and not path.is_symlink() and any(_entries(path)):
            if not overwrite:
                raise FileExistsError(f"{path} exists and is not empty; nothing was replaced")
            written = {p.name for p in tmp.iterdir()}
            for entry in list(_entries(path)):
                if entry.name not in written and replaceable(entry):
                    _remove(entry)
            for name in sorted(written):
                target = path / name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                os.replace(tmp / name, target)
            tmp.rmdir()
        else:
            os.chmod(tmp, output_mode(directory=True))
            _move_folder(tmp, path, replace=False)
    logger.debug("atomically wrote folder %s", path)


@contextmanager
def _temp_folder(path: Path) -> Iterator[Path]:
    """An empty temporary folder beside ``path``, removed if the block raises."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(), suffix="-" + path.name, dir=path.parent))
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_output(
    path: str | Path,
    *,
    inputs: Iterable[str | Path] = (),
    overwrite: bool = False,
    folder: bool = False,
    owned: Iterable[str] = (),
) -> Path:
    """Apply the output policy to ``path`` before any work starts (see the module notes).

    Parameters
    ----------
    path
        The output file or folder.
    inputs
        The command's inputs: ``path`` must not be, contain or lie inside any of them.
    overwrite
        Allow an existing output file, or a non-empty output folder, to be written into.
    folder
        ``path`` is a folder of outputs.
    owned
        For a folder with ``overwrite``: glob patterns of the entries the command writes;
        with no patterns, any non-empty folder is refused.

    Raises
    ------
    InputFileError
        Naming the path and the problem.
    """
    path = Path(path)
    for source in map(Path, inputs):
        if _same_path(path, source):
            raise InputFileError(path, f"is the input {source}; refusing to overwrite an input")
        src, out = source.resolve(), path.resolve()
        if (src.is_dir() and out.is_relative_to(src)) or (out.is_dir() and src.is_relative_to(out)):
            raise InputFileError(path, f"lies inside (or holds) the input {source}")
    if path.exists() and not path.is_dir() and folder:
        raise InputFileError(path, "exists and is a file, not a folder")
    if path.is_dir() and not folder:
        raise InputFileError(path, "is a folder; give a file name with an extension")
    if path.is_file() and not overwrite:
        raise InputFileError(path, "exists; use --overwrite to replace it")
    if path.is_dir() and any(_entries(path)):
        if not overwrite:
            raise InputFileError(
                path, "folder exists and is not empty; use --overwrite or another folder"
            )
        if not owned:
            raise InputFileError(
                path, "folder exists and is not empty; give an empty or new folder"
            )
    _check_writable(path)
    remove_stale_temporaries(path.parent if not path.is_dir() else path)
    return path


def _entries(folder: Path) -> Iterator[Path]:
    return (p for p in folder.iterdir() if not p.name.startswith(TEMP_PREFIX))


def _check_writable(path: Path) -> None:
    parent = path if path.is_dir() else path.parent
    while not parent.exists():
        if parent.parent == parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        raise InputFileError(path, f"cannot be created: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        readonly = hasattr(os, "statvfs") and bool(os.statvfs(parent).f_flag & os.ST_RDONLY)
        cause = "a read-only file system" if readonly else "no write permission"
        raise InputFileError(path, f"cannot be written: {cause} in {parent}")


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete ``.microsr-tmp-*`` entries in ``folder`` that a killed run left behind.

    A temporary is stale when it was made on this host by a process that no longer runs, or
    (made elsewhere, or by microsr 0.1 without a process tag) when it is older than a day.
    Temporaries of running processes (e.g. another shard of an array job writing into the
    same folder) are kept. Returns the removed paths.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in folder.glob(TEMP_PREFIX + "*"):
        if _is_stale(entry):
            logger.info("removing %s, left by an interrupted run", entry)
            _remove(entry)
            removed.append(entry)
    return removed


def _is_stale(entry: Path) -> bool:
    match = _TAGGED.match(entry.name)
    if match and match["host"] == _HOST:
        pid = int(match["pid"])
        if pid == os.getpid():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return False
    try:
        return time.time() - entry.lstat().st_mtime > _STALE_AGE_S
    except OSError:
        return False


def _remove(path: Path) -> None:
    """Delete a file or folder if it exists, logging (not raising) on failure."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    except OSError as exc:  # cleanup must not hide the original error
        logger.warning("could not remove temporary %s: %s", path, exc)
