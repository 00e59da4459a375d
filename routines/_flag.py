"""`Flag`: a `threading.Event` that can also wake other waiters when it is set.

A plain `Event` can't be waited on together with anything else (a fake clock's advance, another
routine's stop flag). A `Flag` calls its listeners on `set()`, so `wait_any()` and `FakeClock`
wake on "deadline or stop" without polling.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

__all__ = ["Flag", "wait_any"]

_listeners_lock = threading.Lock()


class Flag(threading.Event):
    """An `Event` whose `set()` also calls every subscribed listener (outside its lock)."""

    def __init__(self) -> None:
        super().__init__()
        # Most flags never get a listener, and every routine has a flag or two: the list is made
        # on the first subscribe(), and one lock for all flags guards the lists.
        self._listeners: list[Callable[[], object]] | None = None

    def set(self) -> None:
        super().set()
        if self._listeners is None:  # never subscribed: no need to take the shared lock
            return
        with _listeners_lock:
            listeners = tuple(self._listeners)
        for listener in listeners:
            listener()

    def subscribe(self, listener: Callable[[], object]) -> None:
        """Call `listener` on every later `set()`. Check `is_set()` after subscribing."""
        with _listeners_lock:
            if self._listeners is None:
                self._listeners = []
            self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[], object]) -> None:
        with _listeners_lock:
            if self._listeners is None:
                raise ValueError(listener)
            self._listeners.remove(listener)


def wait_any(flags: Sequence[Flag], timeout: float | None) -> bool:
    """Wait until any of `flags` is set or `timeout` runs out; True if one is set."""
    if len(flags) == 1:
        return flags[0].wait(timeout)
    if any(flag.is_set() for flag in flags):
        return True
    woken = threading.Event()
    for flag in flags:
        flag.subscribe(woken.set)
    try:
        if not any(flag.is_set() for flag in flags):
            woken.wait(timeout)
        return any(flag.is_set() for flag in flags)
    finally:
        for flag in flags:
            flag.unsubscribe(woken.set)
