"""Read ahead and write behind: the two background threads of streaming prediction.

A reader thread runs an iterator of input blocks a few items ahead (:func:`prefetched`) and a
writer thread consumes output batches through a bounded queue (:class:`BackgroundWriter`),
so the model never waits for the disk and memory stays bounded by a few batches. Both threads
mostly wait on I/O; errors are re-raised in the calling thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator

import numpy as np


def prefetched(items: Iterable, depth: int) -> Iterator:
    """Iterate ``items`` in a background thread, ``depth`` items ahead."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(entry) -> bool:
        """Queue ``entry`` unless the consumer stopped (then a full queue would never drain)."""
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((done, None))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            put((done, exc))

    thread = threading.Thread(target=work, name="microsr-reader", daemon=True)
    thread.start()
    try:
        while True:
            item, exc = q.get()
            if exc is not None:
                raise exc
            if item is done:
                return
            yield item
    finally:
        stop.set()
        thread.join()


class BackgroundWriter:
    """Run ``write(batches)`` in a thread fed through a bounded queue."""

    _DONE, _ABORT = object(), object()

    def __init__(self, write: Callable[[Iterator[np.ndarray]], object], depth: int) -> None:
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, args=(write,), name="microsr-writer")
        self.thread.start()

    def _work(self, write) -> None:
        try:
            write(self._batches())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            self.error = exc

    def _batches(self) -> Iterator[np.ndarray]:
        while (item := self.q.get()) is not self._DONE:
            if item is self._ABORT:
                raise RuntimeError("prediction failed; output discarded")
            yield item

    def put(self, item) -> None:
        while self.thread.is_alive():
            try:
                self.q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        if self.error is not None:
            raise self.error

    def close(self, ok: bool) -> None:
        """Finish (``ok``) or abort the write; raise the writer's error only when ``ok``."""
        try:
            self.put(self._DONE if ok else self._ABORT)
        except BaseException:
            if ok:
                raise
        self.thread.join()
        if ok and self.error is not None:
            raise self.error
