"""`RunRecord`: the run counters that periodic routines, pools and queue workers share."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from routines import RoutineStatus
from routines._record import RunRecord, RunTally
from routines._status import DURATION_BUCKETS

from helpers import Unprintable


def counters(status: RoutineStatus) -> RoutineStatus:
    """The status without its wall-clock times."""
    return replace(status, last_run_at=None, last_success_at=None, next_run_at=None)


def test_a_new_record_has_counted_nothing() -> None:
    assert RunRecord().status("r", "idle") == RoutineStatus("r", "idle")


def test_runs_failures_and_the_last_run_are_counted() -> None:
    record = RunRecord()
    record.ran(0.5)
    record.ran(1.5, failure=ValueError("bad"), overdue=True)
    record.failed(TypeError("not a number"))
    record.missed(3)
    assert counters(record.status("r", "running", queued=2)) == RoutineStatus(
        name="r",
        state="running",
        last_error="TypeError: not a number",
        runs=2,
        failures=2,
        missed_runs=3,
        overdue_runs=1,
        last_run_duration=1.5,
        queued=2,
    )


def test_the_error_that_ended_a_routine_is_its_last_error_but_no_failure() -> None:
    record = RunRecord()
    record.ran(0.1)
    record.ended_by(SystemExit(3))
    status = record.status("r", "stopped")
    assert (status.runs, status.failures, status.last_error) == (1, 0, "SystemExit: 3")


def test_a_failure_whose_str_raises_is_counted_and_described() -> None:
    record = RunRecord()
    record.ran(0.1, failure=Unprintable())
    assert record.status("r", "running").last_error == "Unprintable: <str() failed> Unprintable()"


def test_counting_from_many_threads_loses_nothing() -> None:
    record = RunRecord()

    def count() -> None:
        for _ in range(2000):
            record.ran(0.0)

    threads = [threading.Thread(target=count) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert record.status("r", "running").runs == 8000


def test_tallies_written_by_their_own_threads_add_into_the_status() -> None:
    record = RunRecord()
    record.ran(0.3, failure=ValueError("counted by the record"))
    tallies = [record.tally() for _ in range(4)]

    def count(tally: RunTally) -> None:
        for _ in range(2000):
            tally.succeeded(0.001)

    threads = [threading.Thread(target=count, args=(tally,)) for tally in tallies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    status = record.status("r", "running")
    assert (status.runs, status.failures) == (8001, 1)
    histogram = status.run_durations
    assert histogram is not None
    buckets = dict(zip(DURATION_BUCKETS, histogram.counts, strict=True))
    counts = (buckets[0.005], buckets[0.25], buckets[0.5], histogram.count)
    assert counts == (8000, 8000, 8001, 8001)
    assert histogram.sum == pytest.approx(8 + 0.3)


def test_the_latest_run_of_a_record_or_its_tallies_is_its_last_run() -> None:
    record = RunRecord()
    tally = record.tally()
    record.ran(0.5, failure=ValueError("bad"))
    failed_at = record.status("r", "running").last_run_at
    tally.succeeded(0.25)
    status = record.status("r", "running")
    assert failed_at is not None
    assert status.last_run_at is not None
    assert status.last_run_at >= failed_at
    assert (status.last_run_duration, status.last_success_at) == (0.25, status.last_run_at)


def test_runs_record_when_they_ended_and_when_one_last_succeeded() -> None:
    record = RunRecord()
    before = time.time()
    record.ran(0.1)
    succeeded = record.status("r", "running").last_success_at
    record.ran(0.1, failure=ValueError("bad"))
    status = record.status("r", "running")
    assert succeeded is not None
    assert status.last_run_at is not None
    assert before <= succeeded <= status.last_run_at
    assert status.last_success_at == succeeded  # the failed run is no success


def test_an_uncounted_failure_is_neither_a_failure_nor_a_success() -> None:
    record = RunRecord()
    record.ran(0.1, failure=ValueError("after stop"), counted=False)
    status = record.status("r", "running")
    assert (status.runs, status.failures, status.last_error) == (1, 0, None)
    assert status.last_success_at is None


def test_the_next_run_is_what_was_scheduled_last() -> None:
    record = RunRecord()
    record.scheduled(1234.5)
    assert record.status("r", "running").next_run_at == 1234.5
    record.scheduled(None)
    assert record.status("r", "running").next_run_at is None


def test_run_durations_are_counted_into_cumulative_buckets() -> None:
    record = RunRecord()
    for duration in (0.001, 0.005, 0.3, 7.0, 1000.0):
        record.ran(duration, failure=ValueError("counted too") if duration > 1 else None)
    histogram = record.status("r", "running").run_durations
    assert histogram is not None
    buckets = dict(zip(DURATION_BUCKETS, histogram.counts, strict=True))
    # 0.005 is in the 0.005 bucket: a bucket's bound is inclusive, as in Prometheus.
    assert (buckets[0.005], buckets[0.25], buckets[0.5], buckets[5.0], buckets[10.0]) == (
        2,
        2,
        3,
        3,
        4,
    )
    assert buckets[300.0] == 4  # the longest run is only in the count (Prometheus' +Inf)
    assert histogram.count == 5
    assert histogram.sum == 0.001 + 0.005 + 0.3 + 7.0 + 1000.0
    assert histogram.to_dict()["buckets"] == {str(bound): n for bound, n in buckets.items()}


def test_a_status_without_runs_has_an_empty_histogram_that_does_not_change_equality() -> None:
    histogram = RunRecord().status("r", "idle").run_durations
    assert histogram is not None
    assert (set(histogram.counts), histogram.count, histogram.sum) == ({0}, 0, 0.0)
    assert RunRecord().status("r", "idle") == RoutineStatus("r", "idle", run_durations=None)
