"""The stop flag and the one-run-at-a-time rule that every routine kind of this library shares."""

from __future__ import annotations

import threading

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

    def run(self, name: str) -> _Run:
        """Hold one run of the routine: `with lifecycle.run(name) as go:`, `go` False when a
        stop was already asked."""
        return _Run(self, name)


class _Run:
    """One run of a routine; a plain class, as every idle routine thread holds one."""

    __slots__ = ("_lifecycle", "_marked", "_name")

    def __init__(self, lifecycle: Lifecycle, name: str) -> None:
        self._lifecycle = lifecycle
        self._name = name
        self._marked = running_as(lifecycle.flag)

    def __enter__(self) -> bool:
        lifecycle = self._lifecycle
        with lifecycle._lock:
            if lifecycle._running:
                msg = (
                    f"routine {self._name!r} is already running; "
                    "start() it from one thread at a time"
                )
                raise RuntimeError(msg)
            lifecycle._running = True
        self._marked.__enter__()
        return not lifecycle.flag.is_set()

    def __exit__(self, *exc_info: object) -> None:
        self._marked.__exit__()
        lifecycle = self._lifecycle
        with lifecycle._lock:
            lifecycle._running = False
            lifecycle.flag.clear()
