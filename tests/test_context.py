from __future__ import annotations

import math
import threading

import pytest

import routines

from helpers import WAIT, join, start_in_thread


def test_stopping_is_false_outside_a_routine() -> None:
    assert routines.stopping() is False


def test_sleep_outside_a_routine_sleeps_and_returns_false() -> None:
    assert routines.sleep(0) is False
    assert routines.sleep(0.001) is False


def test_stopping_turns_true_inside_a_routine_once_stopped() -> None:
    seen: list[bool] = []
    entered = threading.Event()
    proceed = threading.Event()

    def work() -> None:
        seen.append(routines.stopping())
        entered.set()
        proceed.wait(WAIT)
        seen.append(routines.stopping())

    routine = routines.CallbackRoutine(work)
    thread = start_in_thread(routine)
    assert entered.wait(WAIT)
    routine.stop()
    proceed.set()
    join(thread)
    assert seen == [False, True]


def test_sleep_returns_true_at_once_when_the_routine_is_stopped() -> None:
    results: list[bool] = []
    entered = threading.Event()

    def work() -> None:
        entered.set()
        results.append(routines.sleep(3600))

    routine = routines.CallbackRoutine(work)
    thread = start_in_thread(routine)
    assert entered.wait(WAIT)
    routine.stop()
    join(thread)
    assert results == [True]


def test_sleep_returns_true_at_once_when_already_stopping() -> None:
    results: list[bool] = []
    entered = threading.Event()
    stopped = threading.Event()

    def work() -> None:
        entered.set()
        stopped.wait(WAIT)
        results.append(routines.sleep(3600))

    routine = routines.CallbackRoutine(work)
    thread = start_in_thread(routine)
    assert entered.wait(WAIT)
    routine.stop()
    stopped.set()
    join(thread)
    assert results == [True]


def test_sleep_inside_a_routine_sleeps_the_full_time_when_not_stopped() -> None:
    results: list[bool] = []
    routine = routines.CallbackRoutine(lambda: results.append(routines.sleep(0.01)))
    thread = start_in_thread(routine)
    join(thread)
    assert results == [False]


def test_a_thread_the_routine_starts_is_not_part_of_it() -> None:
    seen: list[bool] = []
    entered = threading.Event()
    proceed = threading.Event()

    def work() -> None:
        entered.set()
        proceed.wait(WAIT)
        other = threading.Thread(target=lambda: seen.append(routines.stopping()))
        other.start()
        join(other)

    routine = routines.CallbackRoutine(work)
    thread = start_in_thread(routine)
    assert entered.wait(WAIT)
    routine.stop()
    proceed.set()
    join(thread)
    assert seen == [False]


def test_stopping_is_false_again_after_the_routine_returned() -> None:
    seen: list[bool] = []
    routine = routines.NoopRoutine()
    routine.stop()
    thread = start_in_thread(routine)
    join(thread)
    seen.append(routines.stopping())
    assert seen == [False]


@pytest.mark.parametrize("bad", [-1, -0.5, math.nan, math.inf])
def test_sleep_rejects_a_bad_duration(bad: float) -> None:
    with pytest.raises(ValueError, match="seconds"):
        routines.sleep(bad)


@pytest.mark.parametrize("bad", ["1", None, True])
def test_sleep_rejects_a_non_number(bad: object) -> None:
    with pytest.raises(TypeError, match="seconds"):
        routines.sleep(bad)  # type: ignore[arg-type]
