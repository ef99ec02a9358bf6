"""Atomic writes: write to a temporary sibling, then rename it onto the target.

A reader (or a crashed run) never sees a half-written file or folder: the target
either keeps its old content or gets the complete new one. The temporary path is
in the target's own folder so that the final :func:`os.replace` is a rename on
one file system, never a copy.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

#: Prefix of every temporary path made here; readers of folders skip such names.
TEMP_PREFIX = ".microsr-tmp-"


@contextmanager
def atomic_path(path: str | Path, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path that replaces ``path`` only if the block succeeds.

    Parameters
    ----------
    path
        Final file or folder. Missing parent folders are created.
    directory
        ``False``: the temporary path is an (empty, existing) file whose name ends
        with the target's name, so extension-based writers such as SimpleITK pick
        the same format (``.tmp-xyz-scan.nii.gz``). ``True``: the temporary path is
        an empty folder; on success an existing folder (or file) at ``path`` is
        replaced as a whole.

    Yields
    ------
    Path
        The temporary path to write to.

    Notes
    -----
    On any exception in the block the temporary file or folder is removed, ``path``
    is left untouched and the exception propagates.

    Examples
    --------
    >>> with atomic_path("out/scan.tif") as tmp:  # doctest: +SKIP
    ...     tifffile.imwrite(tmp, array)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, suffix="-" + path.name, dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix="-" + path.name, dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if directory:
            _replace_folder(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    logger.debug("atomically wrote %s", path)


def _replace_folder(tmp: Path, path: Path) -> None:
    """Rename folder ``tmp`` onto ``path``, moving an old ``path`` aside first.

    POSIX ``rename`` cannot replace a non-empty folder, so the old one is renamed
    to a backup, the new one moved in, and only then the backup deleted; if the
    move fails the backup is put back.
    """
    if not path.exists() and not path.is_symlink():
        os.replace(tmp, path)
        return
    backup = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX + "old-", dir=path.parent))
    backup.rmdir()
    os.replace(path, backup)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(backup, path)
        raise
    _remove(backup)


def _remove(path: Path) -> None:
    """Delete a file or folder if it exists, logging (not raising) on failure."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    except OSError as exc:  # cleanup must not hide the original error
        logger.warning("could not remove temporary %s: %s", path, exc)
