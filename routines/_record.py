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

__all__ = ["RunRecord", "RunTally"]


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
        "_tallies",
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
        self._tallies: list[RunTally] | None = None  # made by the first tally()

    def tally(self) -> RunTally:
        """A counter of successful runs for one thread to write without a lock (a pool worker's:
        four workers taking one lock per job lost a fifth of the pool's throughput to it);
        `status()` adds it in. Make one per thread and keep it for the record's life."""
        tally = RunTally()
        with self._lock:
            if self._tallies is None:
                self._tallies = []
            self._tallies.append(tally)
        return tally

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
        """A `RoutineStatus` of these counters, read at one moment (the tallies' as their
        threads last wrote them)."""
        with self._lock:
            runs, duration_sum, buckets = self.runs, self._duration_sum, list(self._buckets)
            last_run_at, last_success_at = self.last_run_at, self.last_success_at
            last_run_duration = self.last_run_duration
            for tally in self._tallies or ():
                # The tally's buckets before its count: the count is written first, so read
                # last it is never behind the buckets.
                for index, count in enumerate(tally.buckets):
                    buckets[index] += count
                runs += tally.runs
                at, duration = tally.last_at, tally.last_duration
                duration_sum += tally.duration_sum
                if at is not None and (last_run_at is None or at > last_run_at):
                    last_run_at, last_run_duration = at, duration
                if at is not None and (last_success_at is None or at > last_success_at):
                    last_success_at = at
            return RoutineStatus(
                name=name,
                state=state,
                last_error=self.last_error,
                runs=runs,
                failures=self.failures,
                missed_runs=self.missed_runs,
                overdue_runs=self.overdue_runs,
                last_run_duration=last_run_duration,
                queued=queued,
                last_run_at=last_run_at,
                last_success_at=last_success_at,
                next_run_at=self.next_run_at,
                run_durations=DurationHistogram(
                    tuple(itertools.accumulate(buckets)), runs, duration_sum
                ),
            )

    def __repr__(self) -> str:
        return f"<RunRecord runs={self.runs} failures={self.failures}>"


@final
class RunTally:
    """Successful runs counted by one thread, which alone writes it, without a lock; its
    `RunRecord` adds it into `status()`. Each write is one attribute, so a reader sees every
    field as it was at some moment; the count is written before the bucket."""

    __slots__ = ("buckets", "duration_sum", "last_at", "last_duration", "runs")

    def __init__(self) -> None:
        self.runs = 0
        self.duration_sum = 0.0
        self.last_at: float | None = None  # wall clock, when the last run ended
        self.last_duration: float | None = None
        self.buckets = [0] * len(DURATION_BUCKETS)

    def succeeded(self, duration: float) -> None:
        """Count a run that took `duration` seconds and did not fail."""
        self.runs += 1
        bucket = bisect.bisect_left(DURATION_BUCKETS, duration)
        if bucket < len(self.buckets):
            self.buckets[bucket] += 1
        self.duration_sum += duration
        self.last_duration = duration
        self.last_at = time.time()
