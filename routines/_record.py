"""`RunRecord`: how often a routine's work ran, failed, and how long it took; one per routine."""

from __future__ import annotations

import bisect
import itertools
import threading
import time

from typing_extensions import final

from ._status import (
    DURATION_BUCKETS,
    DurationHistogram,
    RoutineState,
    RoutineStatus,
    describe_error,
)

__all__ = ["RunRecord"]


@final
class RunRecord:
    """The run counters of a periodic routine, a pool or a queue worker, safe from any thread.

    A run is one call of the handler. `ran()` counts it (and its failure, if it failed), before
    whoever waits on its outcome is told, so that the waiter sees it in `status()`.
    """

    __slots__ = (
        "_buckets",
        "_duration_sum",
        "_lock",
        "failures",
        "last_error",
        "last_run_at",
        "last_run_duration",
        "last_success_at",
        "missed_runs",
        "next_run_at",
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
        self.last_run_at: float | None = None  # wall clock, when the last run ended
        self.last_success_at: float | None = None  # ... and the last one that did not fail
        self.next_run_at: float | None = None  # wall clock, when the next run is due
        self._buckets = [0] * len(DURATION_BUCKETS)  # runs per bucket (not cumulative)
        self._duration_sum = 0.0

    def succeeded(self, duration: float) -> None:
        """`ran(duration)` of a run that did not fail: the pool's hot path, kept short."""
        ended = time.time()
        bucket = bisect.bisect_left(DURATION_BUCKETS, duration)
        with self._lock:
            self.runs += 1
            self.last_run_duration = duration
            self.last_run_at = self.last_success_at = ended
            self._duration_sum += duration
            if bucket < len(self._buckets):
                self._buckets[bucket] += 1

    def ran(
        self,
        duration: float,
        *,
        failure: BaseException | None = None,
        counted: bool = True,
        overdue: bool = False,
    ) -> None:
        """Count a run that took `duration` seconds and raised `failure`, if it did.

        A `failure` that is `counted` is a failure and the last error; one that is not (raised
        after a stop was asked, or a BaseException that ends the routine) is neither, but the
        run is not a success either.
        """
        # Outside the lock: describing runs foreign code.
        described = describe_error(failure) if counted and failure is not None else None
        ended = time.time()
        bucket = bisect.bisect_left(DURATION_BUCKETS, duration)
        with self._lock:
            self.runs += 1
            self.last_run_duration = duration
            self.last_run_at = ended
            self._duration_sum += duration
            if bucket < len(self._buckets):
                self._buckets[bucket] += 1
            if overdue:
                self.overdue_runs += 1
            if failure is None:
                self.last_success_at = ended
            elif counted:
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

    def scheduled(self, at: float | None) -> None:
        """The next run is due at wall-clock time `at` (None: no run is scheduled)."""
        self.next_run_at = at

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
                last_run_at=self.last_run_at,
                last_success_at=self.last_success_at,
                next_run_at=self.next_run_at,
                run_durations=DurationHistogram(
                    tuple(itertools.accumulate(self._buckets)), self.runs, self._duration_sum
                ),
            )

    def __repr__(self) -> str:
        return f"<RunRecord runs={self.runs} failures={self.failures}>"
