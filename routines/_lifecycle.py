"""The stop flag and the one-run-at-a-time rule that every routine kind of this library shares."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ._context import running_as
from ._flag import Flag

__all__ = ["Lifecycle"]


class Lifecycle:
    """A routine's stop flag, with the protocol's rules about when a stop applies.

    A stop asked while a run is going applies to that run; one asked while none is going
    applies to the next `start()`, which then returns at once. Either way the request is used up
    when that `start()` returns, so the routine can be started again (by a restart policy, or a
    new Monitor).
    """

    __slots__ = ("_lock", "_running", "flag")

    def __init__(self) -> None:
        self.flag = Flag()
        self._lock = threading.Lock()
        self._running = False

    @property
    def stopping(self) -> bool:
        return self.flag.is_set()

    def stop(self) -> None:
        self.flag.set()

    @contextmanager
    def run(self, name: str) -> Iterator[bool]:
        """Hold one run of the routine; yields False when a stop was already asked."""
        with self._lock:
            if self._running:
                msg = f"routine {name!r} is already running; start() it from one thread at a time"
                raise RuntimeError(msg)
            self._running = True
        try:
            with running_as(self.flag):
                yield not self.flag.is_set()
        finally:
            with self._lock:
                self._running = False
                self.flag.clear()
