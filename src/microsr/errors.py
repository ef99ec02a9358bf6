"""Exceptions raised by microsr for bad input.

Every error a user can cause (a bad file, a bad manifest, a bad checkpoint) is a
:class:`MicrosrError`; the CLI prints its message and exits with a non-zero code,
without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class MicrosrError(Exception):
    """A problem with the user's input that microsr can describe in one sentence."""


class InputFileError(MicrosrError):
    """A file or folder that cannot be used, with the path named in the message.

    Parameters
    ----------
    path
        The offending file or folder.
    problem
        What is wrong with it, e.g. ``"truncated TIFF (expected 4096 bytes, got 1200)"``.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
