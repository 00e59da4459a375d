"""When a periodic routine runs next: fixed delay or fixed rate, with jitter.

A periodic loop asks its schedule, after each run (or batch of runs), how long to wait before the
next one. The schedules know nothing of threads or stop flags, so they are tested on plain
numbers.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Final, Protocol

from typing_extensions import final

__all__ = ["FixedDelay", "FixedRate", "Schedule", "SHORTEST_RATE"]

# The shortest interval a fixed rate counts due times with; any shorter one counts as this (a
# positive 5e-324 s would overflow the arithmetic, and its due times would not move the clock).
SHORTEST_RATE: Final = 1e-9


class Schedule(Protocol):
    def next_wait(self, now: float, interval: float) -> tuple[float, int]:
        """Seconds from `now` until the next run, and how many due times were skipped."""
        ...


def _jitter(fraction: float, uniform: Callable[[], float], interval: float) -> float:
    """A uniform random part of up to `fraction * interval` seconds."""
    return fraction * interval * uniform() if fraction else 0.0


@final
class FixedDelay:
    """The next run starts `interval` (plus jitter) after the last one ended."""

    __slots__ = ("_jitter", "_uniform")

    def __init__(self, jitter: float = 0.0, uniform: Callable[[], float] = random.random) -> None:
        self._jitter = jitter
        self._uniform = uniform

    def next_wait(self, now: float, interval: float) -> tuple[float, int]:
        return interval + _jitter(self._jitter, self._uniform, interval), 0


@final
class FixedRate:
    """Runs due at `anchor + k * interval`, rebased on the last due time when the interval changes.

    After a run that ends at t, the next is due at the first due time >= t; those skipped over
    are counted, never run in a burst. Each due time is computed from the anchor, never by
    adding intervals up, so the schedule can't drift; jitter is added to each due time afresh,
    so it never accumulates.
    """

    __slots__ = ("_anchor", "_index", "_interval", "_jitter", "_uniform")

    def __init__(
        self, anchor: float, jitter: float = 0.0, uniform: Callable[[], float] = random.random
    ) -> None:
        self._anchor = anchor
        self._interval: float | None = None
        self._index = 0  # the due time of the run that just ended
        self._jitter = jitter
        self._uniform = uniform

    def next_wait(self, now: float, interval: float) -> tuple[float, int]:
        due, missed = self.next_due(now, interval)
        return max(0.0, due + _jitter(self._jitter, self._uniform, interval) - now), missed

    def next_due(self, now: float, interval: float) -> tuple[float, int]:
        """The first due time >= `now` after the last one, and how many were skipped."""
        interval = max(interval, SHORTEST_RATE)
        if interval != self._interval:
            if self._interval is not None:
                self._anchor += self._index * self._interval
            self._interval = interval
            self._index = 0
        index = max(self._index + 1, math.ceil((now - self._anchor) / interval))
        # ceil() on floats may land one off; settle on the first due time >= now.
        if index - 1 > self._index and self._anchor + (index - 1) * interval >= now:
            index -= 1
        if self._anchor + index * interval < now:
            index += 1
        missed = index - self._index - 1
        self._index = index
        return self._anchor + index * interval, missed
