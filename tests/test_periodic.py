"""`PeriodicRoutine` on a FakeClock: when it runs (fixed delay, fixed rate, initial delay,
interval functions, jitter, `REINVOKE_IMMEDIATELY` batches), stop and `on_shutdown`, starting
again, overdue runs, status and names.

The routine gets a fresh FakeClock from the `clock` fixture and runs on a thread started by
the `run` fixture (both in conftest.py). These tests check that the routine keeps to its
schedule; the schedules' arithmetic alone is in test_schedule.py. Several loops at once are in
test_periodic_concurrency.py, errors in test_periodic_errors.py.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest

import routines
from routines import REINVOKE_IMMEDIATELY, PeriodicRoutine
from routines.testing import FakeClock

from helpers import LOG, Calls, ObjectHandler, Started, step

# -- timing ------------------------------------------------------------------------------------


def test_the_first_run_starts_at_once(clock: FakeClock, run: Callable[..., Started]) -> None:
    calls = Calls(clock)
    run(PeriodicRoutine(calls, interval=10, clock=clock))
    clock.wait_for_sleepers(1)
    assert calls.times == [0.0]


def test_each_interval_advanced_runs_the_handler_once(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    calls = Calls(clock)
    run(PeriodicRoutine(calls, interval=10, clock=clock))
    clock.wait_for_sleepers(1)
    for expected in (2, 3, 4):
        step(clock, 10)
        assert calls.count == expected


def test_advancing_less_than_the_interval_runs_nothing(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    calls = Calls(clock)
    run(PeriodicRoutine(calls, interval=10, clock=clock))
    clock.wait_for_sleepers(1)
    clock.advance(9.999)
    assert clock.sleepers() == 1
    assert calls.count == 1


def test_advancing_several_intervals_at_once_runs_the_handler_once(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    calls = Calls(clock)
    run(PeriodicRoutine(calls, interval=10, clock=clock))
    clock.wait_for_sleepers(1)
    step(clock, 35)
    assert calls.count == 2


def test_initial_delay_postpones_the_first_run(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    calls = Calls(clock)
    run(PeriodicRoutine(calls, interval=10, initial_delay=timedelta(seconds=5), clock=clock))
    clock.wait_for_sleepers(1)
    assert calls.count == 0
    step(clock, 5)
    assert calls.times == [5.0]


def test_a_timedelta_interval_is_accepted(clock: FakeClock, run: Callable[..., Started]) -> None:
    calls = Calls(clock)
    run(PeriodicRoutine(calls, interval=timedelta(minutes=1), clock=clock))
    clock.wait_for_sleepers(1)
    step(clock, 60)
    assert calls.times == [0.0, 60.0]


def test_fixed_delay_counts_the_interval_from_the_end_of_a_run(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    calls = Calls(clock, takes=3)
    run(PeriodicRoutine(calls, interval=10, clock=clock))
    clock.wait_for_sleepers(1)
    clock.advance(9.999)
    assert calls.count == 1
    step(clock, 0.001)
    step(clock, 10)
    assert calls.times == [0.0, 13.0, 26.0]


def test_fixed_rate_runs_are_due_at_start_plus_k_intervals(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    calls = Calls(clock, takes=3)
    run(PeriodicRoutine(calls, interval=10, fixed_rate=True, clock=clock))
    clock.wait_for_sleepers(1)
    step(clock, 7)
    step(clock, 7)
    assert calls.times == [0.0, 10.0, 20.0]


def test_fixed_rate_never_drifts_however_long_the_runs_take(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    calls = Calls(clock, takes=[0.3, 9.9, 0.0, 4.7, 0.1, 7.3, 2.2, 9.99, 0.01, 5.5] * 5)
    routine = PeriodicRoutine(calls, interval=10, fixed_rate=True, initial_delay=1, clock=clock)
    run(routine)
    clock.wait_for_sleepers(1)
    for k in range(50):
        step(clock, 1 + 10 * k - clock.now())
    assert calls.times == pytest.approx([1 + 10 * k for k in range(50)], abs=1e-9)
    assert routine.status().missed_runs == 0


def test_fixed_rate_skips_and_counts_the_due_times_a_long_run_overran(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    calls = Calls(clock, takes=[25.0])
    routine = PeriodicRoutine(calls, interval=10, fixed_rate=True, clock=clock)
    run(routine)
    clock.wait_for_sleepers(1)
    assert routine.status().missed_runs == 2  # due at 10 and 20
    step(clock, 5)
    assert calls.times == [0.0, 30.0]  # one run at the next due time, not a burst of three


def test_a_run_ending_exactly_at_a_due_time_is_not_missed(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    calls = Calls(clock, takes=[10.0])
    routine = PeriodicRoutine(calls, interval=10, fixed_rate=True, clock=clock)
    run(routine)
    clock.wait_for_sleepers(1)
    assert calls.times == [0.0, 10.0]  # the one due at 10 ran at once, when the first run ended
    assert routine.status().missed_runs == 0


# -- interval functions ------------------------------------------------------------------------


def test_an_interval_function_is_read_before_every_wait(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    intervals = iter([5, 7, timedelta(seconds=3)])
    calls = Calls(clock)
    run(PeriodicRoutine(calls, interval=lambda: next(intervals), clock=clock))
    clock.wait_for_sleepers(1)
    step(clock, 5)
    step(clock, 7)
    step(clock, 3)
    assert calls.times == [0.0, 5.0, 12.0, 15.0]


def test_fixed_rate_follows_a_changed_interval_from_the_last_due_time(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    intervals = iter([10, 10, 4, 4, 4])
    calls = Calls(clock, takes=1)
    run(PeriodicRoutine(calls, interval=lambda: next(intervals), fixed_rate=True, clock=clock))
    clock.wait_for_sleepers(1)
    for _ in range(4):
        step(clock, calls.times[-1] + (10 if len(calls.times) < 3 else 4) - clock.now())
    assert calls.times == [0.0, 10.0, 20.0, 24.0, 28.0]


def test_an_interval_function_that_raises_is_reported_and_the_last_valid_interval_is_used(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    def interval() -> float:
        if not intervals:
            raise RuntimeError("no interval")
        return intervals.pop()

    intervals = [5.0]
    errors: list[Exception] = []
    calls = Calls(clock)
    routine = PeriodicRoutine(calls, interval=interval, on_error=errors.append, clock=clock)
    run(routine)
    clock.wait_for_sleepers(1)
    step(clock, 5)
    step(clock, 5)
    assert calls.times == [0.0, 5.0, 10.0]
    assert [str(error) for error in errors] == ["no interval", "no interval"]
    assert routine.status().failures == 2


def test_an_invalid_interval_without_a_valid_one_before_falls_back_to_one_second(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    errors: list[Exception] = []
    calls = Calls(clock)
    run(PeriodicRoutine(calls, interval=lambda: -1, on_error=errors.append, clock=clock))
    clock.wait_for_sleepers(1)
    step(clock, 1)
    assert calls.times == [0.0, 1.0]
    assert isinstance(errors[0], ValueError)
    assert "must be a positive finite number of seconds, got -1" in str(errors[0])


def test_an_interval_function_of_the_wrong_type_is_reported(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    errors: list[Exception] = []
    run(PeriodicRoutine(Calls(clock), interval=lambda: "5", on_error=errors.append, clock=clock))
    clock.wait_for_sleepers(1)
    assert isinstance(errors[0], TypeError)


# -- jitter ------------------------------------------------------------------------------------


class Half(random.Random):
    """A random source whose every jitter fraction is 0.5."""

    def random(self) -> float:
        return 0.5


def test_jitter_lengthens_each_wait_by_a_random_part_of_jitter_times_interval(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    calls = Calls(clock)
    run(PeriodicRoutine(calls, interval=10, jitter=0.2, clock=clock, rng=Half()))
    clock.wait_for_sleepers(1)
    clock.advance(10.999)
    assert calls.count == 1
    step(clock, 0.001)
    step(clock, 11)
    assert calls.times == [0.0, 11.0, 22.0]


def test_jitter_stays_within_its_bound(clock: FakeClock, run: Callable[..., Started]) -> None:
    calls = Calls(clock)
    run(PeriodicRoutine(calls, interval=10, jitter=0.5, clock=clock))
    clock.wait_for_sleepers(1)
    for expected in range(2, 12):
        clock.advance(9.999)
        assert calls.count == expected - 1  # never shorter than the interval
        step(clock, 5.001)  # never longer than interval * (1 + jitter)
        assert calls.count == expected


def test_fixed_rate_jitter_is_added_to_each_due_time_and_never_accumulates(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    calls = Calls(clock)
    run(PeriodicRoutine(calls, interval=10, jitter=0.2, fixed_rate=True, clock=clock, rng=Half()))
    clock.wait_for_sleepers(1)
    for _ in range(3):
        step(clock, 10 * len(calls.times) + 1 - clock.now())
    assert calls.times == [0.0, 11.0, 21.0, 31.0]


def test_the_initial_delay_has_no_jitter(clock: FakeClock, run: Callable[..., Started]) -> None:
    calls = Calls(clock)
    run(PeriodicRoutine(calls, interval=10, jitter=0.9, initial_delay=3, clock=clock))
    clock.wait_for_sleepers(1)
    step(clock, 3)
    assert calls.times == [3.0]


# -- reinvocation ------------------------------------------------------------------------------


def test_reinvoke_immediately_runs_batches_of_max_consecutive_reinvocations(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    calls = Calls(clock, result=REINVOKE_IMMEDIATELY)
    run(PeriodicRoutine(calls, interval=10, max_consecutive_reinvocations=3, clock=clock))
    clock.wait_for_sleepers(1)
    assert calls.count == 3
    step(clock, 10)
    assert calls.count == 6


def test_the_default_batch_is_100_runs(clock: FakeClock, run: Callable[..., Started]) -> None:
    calls = Calls(clock, result=REINVOKE_IMMEDIATELY)
    run(PeriodicRoutine(calls, interval=10, clock=clock))
    clock.wait_for_sleepers(1)
    assert calls.count == 100
    step(clock, 10)
    assert calls.count == 200


def test_a_batch_ends_when_the_handler_returns_anything_else(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    results = iter([REINVOKE_IMMEDIATELY, REINVOKE_IMMEDIATELY, None, REINVOKE_IMMEDIATELY])
    count = 0

    def handler() -> object:
        nonlocal count
        count += 1
        return next(results, None)

    run(PeriodicRoutine(handler, interval=10, clock=clock))
    clock.wait_for_sleepers(1)
    assert count == 3
    step(clock, 10)
    assert count == 5


def test_with_a_fixed_rate_the_schedule_resumes_at_the_next_due_time_after_a_batch(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    calls = Calls(clock, takes=4, result=REINVOKE_IMMEDIATELY)
    routine = PeriodicRoutine(
        calls, interval=10, fixed_rate=True, max_consecutive_reinvocations=3, clock=clock
    )
    run(routine)
    clock.wait_for_sleepers(1)
    assert calls.times == [0.0, 4.0, 8.0]
    step(clock, 20 - clock.now())
    assert calls.times[3:] == [20.0, 24.0, 28.0]
    assert routine.status().missed_runs == 2  # the batches overran the due times 10 and 30


def test_no_reinvocation_after_stop(clock: FakeClock, run: Callable[..., Started]) -> None:
    def handler() -> object:
        routine.stop()
        return REINVOKE_IMMEDIATELY

    routine = PeriodicRoutine(handler, interval=10, clock=clock)
    assert run(routine).finish() is None
    assert routine.status().runs == 1


# -- stop and shutdown -------------------------------------------------------------------------


def test_stop_ends_an_hour_long_wait_at_once() -> None:
    ran = threading.Event()
    routine = PeriodicRoutine(ran.set, interval=3600)
    started = Started(routine)
    try:
        assert ran.wait(5)
        began = time.monotonic()
        routine.stop()
        assert started.finish(timeout=2) is None
        assert time.monotonic() - began < 0.5
    finally:
        routine.stop()
        started.thread.join(5)


def test_stop_ends_an_hour_long_initial_delay_at_once() -> None:
    routine = PeriodicRoutine(lambda: None, interval=1, initial_delay=3600)
    started = Started(routine)
    began = time.monotonic()
    routine.stop()
    assert started.finish(timeout=2) is None
    assert time.monotonic() - began < 0.5
    assert routine.status().runs == 0


def test_on_shutdown_runs_once_after_the_last_run_on_the_routines_thread(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    events: list[str] = []
    routine = PeriodicRoutine(
        lambda: events.append("run"),
        interval=10,
        concurrency=2,
        on_shutdown=lambda: events.append(f"shutdown on {threading.current_thread().name}"),
        clock=clock,
    )
    started = run(routine)
    clock.wait_for_sleepers(2)
    assert started.stop() is None
    assert events == ["run", "run", "shutdown on test-start"]


def test_on_shutdown_runs_when_stopped_before_start(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    events: list[str] = []
    routine = PeriodicRoutine(
        lambda: events.append("run"),
        on_shutdown=lambda: events.append("shutdown"),
        clock=clock,
    )
    routine.stop()
    assert run(routine).finish() is None
    assert events == ["shutdown"]


def test_the_handler_objects_on_shutdown_is_called(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    handler = ObjectHandler()
    started = run(PeriodicRoutine(handler, interval=10, clock=clock))
    clock.wait_for_sleepers(1)
    started.stop()
    assert handler.shutdowns == ["test-start"]


def test_stop_before_start_makes_start_return_at_once_without_a_run(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    routine = PeriodicRoutine(Calls(clock), clock=clock)
    routine.stop()
    assert run(routine).finish() is None
    assert routine.status().runs == 0


def test_the_handler_sees_stopping_once_stop_was_asked(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    seen: list[bool] = []

    def handler() -> None:
        seen.append(routines.stopping())
        routine.stop()
        seen.append(routines.stopping())

    routine = PeriodicRoutine(handler, interval=10, clock=clock)
    assert run(routine).finish() is None
    assert seen == [False, True]


def test_handlers_on_extra_loop_threads_see_stopping_too(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    in_run = threading.Event()
    release = threading.Event()
    seen: list[bool] = []

    def handler() -> None:
        if threading.current_thread().name.endswith(":1"):
            in_run.set()
            assert release.wait(5)
            seen.append(routines.stopping())

    routine = PeriodicRoutine(handler, interval=10, concurrency=2, clock=clock)
    started = run(routine)
    assert in_run.wait(5)
    routine.stop()
    release.set()
    assert started.finish() is None
    assert seen == [True]


def test_a_loop_that_begins_after_stop_was_asked_runs_nothing() -> None:
    # An extra loop's thread may get going only after a stop (concurrency=N, stop at once):
    # it must not start a run then.
    runs: list[int] = []
    routine = PeriodicRoutine(lambda: runs.append(1), interval=60, name="late")
    routine.stop()
    routine._loop(routine._lifecycle.flag, 0.0)
    assert runs == []


def test_a_stopped_routine_can_be_started_again(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    shutdowns: list[int] = []
    calls = Calls(clock)
    routine = PeriodicRoutine(
        calls, interval=10, on_shutdown=lambda: shutdowns.append(1), clock=clock
    )
    first = run(routine)
    clock.wait_for_sleepers(1)
    assert first.stop() is None
    second = run(routine)
    clock.wait_for_sleepers(1)
    assert second.stop() is None
    assert calls.count == 2
    assert shutdowns == [1, 1]
    assert routine.status().runs == 2


def test_a_routine_started_twice_at_once_refuses_the_second_start(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    routine = PeriodicRoutine(Calls(clock), interval=10, clock=clock)
    run(routine)
    clock.wait_for_sleepers(1)
    with pytest.raises(RuntimeError, match="already running"):
        routine.start()
    assert routine.status().state == "running"


# -- overdue runs and status -------------------------------------------------------------------


def test_a_run_longer_than_run_timeout_is_logged_and_counted_as_overdue(
    clock: FakeClock, run: Callable[..., Started], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOG)
    routine = PeriodicRoutine(
        Calls(clock, takes=5), name="slow", interval=10, run_timeout=1, clock=clock
    )
    run(routine)
    clock.wait_for_sleepers(1)
    assert routine.status().overdue_runs == 1
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "'slow'" in record.getMessage()
    assert "run_timeout" in record.getMessage()


def test_a_run_within_run_timeout_is_not_overdue(
    clock: FakeClock, run: Callable[..., Started], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOG)
    routine = PeriodicRoutine(Calls(clock, takes=1), interval=10, run_timeout=1, clock=clock)
    run(routine)
    clock.wait_for_sleepers(1)
    assert routine.status().overdue_runs == 0
    assert caplog.records == []


def test_status_counts_runs_failures_and_the_last_run_duration(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    outcomes = iter([None, ValueError("bad"), None])

    def handler() -> None:
        clock.advance(2)
        error = next(outcomes)
        if error is not None:
            raise error

    routine = PeriodicRoutine(
        handler, name="counted", interval=10, on_error=lambda exc: None, clock=clock
    )
    run(routine)
    clock.wait_for_sleepers(1)
    step(clock, 10)
    step(clock, 10)
    status = routine.status()
    assert replace(status, last_run_at=None, last_success_at=None, next_run_at=None) == (
        routines.RoutineStatus(
            name="counted",
            state="running",
            last_error="ValueError: bad",
            runs=3,
            failures=1,
            missed_runs=0,
            overdue_runs=0,
            last_run_duration=2.0,
        )
    )
    assert status.last_run_at is not None
    assert status.last_success_at == status.last_run_at  # the third run succeeded
    assert status.next_run_at is not None
    assert status.next_run_at > status.last_run_at  # 10 s later: the clock is fake, not the wall


def test_status_moves_from_idle_to_running_to_stopping_to_stopped(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    in_run = threading.Event()
    release = threading.Event()

    def handler() -> None:
        in_run.set()
        assert release.wait(5)

    routine = PeriodicRoutine(handler, interval=10, clock=clock)
    assert routine.status().state == "idle"
    started = run(routine)
    assert in_run.wait(5)
    assert routine.status().state == "running"
    routine.stop()
    assert routine.status().state == "stopping"
    release.set()
    assert started.finish() is None
    assert routine.status().state == "stopped"


# -- names -------------------------------------------------------------------------------------


def say_hello() -> None:
    pass


def test_the_default_name_is_the_handlers_qualified_name() -> None:
    assert PeriodicRoutine(say_hello).name == "say_hello"
    assert PeriodicRoutine(ObjectHandler()).name == "ObjectHandler"


def test_name_and_description_are_kept() -> None:
    routine = PeriodicRoutine(say_hello, name="hello", description="says hello")
    assert (routine.name, routine.description) == ("hello", "says hello")
    assert repr(routine) == "<PeriodicRoutine 'hello'>"


def test_a_periodic_routine_is_a_routine() -> None:
    assert isinstance(PeriodicRoutine(say_hello), routines.Routine)


def test_reinvoke_immediately_has_a_readable_repr() -> None:
    assert repr(REINVOKE_IMMEDIATELY) == "routines.REINVOKE_IMMEDIATELY"
