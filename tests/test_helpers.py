"""`Helpers`: calls run off the caller's thread, one at a time in order (serial) or each without
waiting behind another (not serial); whatever a call raises is logged and the next one runs."""

from __future__ import annotations

import threading

import pytest

from routines._helpers import Helpers

from helpers import WAIT, LogWatcher


def test_serial_calls_run_one_at_a_time_in_order_on_one_helper_thread() -> None:
    helpers = Helpers("test-serial", "a callback", serial=True)
    seen: list[tuple[int, str]] = []
    for n in range(20):
        helpers.submit(lambda n=n: seen.append((n, threading.current_thread().name)))
    assert helpers.close(WAIT)
    assert [n for n, _ in seen] == list(range(20))
    assert {name for _, name in seen} == {"test-serial"}


def test_a_concurrent_call_never_waits_behind_one_that_blocks() -> None:
    helpers = Helpers("test-stop", "a stop() call", serial=False)
    release = threading.Event()
    second_ran = threading.Event()
    helpers.submit(lambda: release.wait(WAIT))
    helpers.submit(second_ran.set)
    try:
        assert second_ran.wait(WAIT)
    finally:
        release.set()
    assert helpers.close(WAIT)


def test_quick_concurrent_calls_share_a_few_threads() -> None:
    helpers = Helpers("test-stop", "a stop() call", serial=False)
    threads: set[int] = set()
    lock = threading.Lock()

    def record() -> None:
        with lock:
            threads.add(threading.get_ident())

    for _ in range(200):
        helpers.submit(record)
    assert helpers.close(WAIT)
    assert len(threads) < 50


@pytest.mark.parametrize("error", [ValueError("bad"), SystemExit(3), KeyboardInterrupt()])
def test_whatever_a_call_raises_is_logged_and_the_next_call_runs(error: BaseException) -> None:
    helpers = Helpers("test-serial", "on_event", serial=True)
    ran = threading.Event()

    def fail() -> None:
        raise error

    with LogWatcher() as logs:
        helpers.submit(fail)
        helpers.submit(ran.set)
        assert ran.wait(WAIT)
        record = logs.wait_for("on_event raised")
    assert record.exc_info is not None
    assert record.exc_info[1] is error
    assert helpers.close(WAIT)


def test_closing_a_serial_helper_drops_what_waits_behind_a_call_that_hangs() -> None:
    helpers = Helpers("test-serial", "on_event", serial=True)
    release = threading.Event()
    dropped: list[int] = []
    helpers.submit(lambda: release.wait(WAIT))
    helpers.submit(lambda: dropped.append(1))
    try:
        with LogWatcher() as logs:
            assert helpers.close(0.05) is False
            logs.wait_for("on_event: 1 calls not run")
    finally:
        release.set()
    assert dropped == []


def test_closing_a_concurrent_helper_lets_every_queued_call_run() -> None:
    helpers = Helpers("test-stop", "a stop() call", serial=False)
    release = threading.Event()
    ran = threading.Event()
    helpers.submit(lambda: release.wait(WAIT))
    helpers.submit(ran.set)
    helpers.close(0.0)
    assert ran.wait(WAIT)
    release.set()


def test_submit_after_close_raises() -> None:
    helpers = Helpers("test-serial", "on_event", serial=True)
    assert helpers.close()
    with pytest.raises(RuntimeError, match="closed"):
        helpers.submit(lambda: None)


def test_no_thread_is_started_before_the_first_call() -> None:
    before = threading.active_count()
    helpers = Helpers("test-serial", "on_event", serial=True)
    assert threading.active_count() == before
    assert helpers.close()
