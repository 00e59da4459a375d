"""`WorkerPool`: a bounded queue, N workers, and every accepted item either run or handed back."""

from __future__ import annotations

import concurrent.futures
import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from datetime import timedelta
from typing import Any

import pytest

import routines
from routines import Monitor, PoolClosed, PoolFull, WorkerPool

from helpers import WAIT, Fatal, LogWatcher, Started


class Blocking:
    """A handler that records each item, signals `started`, and waits for `release`."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started: dict[int, threading.Event] = {}
        self.done: list[int] = []
        self._lock = threading.Lock()

    def started_event(self, item: int) -> threading.Event:
        with self._lock:
            return self.started.setdefault(item, threading.Event())

    def __call__(self, item: int) -> int:
        self.started_event(item).set()
        assert self.release.wait(WAIT), "the test never released the handler"
        with self._lock:
            self.done.append(item)
        return item * 10

    def wait_started(self, item: int) -> None:
        assert self.started_event(item).wait(WAIT), f"item {item} did not start"


@pytest.fixture
def blocking() -> Iterator[Blocking]:
    handler = Blocking()
    yield handler
    handler.release.set()  # never leave a worker waiting when a test fails


def wait_done(future: Future[Any]) -> None:
    done, _ = concurrent.futures.wait([future], timeout=WAIT)
    assert done, "the future did not resolve in time"


def double(item: int) -> int:
    return item * 2


# -- construction ------------------------------------------------------------------------------


def test_the_default_name_is_the_handler_qualified_name() -> None:
    assert WorkerPool(double).name == "double"
    assert WorkerPool(double, name="jobs").name == "jobs"


def test_drain_timeout_accepts_a_timedelta() -> None:
    pool = WorkerPool(double, drain_timeout=timedelta(milliseconds=1500))
    assert pool._drain_timeout == 1.5


def test_it_is_a_routine() -> None:
    assert isinstance(WorkerPool(double), routines.Routine)


# -- running items -----------------------------------------------------------------------------


def test_results_and_exceptions_reach_the_futures() -> None:
    def handler(item: int) -> int:
        if item < 0:
            raise ValueError(f"negative: {item}")
        return item * 2

    pool = WorkerPool(handler, workers=3, on_error=lambda item, exc: None)
    running = Started(pool)
    futures = [pool.submit(item) for item in (1, -1, 2)]
    assert futures[0].result(WAIT) == 2
    assert isinstance(futures[1].exception(WAIT), ValueError)
    assert futures[2].result(WAIT) == 4
    pool.stop()
    assert running.finish() is None


def test_items_submitted_before_start_wait_and_then_run() -> None:
    pool = WorkerPool(double)
    futures = [pool.submit(item) for item in range(5)]
    assert pool.status().queued == 5
    assert not any(future.done() for future in futures)
    running = Started(pool)
    assert [future.result(WAIT) for future in futures] == [0, 2, 4, 6, 8]
    pool.stop()
    assert running.finish() is None


def test_worker_threads_are_named_after_the_pool_and_all_gone_when_start_returns() -> None:
    names: set[str] = set()
    threads: list[threading.Thread] = []
    all_started = threading.Barrier(3, timeout=WAIT)

    def handler(item: int) -> None:
        names.add(threading.current_thread().name)
        threads.append(threading.current_thread())
        all_started.wait()  # three items on three different workers

    pool = WorkerPool(handler, workers=3, name="jobs")
    running = Started(pool)
    futures = [pool.submit(item) for item in range(3)]
    for future in futures:
        future.result(WAIT)
    pool.stop()
    assert running.finish() is None
    assert names == {"routine:jobs:worker-1", "routine:jobs:worker-2", "routine:jobs:worker-3"}
    assert not any(thread.is_alive() for thread in threads)
    assert not [t for t in threading.enumerate() if t.name.startswith("routine:jobs:")]


def test_a_raising_handler_never_kills_a_worker() -> None:
    def handler(item: int) -> int:
        if item % 2:
            raise RuntimeError("odd")
        return item

    pool = WorkerPool(handler, workers=1, on_error=lambda item, exc: None)
    running = Started(pool)
    futures = [pool.submit(item) for item in range(20)]
    for item, future in enumerate(futures):
        if item % 2:
            assert isinstance(future.exception(WAIT), RuntimeError)
        else:
            assert future.result(WAIT) == item
    assert pool.status().runs == 20
    assert pool.status().failures == 10
    pool.stop()
    assert running.finish() is None


def test_on_error_and_the_status_are_done_before_the_future_resolves() -> None:
    errors: list[tuple[int, Exception]] = []
    seen_by_callback: list[tuple[int, int, int]] = []
    boom = ValueError("boom")

    def handler(item: int) -> int:
        raise boom

    pool = WorkerPool(handler, workers=1, on_error=lambda item, exc: errors.append((item, exc)))
    future = pool.submit(7)
    future.add_done_callback(
        lambda _: seen_by_callback.append((len(errors), pool.status().runs, pool.status().failures))
    )
    running = Started(pool)
    assert future.exception(WAIT) is boom
    assert errors == [(7, boom)]
    assert seen_by_callback == [(1, 1, 1)]
    assert pool.status().last_error == "ValueError: boom"
    pool.stop()
    assert running.finish() is None


def test_the_run_count_is_updated_before_the_future_resolves() -> None:
    pool = WorkerPool(double, workers=2)
    running = Started(pool)
    for expected in range(1, 51):
        pool.submit(expected).result(WAIT)
        assert pool.status().runs == expected
    pool.stop()
    assert running.finish() is None


def test_a_handler_exception_without_on_error_is_logged_with_the_pool_name() -> None:
    def handler(item: int) -> None:
        raise ValueError("bad item")

    pool = WorkerPool(handler, name="jobs")
    with LogWatcher() as logs:
        running = Started(pool)
        pool.submit(42).exception(WAIT)
        record = logs.wait_for("pool 'jobs': the handler raised on item 42: bad item")
    assert record.exc_info is not None
    pool.stop()
    assert running.finish() is None


def test_an_on_error_that_raises_is_logged_and_the_worker_carries_on() -> None:
    def on_error(item: int, exc: Exception) -> None:
        raise RuntimeError("on_error broke")

    pool = WorkerPool(lambda item: 1 // item, workers=1, name="jobs", on_error=on_error)
    with LogWatcher() as logs:
        running = Started(pool)
        assert isinstance(pool.submit(0).exception(WAIT), ZeroDivisionError)
        logs.wait_for("pool 'jobs': on_error raised")
    assert pool.submit(1).result(WAIT) == 1
    pool.stop()
    assert running.finish() is None


def test_an_item_whose_future_was_cancelled_is_skipped(blocking: Blocking) -> None:
    pool = WorkerPool(blocking, workers=1)
    running = Started(pool)
    first = pool.submit(0)
    blocking.wait_started(0)
    second = pool.submit(1)
    third = pool.submit(2)
    assert second.cancel()
    blocking.release.set()
    assert third.result(WAIT) == 20
    assert first.result(WAIT) == 0
    assert blocking.done == [0, 2]
    pool.stop()
    assert running.finish() is None
    assert pool.unprocessed() == []


# -- backpressure ------------------------------------------------------------------------------


def fill(pool: WorkerPool[int, int], blocking: Blocking) -> list[Future[int]]:
    """With one worker and buffer 1: item 0 running, item 1 queued, so the buffer is full."""
    futures = [pool.submit(0)]
    blocking.wait_started(0)
    futures.append(pool.submit(1))
    assert pool.status().queued == 1
    return futures


def test_submit_blocks_while_the_buffer_is_full(blocking: Blocking) -> None:
    pool = WorkerPool(blocking, workers=1, buffer=1)
    running = Started(pool)
    futures = fill(pool, blocking)
    submitted = threading.Event()

    def submit_third() -> None:
        futures.append(pool.submit(2))
        submitted.set()

    submitter = threading.Thread(target=submit_third)
    submitter.start()
    assert not submitted.wait(0.2)  # still blocked: the buffer is full
    blocking.release.set()
    assert submitted.wait(WAIT)
    submitter.join(WAIT)
    assert [future.result(WAIT) for future in futures] == [0, 10, 20]
    pool.stop()
    assert running.finish() is None


def test_submit_without_blocking_raises_pool_full_when_the_buffer_is_full(
    blocking: Blocking,
) -> None:
    pool = WorkerPool(blocking, workers=1, buffer=1, name="jobs")
    running = Started(pool)
    fill(pool, blocking)
    with pytest.raises(PoolFull, match="pool 'jobs' is full: 1 items are queued"):
        pool.submit(2, block=False)
    assert pool.status().queued == 1
    blocking.release.set()
    pool.stop()
    assert running.finish() is None


def test_submit_raises_pool_full_when_its_timeout_runs_out(blocking: Blocking) -> None:
    pool = WorkerPool(blocking, workers=1, buffer=1)
    running = Started(pool)
    fill(pool, blocking)
    with pytest.raises(PoolFull, match=r"still full after waiting 0\.05s"):
        pool.submit(2, timeout=0.05)
    with pytest.raises(PoolFull):
        pool.submit(2, timeout=0)
    blocking.release.set()
    pool.stop()
    assert running.finish() is None
    assert sorted(blocking.done) == [0, 1]


def test_a_submit_blocked_on_a_full_buffer_raises_pool_closed_when_the_pool_stops(
    blocking: Blocking,
) -> None:
    pool = WorkerPool(blocking, workers=1, buffer=1)
    running = Started(pool)
    fill(pool, blocking)
    errors: list[BaseException] = []
    submitter = threading.Thread(target=lambda: errors.append(_raised(pool.submit, 2)))
    submitter.start()
    submitter.join(0.2)
    assert submitter.is_alive()  # blocked: the buffer is full
    pool.stop()
    submitter.join(WAIT)
    assert len(errors) == 1
    assert isinstance(errors[0], PoolClosed)
    blocking.release.set()
    assert running.finish() is None


def _raised(fn: Callable[..., object], *args: object) -> BaseException:
    try:
        fn(*args)
    except BaseException as exc:
        return exc
    raise AssertionError(f"{fn} did not raise")


def test_submit_raises_pool_closed_after_stop() -> None:
    pool = WorkerPool(double, name="jobs")
    pool.stop()
    with pytest.raises(PoolClosed, match="pool 'jobs' was stopped; it accepts no more items"):
        pool.submit(1)
    with pytest.raises(PoolClosed):
        pool.submit(1, block=False)


# -- stop, drain and unprocessed() -------------------------------------------------------------


def test_stop_before_start_hands_every_item_back_and_start_returns_at_once() -> None:
    pool = WorkerPool(double)
    futures = [pool.submit(item) for item in range(3)]
    pool.stop()
    assert all(future.cancelled() for future in futures)
    assert pool.unprocessed() == [0, 1, 2]
    pool.start()  # on this thread: it must return at once
    assert pool.status().runs == 0
    assert pool.status().state == "stopped"


def test_unprocessed_is_empty_before_stop_and_the_queue_stays_with_the_pool() -> None:
    pool = WorkerPool(double)
    future = pool.submit(1)
    assert pool.unprocessed() == []
    assert pool.status().queued == 1
    assert not future.cancelled()
    pool.stop()
    assert pool.unprocessed() == [1]


def test_unprocessed_returns_everything_handed_back_on_every_call() -> None:
    pool = WorkerPool(double)
    for item in range(3):
        pool.submit(item)
    pool.stop()
    assert pool.unprocessed() == [0, 1, 2]
    assert pool.unprocessed() == [0, 1, 2]


def test_stop_is_idempotent_and_start_can_follow_from_another_thread() -> None:
    pool = WorkerPool(double)
    pool.stop()
    pool.stop()
    running = Started(pool)
    assert running.finish() is None


def test_with_drain_on_stop_the_workers_finish_the_queue(blocking: Blocking) -> None:
    pool = WorkerPool(blocking, workers=1, drain_timeout=None)
    running = Started(pool)
    futures = [pool.submit(item) for item in range(5)]
    blocking.wait_started(0)
    pool.stop()
    blocking.release.set()
    assert running.finish() is None
    assert [future.result(0) for future in futures] == [0, 10, 20, 30, 40]
    assert pool.unprocessed() == []


def test_without_drain_stop_hands_back_the_queue_and_the_running_item_finishes(
    blocking: Blocking,
) -> None:
    pool = WorkerPool(blocking, workers=1, drain_on_stop=False)
    running = Started(pool)
    futures = [pool.submit(item) for item in range(4)]
    blocking.wait_started(0)
    pool.stop()
    assert all(future.cancelled() for future in futures[1:])
    assert pool.unprocessed() == [1, 2, 3]
    blocking.release.set()
    assert running.finish() is None
    assert futures[0].result(0) == 0
    assert blocking.done == [0]


def test_a_zero_drain_timeout_is_the_same_as_no_drain(blocking: Blocking) -> None:
    pool = WorkerPool(blocking, workers=1, drain_timeout=0)
    running = Started(pool)
    futures = [pool.submit(item) for item in range(3)]
    blocking.wait_started(0)
    pool.stop()
    assert pool.unprocessed() == [1, 2]
    assert futures[1].cancelled()
    blocking.release.set()
    assert running.finish() is None
    assert blocking.done == [0]


def test_the_drain_timeout_limits_starting_items_after_stop(blocking: Blocking) -> None:
    pool = WorkerPool(blocking, workers=1, drain_timeout=0.1)
    running = Started(pool)
    futures = [pool.submit(item) for item in range(3)]
    blocking.wait_started(0)
    pool.stop()
    # Item 0 runs past the drain deadline, so items 1 and 2 are handed back at the deadline,
    # without waiting for item 0 or for a call to unprocessed().
    wait_done(futures[1])
    assert futures[1].cancelled()
    assert futures[2].cancelled()
    assert pool.status().queued == 0
    assert pool.status().state == "stopping"
    blocking.release.set()
    assert running.finish() is None
    assert blocking.done == [0]
    assert pool.unprocessed() == [1, 2]


def test_unprocessed_during_the_drain_takes_back_the_rest_so_none_of_it_starts_later(
    blocking: Blocking,
) -> None:
    pool = WorkerPool(blocking, workers=2, drain_timeout=None)
    running = Started(pool)
    futures = [pool.submit(item) for item in range(6)]
    blocking.wait_started(0)
    blocking.wait_started(1)
    pool.stop()
    assert pool.unprocessed() == [2, 3, 4, 5]
    assert all(future.cancelled() for future in futures[2:])
    blocking.release.set()
    assert running.finish() is None
    assert sorted(blocking.done) == [0, 1]
    assert pool.unprocessed() == [2, 3, 4, 5]


def test_handlers_see_stopping_turn_true_while_the_pool_drains(blocking: Blocking) -> None:
    seen: list[tuple[int, bool, bool]] = []

    def handler(item: int) -> None:
        before = routines.stopping()
        blocking(item)
        seen.append((item, before, routines.stopping()))

    pool = WorkerPool(handler, workers=1, drain_timeout=None)
    assert not routines.stopping()
    running = Started(pool)
    for item in range(3):
        pool.submit(item)
    blocking.wait_started(0)
    pool.stop()
    blocking.release.set()
    assert running.finish() is None
    assert seen == [(0, False, True), (1, True, True), (2, True, True)]


def test_stop_from_inside_a_handler_drains_and_ends_the_pool() -> None:
    pool: WorkerPool[int, int]

    def handler(item: int) -> int:
        if item == 0:
            pool.stop()
            assert routines.stopping()
        return item

    pool = WorkerPool(handler, workers=1, drain_timeout=None)
    futures = [pool.submit(item) for item in range(4)]
    running = Started(pool)
    assert running.finish() is None
    assert [future.result(0) for future in futures] == [0, 1, 2, 3]
    assert pool.status().state == "stopped"


def test_stop_from_inside_a_handler_without_drain_hands_back_the_queue() -> None:
    pool: WorkerPool[int, int]

    def handler(item: int) -> int:
        pool.stop()
        return item

    pool = WorkerPool(handler, workers=1, drain_on_stop=False)
    futures = [pool.submit(item) for item in range(4)]
    running = Started(pool)
    assert running.finish() is None
    assert futures[0].result(0) == 0
    assert pool.unprocessed() == [1, 2, 3]


# -- a BaseException ends the pool -------------------------------------------------------------


def test_a_base_exception_ends_the_pool_after_the_other_workers_finish_their_item(
    blocking: Blocking,
) -> None:
    fatal = Fatal("stop everything")

    def handler(item: int) -> int:
        if item == 1:
            raise fatal
        return blocking(item)

    pool = WorkerPool(handler, workers=2)
    running = Started(pool)
    slow = pool.submit(0)
    blocking.wait_started(0)
    failing = pool.submit(1)
    wait_done(failing)
    assert failing.exception() is fatal
    queued = [pool.submit(item) for item in (2, 3)]
    assert running.thread.is_alive()  # the other worker is still on item 0
    blocking.release.set()
    assert running.finish() is fatal
    assert slow.result(0) == 0
    assert not any(future.done() for future in queued)  # kept for a restart
    assert pool.status().state == "failed"
    assert pool.status().queued == 2
    assert pool.status().last_error == "Fatal: stop everything"
    assert pool.unprocessed() == []


def test_a_pool_restarted_after_a_base_exception_keeps_its_queue() -> None:
    def handler(item: int) -> int:
        if item == 0:
            raise Fatal
        return item

    pool = WorkerPool(handler, workers=1)
    futures = [pool.submit(item) for item in range(3)]
    with pytest.raises(Fatal):
        pool.start()
    assert pool.status().queued == 2
    running = Started(pool)
    assert [future.result(WAIT) for future in futures[1:]] == [1, 2]
    pool.stop()
    assert running.finish() is None
    assert pool.status().runs == 3


def test_a_failed_pool_that_was_stopped_hands_its_queue_back() -> None:
    pool: WorkerPool[int, int]

    def handler(item: int) -> int:
        pool.stop()
        raise Fatal

    pool = WorkerPool(handler, workers=1, drain_timeout=None)
    futures = [pool.submit(item) for item in range(3)]
    with pytest.raises(Fatal):
        pool.start()
    assert pool.unprocessed() == [1, 2]
    assert all(future.cancelled() for future in futures[1:])


def test_start_while_running_raises(blocking: Blocking) -> None:
    pool = WorkerPool(blocking, workers=1)
    running = Started(pool)
    pool.submit(0)
    blocking.wait_started(0)
    with pytest.raises(RuntimeError, match="already running"):
        pool.start()
    blocking.release.set()
    pool.stop()
    assert running.finish() is None


# -- status ------------------------------------------------------------------------------------


def test_status_follows_the_pool_from_idle_to_stopped(blocking: Blocking) -> None:
    pool = WorkerPool(blocking, workers=1, name="jobs", drain_timeout=None)
    assert pool.status() == routines.RoutineStatus(name="jobs", state="idle")
    running = Started(pool)
    pool.submit(0)
    blocking.wait_started(0)
    pool.submit(1)
    status = pool.status()
    assert (status.state, status.queued, status.runs) == ("running", 1, 0)
    pool.stop()
    assert pool.status().state == "stopping"
    blocking.release.set()
    assert running.finish() is None
    status = pool.status()
    assert (status.state, status.queued, status.runs, status.failures) == ("stopped", 0, 2, 0)
    assert status.last_run_duration is not None
    assert isinstance(status, routines.RoutineStatus)


# -- nothing lost, nothing twice ---------------------------------------------------------------

ITEMS = 3000


@pytest.mark.parametrize("drain", ["no-drain", "short-drain", "full-drain"])
@pytest.mark.parametrize("seed", range(12))
def test_nothing_is_lost_and_nothing_runs_twice_wherever_the_pool_is_stopped(
    seed: int, drain: str
) -> None:
    rng = random.Random(seed)
    stop_after = rng.randrange(ITEMS)
    processed: list[int] = []
    reached = threading.Event()

    def handler(item: int) -> int:
        processed.append(item)  # list.append is atomic
        if len(processed) >= stop_after:
            reached.set()
        return item

    options: dict[str, Any] = {
        "no-drain": {"drain_on_stop": False},
        "short-drain": {"drain_timeout": 0.0005},
        "full-drain": {"drain_timeout": None},
    }[drain]
    pool = WorkerPool(handler, workers=4, buffer=rng.choice([1, 7, 100]), **options)
    accepted: dict[int, Future[int]] = {}

    def submit_all() -> None:
        for item in range(ITEMS):
            try:
                accepted[item] = pool.submit(item)
            except PoolClosed:
                return

    submitter = threading.Thread(target=submit_all)
    running = Started(pool)
    submitter.start()
    assert reached.wait(WAIT) or len(processed) == len(accepted) == ITEMS
    pool.stop()
    submitter.join(WAIT)
    assert running.finish() is None
    unprocessed = pool.unprocessed()

    assert len(processed) == len(set(processed)), "an item ran twice"
    assert len(unprocessed) == len(set(unprocessed)), "an item was handed back twice"
    assert sorted(processed + unprocessed) == sorted(accepted), "an item was lost"
    assert not set(processed) & set(unprocessed)
    for item in unprocessed:
        assert accepted[item].cancelled()
    for item in processed:
        assert accepted[item].result(0) == item
    assert pool.status().runs == len(processed)
    if drain == "full-drain":
        assert unprocessed == []


# -- under a Monitor ---------------------------------------------------------------------------


def test_a_pool_stopped_by_a_monitor_with_a_shorter_stop_timeout_hands_back_the_rest(
    blocking: Blocking,
) -> None:
    pool = WorkerPool(blocking, workers=2, name="jobs", drain_timeout=None)
    monitor = Monitor(pool, signals=(), stop_timeout=0.2)
    monitor.start()
    submitted = [pool.submit(item) for item in range(10)]
    blocking.wait_started(0)
    blocking.wait_started(1)
    monitor.shutdown()
    report = monitor.wait(WAIT)
    assert report is not None
    assert [(outcome.name, outcome.state) for outcome in report.outcomes] == [("jobs", "timed_out")]
    unprocessed = pool.unprocessed()  # what a program does before it exits
    assert unprocessed == list(range(2, 10))
    blocking.release.set()
    (pool_thread,) = [t for t in threading.enumerate() if t.name == "routine:jobs"]
    pool_thread.join(WAIT)
    assert not pool_thread.is_alive()
    assert sorted(blocking.done) + unprocessed == list(range(10))
    assert all(future.cancelled() for future in submitted[2:])
