"""Time as the routines see it: monotonic seconds, and waits that end early on a stop flag."""

from __future__ import annotations

import threading
import time
from typing import Final, Protocol, runtime_checkable

from typing_extensions import final

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Where scheduling reads the time and waits; `routines.testing.FakeClock` is the test one."""

    def now(self) -> float:
        """Monotonic seconds."""
        ...

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        """Wait until `event` is set (return True) or `timeout` seconds pass (return False)."""
        ...


@final
class SystemClock:
    """The real clock: `time.monotonic()` and `Event.wait()`."""

    def now(self) -> float:
        return time.monotonic()

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        return event.wait(timeout)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK: Final = SystemClock()
