"""`ThreadGroup`: threads started together and awaited together, the first error kept."""

from __future__ import annotations

import threading

import pytest

from routines._threads import ThreadGroup, join_all, thread_stack

from helpers import WAIT, LogWatcher


class Boom(Exception):
    pass


def test_leaving_the_block_waits_for_every_thread() -> None:
    release = threading.Event()
    done: list[int] = []

    def work(n: int) -> None:
        release.wait(WAIT)
        done.append(n)

    with ThreadGroup("test") as group:
        for n in range(3):
            group.start(work, n, name=f"test-worker-{n}")
        assert group.running == 3
        release.set()
    assert sorted(done) == [0, 1, 2]
    assert group.running == 0


def test_threads_get_their_names_and_are_daemons() -> None:
    seen: list[tuple[str, bool]] = []

    def record() -> None:
        thread = threading.current_thread()
        seen.append((thread.name, thread.daemon))

    with ThreadGroup("test") as group:
        group.start(record, name="test-named")
    assert seen == [("test-named", True)]


def test_the_first_error_of_a_thread_is_raised_after_every_thread_ended() -> None:
    first, second = Boom("first"), Boom("second")
    failed = threading.Event()
    release = threading.Event()
    ended: list[str] = []

    def fail_first() -> None:
        raise first

    def fail_later() -> None:
        failed.wait(WAIT)
        raise second

    def slow() -> None:
        release.wait(WAIT)
        ended.append("slow")

    def on_error(error: BaseException) -> None:
        failed.set()
        release.set()

    def run_group() -> None:
        with ThreadGroup("test", on_error=on_error) as group:
            group.start(fail_first, name="test-first")
            group.start(fail_later, name="test-later")
            group.start(slow, name="test-slow")

    with pytest.raises(Boom) as caught:
        run_group()
    assert caught.value is first
    assert ended == ["slow"]


def test_an_error_in_the_block_is_the_groups_error_and_reaches_on_error() -> None:
    stop = threading.Event()
    errors: list[BaseException] = []

    def on_error(error: BaseException) -> None:
        errors.append(error)
        stop.set()

    error = KeyboardInterrupt()
    group = ThreadGroup("test", on_error=on_error)

    def run_group() -> None:
        with group:
            group.start(stop.wait, WAIT, name="test-waiter")
            raise error

    with pytest.raises(KeyboardInterrupt) as caught:
        run_group()
    assert caught.value is error
    assert errors == [error]
    assert group.running == 0


def test_an_earlier_thread_error_wins_over_the_blocks() -> None:
    first = Boom("thread")
    thread_failed = threading.Event()

    def fail() -> None:
        raise first

    def run_group() -> None:
        with ThreadGroup("test", on_error=lambda e: thread_failed.set()) as group:
            group.start(fail, name="test-fail")
            assert thread_failed.wait(WAIT)
            raise Boom("block")

    with pytest.raises(Boom) as caught:
        run_group()
    assert caught.value is first


def test_a_thread_that_cannot_start_leaves_the_group_as_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    group = ThreadGroup("test")

    def no_threads(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", no_threads)
    with pytest.raises(RuntimeError, match="can't start"):
        group.start(lambda: None, name="test-never")
    monkeypatch.undo()
    assert group.running == 0
    assert group.wait(0)
    assert group.join(0) == []


def test_wait_with_a_timeout_says_whether_the_threads_ended() -> None:
    release = threading.Event()
    group = ThreadGroup("test")
    group.start(release.wait, WAIT, name="test-waiter")
    assert group.wait(0.01) is False
    release.set()
    assert group.wait(WAIT) is True
    assert group.join() == []


def test_a_shared_condition_is_notified_when_the_last_thread_leaves() -> None:
    cond = threading.Condition()
    release = threading.Event()
    group = ThreadGroup("test", cond=cond)
    group.start(release.wait, WAIT, name="test-waiter")
    release.set()
    with cond:
        assert cond.wait_for(lambda: group.running == 0, WAIT)
    group.join()


def test_join_logs_the_threads_still_alive() -> None:
    release = threading.Event()
    group = ThreadGroup("group 'x'")
    group.start(release.wait, WAIT, name="test-lingering")
    try:
        with LogWatcher() as logs:
            alive = group.join(0.01)
            record = logs.wait_for("threads still alive")
        assert [thread.name for thread in alive] == ["test-lingering"]
        assert "group 'x'" in record.getMessage()
    finally:
        release.set()
        group.join()


def test_join_all_returns_the_threads_alive_at_the_deadline() -> None:
    release = threading.Event()
    never_started = threading.Thread(target=lambda: None)
    waiter = threading.Thread(target=release.wait, args=(WAIT,))
    waiter.start()
    try:
        assert join_all([never_started, waiter], 0.01) == [waiter]
        assert thread_stack(waiter) is not None
        assert thread_stack(never_started) is None
    finally:
        release.set()
        waiter.join(WAIT)
