from __future__ import annotations

import threading
from collections.abc import Callable

import routines

from helpers import WAIT, join, start_in_thread


def test_stopping_is_false_outside_a_routine() -> None:
    assert routines.stopping() is False


def test_sleep_outside_a_routine_sleeps_and_returns_false() -> None:
    assert routines.sleep(0) is False
    assert routines.sleep(0.001) is False


def stop_midway(work: Callable[[threading.Event], object]) -> None:
    """Run `work(stopped)` as a routine; once it has begun, stop it, then set `stopped`."""
    began, stopped = threading.Event(), threading.Event()

    def start() -> None:
        began.set()
        work(stopped)

    routine = routines.CallbackRoutine(start)
    thread = start_in_thread(routine)
    assert began.wait(WAIT)
    routine.stop()
    stopped.set()
    join(thread)


def test_stopping_turns_true_inside_a_routine_once_stopped() -> None:
    seen: list[bool] = []

    def work(stopped: threading.Event) -> None:
        seen.append(routines.stopping())
        stopped.wait(WAIT)
        seen.append(routines.stopping())

    stop_midway(work)
    assert seen == [False, True]


def test_sleep_returns_true_at_once_when_the_routine_is_stopped() -> None:
    results: list[bool] = []
    stop_midway(lambda stopped: results.append(routines.sleep(3600)))
    assert results == [True]


def test_sleep_returns_true_at_once_when_already_stopping() -> None:
    results: list[bool] = []

    def work(stopped: threading.Event) -> None:
        stopped.wait(WAIT)
        results.append(routines.sleep(3600))

    stop_midway(work)
    assert results == [True]


def test_sleep_inside_a_routine_sleeps_the_full_time_when_not_stopped() -> None:
    results: list[bool] = []
    routine = routines.CallbackRoutine(lambda: results.append(routines.sleep(0.01)))
    thread = start_in_thread(routine)
    join(thread)
    assert results == [False]


def test_a_thread_the_routine_starts_is_not_part_of_it() -> None:
    seen: list[bool] = []

    def work(stopped: threading.Event) -> None:
        stopped.wait(WAIT)
        other = threading.Thread(target=lambda: seen.append(routines.stopping()))
        other.start()
        join(other)

    stop_midway(work)
    assert seen == [False]


def test_stopping_is_false_again_on_the_thread_once_the_routine_returned() -> None:
    seen: list[bool] = []

    def work() -> None:
        routine.stop()  # the routine stops itself: its own thread is stopping now
        seen.append(routines.stopping())

    routine = routines.CallbackRoutine(work)
    thread = threading.Thread(target=lambda: (routine.start(), seen.append(routines.stopping())))
    thread.start()
    join(thread)
    assert seen == [True, False]
