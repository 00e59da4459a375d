"""`PeriodicRoutine` with `concurrency`: N loops on named threads, each with its own timing, and
a callable concurrency re-read every 30 s that starts loops at once and retires them after their
run. Driven by a FakeClock, like test_periodic.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from routines import PeriodicRoutine
from routines._periodic import CONCURRENCY_REFRESH
from routines.testing import FakeClock

from helpers import Calls, Started, step

# -- concurrency -------------------------------------------------------------------------------


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


# -- a callable concurrency --------------------------------------------------------------------


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
