"""`RunRecord`: the run counters that periodic routines, pools and queue workers share."""

from __future__ import annotations

import threading

from routines import RoutineStatus
from routines._record import RunRecord

from helpers import Unprintable


def test_a_new_record_has_counted_nothing() -> None:
    assert RunRecord().status("r", "idle") == RoutineStatus("r", "idle")


def test_runs_failures_and_the_last_run_are_counted() -> None:
    record = RunRecord()
    record.ran(0.5)
    record.ran(1.5, failure=ValueError("bad"), overdue=True)
    record.failed(TypeError("not a number"))
    record.missed(3)
    assert record.status("r", "running", queued=2) == RoutineStatus(
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
