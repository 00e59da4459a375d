"""`Flag` behaves like `threading.Event` (and wakes listeners), though it is built on one lock."""

from __future__ import annotations

import threading

from routines._flag import Flag, wait_any

from helpers import WAIT, join


def wait_in_thread(
    flag: Flag, timeout: float
) -> tuple[threading.Thread, list[bool], threading.Event]:
    results: list[bool] = []
    waiting = threading.Event()

    def wait() -> None:
        waiting.set()
        results.append(flag.wait(timeout))

    thread = threading.Thread(target=wait)
    thread.start()
    return thread, results, waiting


def test_a_new_flag_is_unset_and_a_wait_times_out() -> None:
    flag = Flag()
    assert flag.is_set() is False
    assert flag.wait(0.001) is False
    assert flag.wait(0) is False
    assert flag.wait(-1) is False


def test_set_wakes_every_waiter() -> None:
    flag = Flag()
    waiters = [wait_in_thread(flag, WAIT) for _ in range(5)]
    for _, _, waiting in waiters:
        assert waiting.wait(WAIT)
    flag.set()
    for thread, results, _ in waiters:
        join(thread)
        assert results == [True]


class GateSpy:
    """Stands in for a Flag's gate and says when a waiter has taken hold of it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self.entered = threading.Event()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        self.entered.set()
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()


def test_a_set_then_clear_still_wakes_the_waiters_that_were_waiting() -> None:
    # A threading.Event wakes them; a gate re-closed at once by clear() would not.
    for _ in range(20):
        flag = Flag()
        spy = GateSpy()
        flag._gate = spy  # type: ignore[assignment]
        thread, results, _ = wait_in_thread(flag, WAIT)
        assert spy.entered.wait(WAIT)
        flag.set()
        flag.clear()
        join(thread)
        assert results == [True]


def test_clear_makes_later_waits_block_again_and_set_opens_them() -> None:
    flag = Flag()
    flag.set()
    assert flag.wait(None) is True
    flag.clear()
    assert flag.is_set() is False
    assert flag.wait(0.001) is False
    flag.set()
    assert flag.wait(0) is True


def test_set_and_clear_are_idempotent() -> None:
    flag = Flag()
    flag.clear()
    flag.set()
    flag.set()
    assert flag.is_set()
    flag.clear()
    flag.clear()
    assert not flag.is_set()


def test_listeners_are_called_once_per_set() -> None:
    flag = Flag()
    calls: list[str] = []
    flag.subscribe(lambda: calls.append("a"))
    flag.set()
    flag.set()
    flag.clear()
    flag.set()
    assert calls == ["a", "a"]


def test_wait_any_returns_when_any_flag_is_set() -> None:
    first, second = Flag(), Flag()
    threading.Timer(0.01, second.set).start()
    assert wait_any((first, second), WAIT) is True
    assert wait_any((Flag(), Flag()), 0.001) is False
