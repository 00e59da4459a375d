"""`PeriodicRoutine`, `REINVOKE_IMMEDIATELY` and `with_error_message`, driven by a FakeClock."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

import routines
from routines import REINVOKE_IMMEDIATELY, PeriodicRoutine, with_error_message
from routines._periodic import CONCURRENCY_REFRESH
from routines.testing import FakeClock

LOG = "routines"


class Started:
    """A routine whose start() runs on a thread; `finish()` joins it (bounded)."""

    def __init__(self, routine: PeriodicRoutine) -> None:
        self.routine = routine
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._start, name="test-start")
        self.thread.start()

    def _start(self) -> None:
        try:
            self.routine.start()
        except BaseException as exc:
            self.error = exc

    def finish(self, timeout: float = 5.0) -> BaseException | None:
        """Wait for start() to return; what it raised, if anything."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "start() did not return"
        return self.error

    def stop(self) -> BaseException | None:
        self.routine.stop()
        return self.finish()


@pytest.fixture
def run() -> Iterator[Callable[[PeriodicRoutine], Started]]:
    """Start routines on threads; stop them and join their threads after the test."""
    started: list[Started] = []

    def start(routine: PeriodicRoutine) -> Started:
        started.append(Started(routine))
        return started[-1]

    yield start
    for each in started:
        each.routine.stop()
        each.thread.join(5)


class Calls:
    """A handler that records the fake time of each run and may take fake time itself.

    `takes` is how long every run takes, or the durations of the first runs (then 0).
    """

    def __init__(
        self, clock: FakeClock, *, takes: float | list[float] = 0.0, result: object = None
    ) -> None:
        self.clock = clock
        self.durations = iter(takes) if isinstance(takes, list) else None
        self.takes = 0.0 if isinstance(takes, list) else takes
        self.result = result
        self.times: list[float] = []
        self.threads: list[str] = []
        self.lock = threading.Lock()

    def __call__(self) -> object:
        with self.lock:
            self.times.append(self.clock.now())
            self.threads.append(threading.current_thread().name)
        takes = next(self.durations, 0.0) if self.durations is not None else self.takes
        if takes:
            self.clock.advance(takes)
        return self.result

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.times)


def step(clock: FakeClock, seconds: float, sleepers: int = 1) -> None:
    """Advance the clock, then wait until the routine is waiting again."""
    clock.advance(seconds)
    clock.wait_for_sleepers(sleepers)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# -- timing -------------------------------------------------------------------------------


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


# -- concurrency ---------------------------------------------------------------------------


