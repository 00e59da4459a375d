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
    and notes on its record, under the Monitor's lock `cond`, that it returned and what it
    raised. `pending` (guarded by `cond`) counts the calls not returned; the last wakes `cond`."""

    def __init__(self, cond: threading.Condition) -> None:
        self._cond = cond
        self.pending = 0

    def expect(self, records: Sequence[RoutineRecord]) -> None:
        """Under the lock: the stop() of every record is about to be called."""
        for record in records:
            record.stop_pending = True
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
        with self._cond:
            record.stop_error = error
            record.stop_pending = False
            self.pending -= 1
            if not self.pending:
                self._cond.notify_all()
