"""`RunRecord`: how often a routine's work ran, failed, and how long it took; one per routine."""

from __future__ import annotations

import threading

from typing_extensions import final

from ._status import RoutineState, RoutineStatus, describe_error

__all__ = ["RunRecord"]


@final
class RunRecord:
    """The run counters of a periodic routine, a pool or a queue worker, safe from any thread.

    A run is one call of the handler. `ran()` counts it (and its failure, if it failed), before
    whoever waits on its outcome is told, so that the waiter sees it in `status()`.
    """

    __slots__ = (
        "_lock",
        "failures",
        "last_error",
        "last_run_duration",
        "missed_runs",
        "overdue_runs",
        "runs",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.runs = 0
        self.failures = 0
        self.missed_runs = 0
        self.overdue_runs = 0
        self.last_error: str | None = None
        self.last_run_duration: float | None = None

    def ran(
        self, duration: float, *, failure: BaseException | None = None, overdue: bool = False
    ) -> None:
        """Count a run that took `duration` seconds; `failure` if it failed."""
        described = describe_error(failure)  # outside the lock: it may run foreign code
        with self._lock:
            self.runs += 1
            self.last_run_duration = duration
            if overdue:
                self.overdue_runs += 1
            if described is not None:
                self.failures += 1
                self.last_error = described

    def failed(self, failure: BaseException) -> None:
        """Count a failure outside a run (an interval function that raised, say)."""
        described = describe_error(failure)
        with self._lock:
            self.failures += 1
            self.last_error = described

    def ended_by(self, error: BaseException) -> None:
        """Note the error that ended the routine (a BaseException): its last error, no failure."""
        described = describe_error(error)
        with self._lock:
            self.last_error = described

    def missed(self, count: int) -> None:
        """Count due times that passed without a run (a fixed rate's overrun)."""
        with self._lock:
            self.missed_runs += count

    def status(self, name: str, state: RoutineState, *, queued: int = 0) -> RoutineStatus:
        """A `RoutineStatus` of these counters, read at one moment."""
        with self._lock:
            return RoutineStatus(
                name=name,
                state=state,
                last_error=self.last_error,
                runs=self.runs,
                failures=self.failures,
                missed_runs=self.missed_runs,
                overdue_runs=self.overdue_runs,
                last_run_duration=self.last_run_duration,
                queued=queued,
            )

    def __repr__(self) -> str:
        return f"<RunRecord runs={self.runs} failures={self.failures}>"
