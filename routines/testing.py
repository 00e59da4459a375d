"""Helpers for testing code built on `routines`: `FakeClock`, a clock that moves only when told.

```python
clock = FakeClock()
routine = PeriodicRoutine(handler, interval=60, clock=clock)
# start it on a thread, then:
clock.wait_for_sleepers(1)  # the first run is done and the routine waits for the next
clock.advance(60)           # wakes that wait; the second run starts
clock.wait_for_sleepers(1)  # the second run is done
```
"""

from __future__ import annotations

import math
import threading
from typing import Final

from typing_extensions import final

from ._flag import Flag
from ._validate import check_int, check_seconds

__all__ = ["FakeClock"]

# How often a wait on a plain `threading.Event` (not a `Flag`) checks whether it was set: such an
# event can't notify the clock, so this bounds how late such a wait notices it.
_PLAIN_EVENT_SLICE: Final = 0.002


class _Waiter:
    __slots__ = ("deadline", "woken")

    def __init__(self) -> None:
        self.deadline = math.inf
        self.woken = threading.Event()


@final
class FakeClock:
    """A `routines.Clock` whose time moves only by `advance()`, for deterministic tests.

    `wait(event, timeout)` blocks the calling thread until `advance()` brings the time to its
    deadline (deadline <= `now()`) or until `event` is set. A wait with a timeout <= 0, or on an
    event that is already set, returns at once and is never pending. When `event` is a
    `routines` stop flag (every routine of this library waits on one), setting it wakes the wait
    at once; on a plain `threading.Event` the wait notices the set within a few milliseconds of
    real time.
    """

    def __init__(self, start: float = 0.0) -> None:
        if not isinstance(start, (int, float)) or isinstance(start, bool):
            msg = f"start must be a number of seconds, got {start!r}"
            raise TypeError(msg)
        try:
            now = float(start)
        except OverflowError:  # an int too large for a float
            now = math.inf
        if not math.isfinite(now):
            msg = f"start must be a finite number of seconds, got {start!r}"
            raise ValueError(msg)
        self._now = now
        self._cond = threading.Condition(threading.Lock())
        self._waiters: list[_Waiter] = []

    def now(self) -> float:
        with self._cond:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move the time forward and wake every wait that is due.

        When it returns, the woken waits no longer count in `sleepers()`, so a following
        `wait_for_sleepers()` waits for new waits.
        """
        step = check_seconds("seconds", seconds)
        with self._cond:
            self._now += step
            due = [waiter for waiter in self._waiters if waiter.deadline <= self._now]
            for waiter in due:
                self._waiters.remove(waiter)
                waiter.woken.set()

    def sleepers(self) -> int:
        """How many waits are pending now."""
        with self._cond:
            return len(self._waiters)

    def wait_for_sleepers(self, count: int = 1, timeout: float = 5.0) -> None:
        """Block, in real time, until at least `count` waits are pending.

        Raises `TimeoutError` when they are not after `timeout` real seconds.
        """
        wanted = check_int("count", count, minimum=0)
        limit = check_seconds("timeout", timeout)
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._waiters) >= wanted, limit):
                msg = (
                    f"expected at least {wanted} pending waits on the fake clock within "
                    f"{limit}s, got {len(self._waiters)}"
                )
                raise TimeoutError(msg)

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        """Wait until `event` is set (True) or the fake time reaches the deadline (False)."""
        if event.is_set():
            return True
        if timeout is not None and timeout <= 0:
            return False
        waiter = _Waiter()

        def release() -> None:
            self._release(waiter)

        flag = event if isinstance(event, Flag) else None
        if flag is not None:
            flag.subscribe(release)
        try:
            with self._cond:
                if event.is_set():  # set before we subscribed
                    return True
                if timeout is not None:
                    waiter.deadline = self._now + timeout
                self._waiters.append(waiter)
                self._cond.notify_all()
            if flag is not None:
                waiter.woken.wait()
            else:
                # allowed: a plain Event can't tell us it was set, so look at it every slice.
                while not waiter.woken.wait(_PLAIN_EVENT_SLICE):
                    if event.is_set():
                        break
            return event.is_set()
        finally:
            if flag is not None:
                flag.unsubscribe(release)
            self._release(waiter)

    def _release(self, waiter: _Waiter) -> None:
        with self._cond:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            waiter.woken.set()

    def __repr__(self) -> str:
        with self._cond:
            return f"<FakeClock now={self._now} sleepers={len(self._waiters)}>"
