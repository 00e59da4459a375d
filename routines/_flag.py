"""`Flag`: a `threading.Event` that can also wake other waiters when it is set.

A plain `Event` can't be waited on together with anything else (a fake clock's advance, another
routine's stop flag). A `Flag` calls its listeners on `set()`, so `wait_any()` and `FakeClock`
wake on "deadline or stop" without polling.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence

__all__ = ["Flag", "wait_any"]

# One lock for every flag's state changes and listener lists: set(), clear() and subscribe()
# are rare, and a lock per flag would cost every idle routine memory for nothing.
_shared_lock = threading.Lock()


def _new_shared_lock_after_fork() -> None:
    global _shared_lock
    _shared_lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_new_shared_lock_after_fork)


class Flag(threading.Event):
    """An `Event` whose `set()` also calls every subscribed listener (outside any lock).

    It is built on one plain lock, the gate, held while the flag is unset, instead of the
    `Condition` a `threading.Event` makes: every routine has a flag, and a thousand idle routines
    should cost little more than their threads. A waiter passes the gate (acquires and releases
    it at once) when the flag is set. Every method of `Event` is overridden.
    """

    def __init__(self) -> None:  # not Event.__init__: it would build the Condition this avoids
        self._gate = threading.Lock()
        self._gate.acquire()
        self._set = False
        # Most flags never get a listener: the list is made on the first subscribe().
        self._listeners: list[Callable[[], object]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        with _shared_lock:
            if self._set:
                return
            self._set = True
            gate = self._gate
            listeners = tuple(self._listeners) if self._listeners else ()
        # Opened outside the shared lock: the waiter it wakes, and every other flag's set() or
        # clear(), need not wait for it. A clear() in between made a new gate; this old one's
        # waiters get through, as they would from a real Event set and cleared at once.
        gate.release()
        for listener in listeners:
            listener()

    def clear(self) -> None:
        if not self._set:
            return
        with _shared_lock:
            if not self._set:
                return
            # A new gate, closed: waiters still passing the old, open one get through, as they
            # would from a real Event set and cleared at once.
            gate = threading.Lock()
            gate.acquire()
            self._gate = gate
            self._set = False

    def wait(self, timeout: float | None = None) -> bool:
        gate = self._gate  # read before the flag: a clear() after this can't close it
        if self._set:
            return True
        if timeout is None:
            passed = gate.acquire()
        elif timeout > 0:
            passed = gate.acquire(True, timeout)
        else:
            passed = gate.acquire(False)
        if passed:  # a gate opens only when the flag is set, even if cleared since
            gate.release()
            return True
        return self._set

    def subscribe(self, listener: Callable[[], object]) -> None:
        """Call `listener` on every later `set()`. Check `is_set()` after subscribing."""
        with _shared_lock:
            if self._listeners is None:
                self._listeners = []
            self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[], object]) -> None:
        with _shared_lock:
            if self._listeners is None:
                raise ValueError(listener)
            self._listeners.remove(listener)

    def __repr__(self) -> str:
        return f"<Flag {'set' if self._set else 'unset'}>"


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
