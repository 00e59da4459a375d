"""`StopCalls`: a Monitor's calls of every routine's `stop()` at shutdown, off its own thread."""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence

from typing_extensions import final

from ._helpers import Helpers
from ._logs import get_logger, log_error
from ._report import RoutineRecord

__all__ = ["StopCalls"]

logger = get_logger("monitor")


@final
class StopCalls:
    """Calls each routine's `stop()` on `helpers`, so one that blocks holds up only itself,
    and notes on its record that it returned and what it raised. `pending` counts the calls
    not returned; the last one wakes the Monitor's lock `cond`."""

    def __init__(self, cond: threading.Condition) -> None:
        self._cond = cond
        # The count has a lock of its own: a thousand returning stop() calls each taking the
        # Monitor's lock, which every ending routine needs too, made shutdown several times
        # slower. Only the last one takes it, to wake the Monitor (which reads `pending` under
        # it, so that wake-up cannot be missed).
        self._count = threading.Lock()
        self.pending = 0

    def expect(self, records: Sequence[RoutineRecord]) -> None:
        """Under the lock: the stop() of every record is about to be called."""
        for record in records:
            record.stop_pending = True
        with self._count:
            self.pending += len(records)

    def call(self, records: Sequence[RoutineRecord], helpers: Helpers) -> None:
        """Outside the lock, which every stop() takes when it returns: a helper done with one
        stop() is then free for the next at once, and a few helpers do the thousand stops."""
        for record in records:
            try:
                helpers.submit(functools.partial(self._call, record))
            except Exception as exc:  # noqa: BLE001 - no thread to call it on: report it
                log_error(logger, record.name, "stop_failed", "could not call its stop()")
                self._call(record, exc)

    def _call(self, record: RoutineRecord, error: BaseException | None = None) -> None:
        """Call the routine's stop() (unless `error` says it can't be), and note it returned."""
        if error is None:
            try:
                record.routine.stop()
            except BaseException as exc:  # noqa: BLE001 - logged, and in the report
                log_error(logger, record.name, "stop_raised", "stop() raised")
                error = exc
        record.stop_error = error
        record.stop_pending = False
        with self._count:
            self.pending -= 1
            last = not self.pending
        if last:
            with self._cond:
                self._cond.notify_all()
