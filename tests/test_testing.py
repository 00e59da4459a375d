"""`routines.testing.FakeClock`: time moves only by advance(), waits are counted and woken."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from routines import Clock
from routines._flag import Flag
from routines.testing import FakeClock


@contextmanager
def waiting(
    clock: FakeClock, event: threading.Event, timeout: float | None
) -> Iterator[Callable[[], bool | None]]:
    """Run `clock.wait(event, timeout)` on a thread; yield a function that joins it (bounded)."""
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(clock.wait(event, timeout)))
    thread.start()

    def outcome() -> bool | None:
        thread.join(5)
        return result[0] if result else None

    try:
        yield outcome
    finally:
        event.set()
        thread.join(5)


def test_fake_clock_is_a_clock() -> None:
    assert isinstance(FakeClock(), Clock)


def test_now_starts_at_the_given_time_and_moves_only_by_advance() -> None:
    clock = FakeClock(100.0)
    assert clock.now() == 100.0
    clock.advance(2.5)
    assert clock.now() == 102.5


def test_advance_accepts_zero() -> None:
    clock = FakeClock()
    clock.advance(0)
    assert clock.now() == 0.0


def test_a_wait_is_pending_until_advance_reaches_its_deadline() -> None:
    clock = FakeClock()
    with waiting(clock, Flag(), 10.0) as outcome:
        clock.wait_for_sleepers(1)
        clock.advance(9.999)
        assert clock.sleepers() == 1
        clock.advance(0.001)
        assert outcome() is False


def test_advance_removes_the_due_waits_from_the_pending_count_before_it_returns() -> None:
    clock = FakeClock()
    with waiting(clock, Flag(), 1.0) as outcome:
        clock.wait_for_sleepers(1)
        clock.advance(1.0)
        assert clock.sleepers() == 0
        assert outcome() is False


def test_advance_wakes_only_the_waits_that_are_due() -> None:
    clock = FakeClock()
    with waiting(clock, Flag(), 1.0) as short, waiting(clock, Flag(), 5.0) as long:
        clock.wait_for_sleepers(2)
        clock.advance(1.0)
        assert short() is False
        assert clock.sleepers() == 1
        clock.advance(4.0)
        assert long() is False


def test_setting_a_flag_ends_its_wait_at_once_with_true() -> None:
    clock = FakeClock()
    flag = Flag()
    with waiting(clock, flag, 3600.0) as outcome:
        clock.wait_for_sleepers(1)
        flag.set()
        assert outcome() is True
        assert clock.sleepers() == 0


def test_setting_a_plain_event_ends_its_wait_too() -> None:
    clock = FakeClock()
    event = threading.Event()
    with waiting(clock, event, 3600.0) as outcome:
        clock.wait_for_sleepers(1)
        event.set()
        assert outcome() is True


def test_a_wait_without_timeout_ends_only_when_its_event_is_set() -> None:
    clock = FakeClock()
    flag = Flag()
    with waiting(clock, flag, None) as outcome:
        clock.wait_for_sleepers(1)
        clock.advance(1e9)
        assert clock.sleepers() == 1
        flag.set()
        assert outcome() is True


@pytest.mark.parametrize("timeout", [0.0, -1.0])
def test_a_wait_with_a_timeout_of_zero_or_less_returns_at_once_and_is_never_pending(
    timeout: float,
) -> None:
    clock = FakeClock()
    assert clock.wait(Flag(), timeout) is False
    assert clock.sleepers() == 0


def test_a_wait_on_an_event_already_set_returns_true_at_once() -> None:
    clock = FakeClock()
    flag = Flag()
    flag.set()
    assert clock.wait(flag, 10.0) is True
    assert clock.sleepers() == 0


def test_wait_for_sleepers_raises_timeout_error_when_too_few_waits_are_pending() -> None:
    with pytest.raises(TimeoutError, match="at least 1 pending waits"):
        FakeClock().wait_for_sleepers(1, timeout=0.01)


def test_wait_for_sleepers_returns_once_enough_waits_are_pending() -> None:
    clock = FakeClock()
    with waiting(clock, Flag(), 1.0), waiting(clock, Flag(), 2.0):
        clock.wait_for_sleepers(2)
        assert clock.sleepers() == 2


def test_a_deadline_counts_from_the_time_the_wait_began() -> None:
    clock = FakeClock()
    clock.advance(50)
    with waiting(clock, Flag(), 10.0) as outcome:
        clock.wait_for_sleepers(1)
        clock.advance(9)
        assert clock.sleepers() == 1
        clock.advance(1)
        assert outcome() is False