def test_concurrency_n_runs_n_loops_on_named_threads(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    calls = Calls(clock)
    run(PeriodicRoutine(calls, interval=10, concurrency=3, name="tick", clock=clock))
    clock.wait_for_sleepers(3)
    assert calls.count == 3
    assert sorted(calls.threads) == ["routine:tick:1", "routine:tick:2", "test-start"]
    step(clock, 10, sleepers=3)
    assert calls.count == 6


def test_an_integer_concurrency_has_exactly_n_pending_waits_between_runs(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    run(PeriodicRoutine(Calls(clock), interval=10, concurrency=4, clock=clock))
    clock.wait_for_sleepers(4)
    with pytest.raises(TimeoutError):
        clock.wait_for_sleepers(5, timeout=0.05)


def test_each_loop_keeps_its_own_timing(clock: FakeClock, run: Callable[..., Started]) -> None:
    first_runs: list[str] = []
    release = threading.Event()

    def handler() -> None:
        name = threading.current_thread().name
        if name not in first_runs:
            first_runs.append(name)
            if name.endswith(":1"):  # this loop's first run ends 4 seconds later
                assert release.wait(5)
        times.append((name, clock.now()))

    times: list[tuple[str, float]] = []
    run(PeriodicRoutine(handler, interval=10, concurrency=2, name="own", clock=clock))
    clock.wait_for_sleepers(1)
    clock.advance(4)
    release.set()
    clock.wait_for_sleepers(2)
    step(clock, 6, sleepers=2)  # t=10: only the loop that ended its run at t=0
    step(clock, 4, sleepers=2)  # t=14: the other one
    assert sorted(times, key=lambda item: item[1]) == [
        ("test-start", 0.0),
        ("routine:own:1", 4.0),
        ("test-start", 10.0),
        ("routine:own:1", 14.0),
    ]


def _sizes(*values: int | Exception) -> Callable[[], int]:
    """A concurrency function that returns (or raises) `values` in turn, then the last one."""
    remaining = list(values)

    def concurrency() -> int:
        value = remaining.pop(0) if len(remaining) > 1 else remaining[0]
        if isinstance(value, Exception):
            raise value
        return value

    return concurrency


def test_a_callable_concurrency_is_reread_every_30_seconds_and_new_loops_run_at_once(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    calls = Calls(clock)
    run(PeriodicRoutine(calls, interval=100, concurrency=_sizes(1, 3), clock=clock))
    clock.wait_for_sleepers(2)  # one loop and the re-read
    assert calls.count == 1
    clock.advance(CONCURRENCY_REFRESH - 0.001)
    assert clock.sleepers() == 2
    step(clock, 0.001, sleepers=4)
    assert calls.times == [0.0, 30.0, 30.0]  # the first loop did not run again


def test_a_shrinking_concurrency_retires_loops_without_another_run(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    calls = Calls(clock)
    routine = PeriodicRoutine(
        calls, interval=100, concurrency=_sizes(3, 1), name="shrink", clock=clock
    )
    run(routine)
    clock.wait_for_sleepers(4)
    clock.advance(30)
    for thread in threading.enumerate():
        if thread.name in ("routine:shrink:2", "routine:shrink:3"):
            thread.join(5)
            assert not thread.is_alive()
    clock.wait_for_sleepers(2)
    assert clock.sleepers() == 2  # the loop that is left, and the re-read
    step(clock, 70, sleepers=2)
    assert calls.count == 4  # three at start, one from the loop that is left


def test_a_retired_loop_finishes_the_run_it_is_in(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    in_run = threading.Event()
    release = threading.Event()
    calls = Calls(clock)

    def handler() -> None:
        calls()
        if threading.current_thread().name == "routine:retire:2":
            in_run.set()
            assert release.wait(5)

    routine = PeriodicRoutine(
        handler, interval=100, concurrency=_sizes(2, 1), name="retire", clock=clock
    )
    run(routine)
    assert in_run.wait(5)
    clock.wait_for_sleepers(2)  # loop 1 and the re-read; loop 2 is in its run
    retired = next(t for t in threading.enumerate() if t.name == "routine:retire:2")
    step(clock, 30, sleepers=2)
    release.set()
    retired.join(5)
    assert not retired.is_alive()
    assert routine.status().runs == 2
    step(clock, 70, sleepers=2)
    assert calls.threads.count("routine:retire:2") == 1


def test_a_concurrency_function_that_raises_is_reported_and_the_size_kept(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    errors: list[Exception] = []
    routine = PeriodicRoutine(
        Calls(clock),
        interval=100,
        concurrency=_sizes(2, RuntimeError("no size")),
        on_error=errors.append,
        clock=clock,
    )
    run(routine)
    clock.wait_for_sleepers(3)
    step(clock, 30, sleepers=3)
    assert [str(error) for error in errors] == ["no size"]
    assert clock.sleepers() == 3


def test_an_invalid_concurrency_from_the_start_means_one_loop(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    errors: list[Exception] = []
    calls = Calls(clock)
    run(
        PeriodicRoutine(
            calls, interval=100, concurrency=lambda: 0, on_error=errors.append, clock=clock
        )
    )
    clock.wait_for_sleepers(2)
    assert calls.count == 1
    assert "must be >= 1, got 0" in str(errors[0])


def test_stop_ends_every_loop_of_a_callable_concurrency(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    stopped = threading.Event()
    routine = PeriodicRoutine(
        Calls(clock), interval=100, concurrency=lambda: 3, on_shutdown=stopped.set, clock=clock
    )
    started = run(routine)
    clock.wait_for_sleepers(4)
    assert started.stop() is None
    assert stopped.is_set()


# -- reinvocation ---------------------------------------------------------------------------


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


# -- errors --------------------------------------------------------------------------------


def boom() -> None:
    raise ValueError("boom")


def test_a_handler_error_goes_to_on_error_and_the_loop_goes_on(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    errors: list[Exception] = []
    routine = PeriodicRoutine(boom, interval=10, on_error=errors.append, clock=clock)
    run(routine)
    clock.wait_for_sleepers(1)
    step(clock, 10)
    assert [str(error) for error in errors] == ["boom", "boom"]
    assert routine.status().runs == 2


class ObjectHandler:
    """A handler object with Sourcegraph's ErrorHandler and Finalizer hooks."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.handled: list[Exception] = []
        self.shutdowns: list[str] = []

    def __call__(self) -> None:
        if self.error is not None:
            raise self.error

    def handle_error(self, exc: Exception) -> None:
        self.handled.append(exc)

    def on_shutdown(self) -> None:
        self.shutdowns.append(threading.current_thread().name)


def test_a_handler_error_goes_to_the_handler_objects_handle_error(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    handler = ObjectHandler(ValueError("boom"))
    run(PeriodicRoutine(handler, interval=10, clock=clock))
    clock.wait_for_sleepers(1)
    assert [str(error) for error in handler.handled] == ["boom"]


def test_on_error_wins_over_handle_error(clock: FakeClock, run: Callable[..., Started]) -> None:
    handler = ObjectHandler(ValueError("boom"))
    errors: list[Exception] = []
    run(PeriodicRoutine(handler, interval=10, on_error=errors.append, clock=clock))
    clock.wait_for_sleepers(1)
    assert len(errors) == 1
    assert handler.handled == []


def test_a_handler_error_without_a_callback_is_logged_with_traceback_and_name(
    clock: FakeClock, run: Callable[..., Started], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger=LOG)
    run(PeriodicRoutine(boom, name="booming", interval=10, clock=clock))
    clock.wait_for_sleepers(1)
    [record] = caplog.records
    assert record.name == LOG
    assert "booming" in record.getMessage()
    assert "boom" in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[0] is ValueError


def test_a_handler_error_counts_as_a_failure_with_last_error(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    routine = PeriodicRoutine(boom, interval=10, on_error=lambda exc: None, clock=clock)
    run(routine)
    clock.wait_for_sleepers(1)
    status = routine.status()
    assert (status.runs, status.failures) == (1, 1)
    assert status.last_error == "ValueError: boom"


def test_an_error_raised_after_stop_was_asked_is_not_reported(
    clock: FakeClock, run: Callable[..., Started], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOG)

    def handler() -> None:
        routine.stop()
        raise ValueError("interrupted")

    errors: list[Exception] = []
    routine = PeriodicRoutine(handler, interval=10, on_error=errors.append, clock=clock)
    assert run(routine).finish() is None
    assert errors == []
    assert routine.status().failures == 0
    assert caplog.records == []


def test_an_exception_in_on_error_is_logged_and_the_loop_goes_on(
    clock: FakeClock, run: Callable[..., Started], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger=LOG)

    def on_error(exc: Exception) -> None:
        raise RuntimeError("callback broke")

    routine = PeriodicRoutine(boom, interval=10, on_error=on_error, clock=clock)
    run(routine)
    clock.wait_for_sleepers(1)
    step(clock, 10)
    assert routine.status().runs == 2
    assert len(caplog.records) == 2
    assert all("error callback raised" in record.getMessage() for record in caplog.records)


def test_a_base_exception_ends_the_routine_and_propagates_out_of_start(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    shutdowns: list[int] = []

    def handler() -> None:
        raise SystemExit(3)

    routine = PeriodicRoutine(
        handler, interval=10, on_shutdown=lambda: shutdowns.append(1), clock=clock
    )
    error = run(routine).finish()
    assert isinstance(error, SystemExit)
    assert shutdowns == [1]
    status = routine.status()
    assert (status.state, status.runs, status.failures) == ("stopped", 1, 0)
    assert status.last_error == "SystemExit: 3"


def test_a_base_exception_on_another_loop_stops_every_loop_and_propagates(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    def handler() -> None:
        if threading.current_thread().name.endswith(":2"):
            raise KeyboardInterrupt

    routine = PeriodicRoutine(handler, interval=10, concurrency=3, clock=clock)
    assert isinstance(run(routine).finish(), KeyboardInterrupt)


def test_a_base_exception_from_a_callable_concurrency_loop_propagates(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    def handler() -> None:
        raise GeneratorExit

    routine = PeriodicRoutine(handler, interval=10, concurrency=lambda: 2, clock=clock)
    assert isinstance(run(routine).finish(), GeneratorExit)


# -- shutdown ------------------------------------------------------------------------------


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


def test_an_exception_in_on_shutdown_is_logged(
    clock: FakeClock, run: Callable[..., Started], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger=LOG)
    routine = PeriodicRoutine(lambda: None, name="ender", on_shutdown=boom, clock=clock)
    routine.stop()
    assert run(routine).finish() is None
    [record] = caplog.records
    assert "ender" in record.getMessage()
    assert "on_shutdown" in record.getMessage()
    assert record.exc_info is not None


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


# -- overdue runs and status ----------------------------------------------------------------


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
    assert status == routines.RoutineStatus(
        name="counted",
        state="running",
        last_error="ValueError: bad",
        runs=3,
        failures=1,
        missed_runs=0,
        overdue_runs=0,
        last_run_duration=2.0,
    )


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


# -- names ---------------------------------------------------------------------------------


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


# -- with_error_message --------------------------------------------------------------------


def test_with_error_message_logs_message_and_exception_with_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger=LOG)
    handler = with_error_message("could not say hello", boom)
    assert handler() is None
    [record] = caplog.records
    assert record.name == LOG
    assert record.getMessage() == "could not say hello: boom"
    assert record.exc_info is not None


def test_with_error_message_passes_the_result_on() -> None:
    handler = with_error_message("oops", lambda: REINVOKE_IMMEDIATELY)
    assert handler() is REINVOKE_IMMEDIATELY


def test_with_error_message_keeps_the_loop_going_without_error_reports(
    clock: FakeClock, run: Callable[..., Started], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger=LOG)
    routine = PeriodicRoutine(with_error_message("tick failed", boom), interval=10, clock=clock)
    run(routine)
    clock.wait_for_sleepers(1)
    step(clock, 10)
    assert routine.name == "boom"
    assert (routine.status().runs, routine.status().failures) == (2, 0)
    assert [record.getMessage() for record in caplog.records] == ["tick failed: boom"] * 2


def test_with_error_message_lets_base_exceptions_through() -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        with_error_message("oops", interrupt)()


def test_a_loop_that_begins_after_stop_was_asked_runs_nothing() -> None:
    # An extra loop's thread may get going only after a stop (concurrency=N, stop at once):
    # it must not start a run then.
    runs: list[int] = []
    routine = PeriodicRoutine(lambda: runs.append(1), interval=60, name="late")
    routine.stop()
    routine._loop(routine._lifecycle.flag, 0.0)
    assert runs == []
