"""The stop flag and the one-run-at-a-time rule that every routine kind of this library shares."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Literal, TypeAlias

from ._context import running_as, stopping
from ._flag import Flag

__all__ = ["Lifecycle", "StatefulLifecycle"]

_RunState: TypeAlias = Literal["idle", "running", "stopped", "failed"]


class Lifecycle:
    """A routine's stop flag, with the protocol's rules about when a stop applies.

    A stop asked while a run is going applies to that run, and is used up when it returns. One
    asked before the first `start()` applies to that start, which then returns at once. One
    that arrives after a run has ended applies to no later run: it was meant for the run that
    is over (a supervisor marks the thread stopping before its `stop()` arrives, and a loop that
    watches `routines.stopping()` may return first), and a restart or a new Monitor must start
    the routine afresh. A supervisor that asks a stop before a later `start()` has begun marks
    that thread stopping, and `start()` then returns at once too.
    """

    __slots__ = ("_has_run", "_lock", "_running", "flag")

    def __init__(self) -> None:
        self.flag = Flag()
        self._lock = threading.Lock()
        self._running = False
        self._has_run = False

    @property
    def stopping(self) -> bool:
        return self.flag.is_set()

    def stop(self) -> bool:
        """Ask a stop; True if a run is going, to which it applies."""
        with self._lock:  # held while setting: a run that is ending must not miss it, or keep it
            if self._running or not self._has_run:
                self.flag.set()
            return self._running

    def run(self, name: str) -> _Run:
        """Hold one run of the routine: `with lifecycle.run(name) as go:`, `go` False when a
        stop was already asked."""
        return _Run(self, name)

    def begin(self, name: str) -> bool:
        """A run of the routine `name` begins on this thread; False if a stop is asked for it."""
        with self._lock:
            if self._running:
                msg = f"routine {name!r} is already running; start() it from one thread at a time"
                raise RuntimeError(msg)
            self._running = True
            self._has_run = True
        # A supervisor (a Monitor, a CombinedRoutine) that marked this thread stopping asked for
        # a stop that may have reached stop() before this run began: it is for this run.
        return not (stopping() or self.flag.is_set())

    def end(self) -> None:
        """The run is over: a stop asked for it is used up."""
        with self._lock:
            self._running = False
            self.flag.clear()


class _Run:
    """One run of a routine; a plain class, as every idle routine thread holds one."""

    __slots__ = ("_lifecycle", "_marked", "_name")

    def __init__(self, lifecycle: Lifecycle, name: str) -> None:
        self._lifecycle = lifecycle
        self._name = name
        self._marked = running_as(lifecycle.flag)

    def __enter__(self) -> bool:
        go = self._lifecycle.begin(self._name)
        self._marked.__enter__()
        return go

    def __exit__(self, *exc_info: object) -> None:
        self._marked.__exit__()
        self._lifecycle.end()


class StatefulLifecycle(Lifecycle):
    """A Lifecycle that also keeps the state a routine's `status()` reports: idle until the
    first start, running during a run (stopping once a stop was asked for it), then stopped, or
    failed if the run raised."""

    __slots__ = ("_state",)

    def __init__(self) -> None:
        super().__init__()
        self._state: _RunState = "idle"

    @property
    def state(self) -> Literal["idle", "running", "stopping", "stopped", "failed"]:
        state = self._state
        return "stopping" if state == "running" and self.stopping else state

    def run_through(self, name: str, body: Callable[[], object]) -> None:
        """One run of the routine `name`: `body()`, unless a stop was already asked."""
        with self.run(name) as go:
            self._state = "running"
            try:
                if go:
                    body()
            except BaseException:
                self._state = "failed"
                raise
            self._state = "stopped"
