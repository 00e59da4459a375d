from __future__ import annotations

import threading

import pytest

import routines

from helpers import WAIT, Gate, join, start_in_thread


class Recorder(routines.BackgroundRoutine):
    """Records in a shared list when it was asked to stop and when it returned."""

    def __init__(self, name: str, log: list[str], lock: threading.Lock) -> None:
        super().__init__(name)
        self.log = log
        self.lock = lock
        self.started = threading.Event()

    def run(self) -> None:
        self.started.set()
        self.wait(None)
        with self.lock:
            self.log.append(f"{self.name} returned")


def make_three() -> tuple[list[str], list[Recorder]]:
    log: list[str] = []
    lock = threading.Lock()
    return log, [Recorder(name, log, lock) for name in ("a", "b", "c")]


def run_and_stop(combined: routines.CombinedRoutine, children: list[Recorder]) -> None:
    thread = start_in_thread(combined)
    for child in children:
        assert child.started.wait(WAIT)
    combined.stop()
    join(thread)


def test_default_name_lists_the_children() -> None:
    _, children = make_three()
    assert routines.CombinedRoutine(*children).name == "combined[a, b, c]"


def test_each_child_runs_on_its_own_named_thread() -> None:
    names: list[str] = []
    lock = threading.Lock()

    def record() -> None:
        with lock:
            names.append(threading.current_thread().name)

    combined = routines.CombinedRoutine(
        routines.CallbackRoutine(record, name="x"), routines.CallbackRoutine(record, name="y")
    )
    combined.start()  # both children return on their own, so start() returns
    assert sorted(names) == ["routine:x", "routine:y"]


def test_lifo_stops_in_reverse_start_order_one_after_another() -> None:
    log, children = make_three()
    run_and_stop(routines.CombinedRoutine(*children, stop_order="lifo"), children)
    assert log == ["c returned", "b returned", "a returned"]


def test_fifo_stops_in_start_order_one_after_another() -> None:
    log, children = make_three()
    run_and_stop(routines.CombinedRoutine(*children, stop_order="fifo"), children)
    assert log == ["a returned", "b returned", "c returned"]


def test_concurrent_stops_every_child() -> None:
    log, children = make_three()
    run_and_stop(routines.CombinedRoutine(*children), children)
    assert sorted(log) == ["a returned", "b returned", "c returned"]


def test_an_ordered_stop_waits_for_the_previous_child_to_return() -> None:
    slow_release = threading.Event()
    b_stop_seen = threading.Event()

    class Slow(routines.BackgroundRoutine):
        def run(self) -> None:
            self.wait(None)
            slow_release.wait(WAIT)  # takes its time to shut down

    class Watch(routines.BackgroundRoutine):
        def run(self) -> None:
            self.wait(None)
            b_stop_seen.set()

    watch, slow = Watch("watch"), Slow("slow")
    combined = routines.CombinedRoutine(watch, slow, stop_order="lifo")
    thread = start_in_thread(combined)
    combined.stop()
    # lifo stops "slow" first; "watch" must not be asked while "slow" is still returning
    assert not b_stop_seen.wait(0.05)
    slow_release.set()
    assert b_stop_seen.wait(WAIT)
    join(thread)


def test_a_child_that_raises_stops_the_others_and_start_raises_it() -> None:
    log, children = make_three()

    class Crash(routines.BackgroundRoutine):
        def run(self) -> None:
            for child in children:
                assert child.started.wait(WAIT)
            raise RuntimeError("crash")

    combined = routines.CombinedRoutine(*children, Crash("crash"))
    with pytest.raises(RuntimeError, match="crash"):
        combined.start()
    assert sorted(log) == ["a returned", "b returned", "c returned"]


def test_a_child_that_returns_on_its_own_leaves_the_others_running() -> None:
    done = threading.Event()
    gate = Gate("gate")
    combined = routines.CombinedRoutine(routines.CallbackRoutine(done.set, name="quick"), gate)
    thread = start_in_thread(combined)
    assert done.wait(WAIT)
    assert gate.started.wait(WAIT)
    assert not gate.returned.is_set()
    assert thread.is_alive()
    combined.stop()
    join(thread)


def test_stop_before_start_returns_at_once_without_starting_children() -> None:
    gate = Gate()
    combined = routines.CombinedRoutine(gate)
    combined.stop()
    combined.start()
    assert gate.runs == 0


def test_a_stop_with_no_run_going_reaches_every_child_so_a_failed_pool_hands_back_its_queue() -> (
    None
):
    def handle(item: str) -> None:
        if item == "fatal":
            raise KeyboardInterrupt("a BaseException ends the pool")

    pool: routines.WorkerPool[str, None] = routines.WorkerPool(handle, workers=1, name="jobs")
    fatal, *waiting = [pool.submit(item) for item in ("fatal", "a", "b")]
    combined = routines.CombinedRoutine(pool, Gate("web"))
    with pytest.raises(KeyboardInterrupt):
        combined.start()  # the pool failed, keeping its queue for a restart of the group
    assert pool.status().queued == 2
    combined.stop()  # as a Monitor's shutdown does to a routine that ended for good
    assert pool.unprocessed() == ["a", "b"]
    assert [future.cancelled() for future in waiting] == [True, True]
    assert fatal.done()


def test_children_see_stopping_when_the_group_stops_them() -> None:
    seen: list[bool] = []
    entered = threading.Event()

    def work() -> None:
        entered.set()
        seen.append(routines.sleep(3600))

    combined = routines.CombinedRoutine(routines.CallbackRoutine(work))
    thread = start_in_thread(combined)
    assert entered.wait(WAIT)
    combined.stop()
    join(thread)
    assert seen == [True]


def test_a_child_whose_stop_blocks_does_not_hold_up_a_concurrent_stop() -> None:
    release = threading.Event()

    class BlockingStop(routines.BackgroundRoutine):
        def stop(self) -> None:
            release.wait(WAIT)
            super().stop()

        def run(self) -> None:
            self.wait(None)

    gate = Gate("gate")
    combined = routines.CombinedRoutine(BlockingStop("blocking"), gate)
    thread = start_in_thread(combined)
    assert gate.started.wait(WAIT)
    combined.stop()
    assert gate.returned.wait(WAIT)  # not held up by the other child's blocking stop()
    release.set()
    join(thread)


def test_the_group_can_be_started_again_after_a_failure() -> None:
    attempts: list[int] = []
    gate = Gate("gate")

    def flaky() -> None:
        attempts.append(1)
        assert gate.started.wait(WAIT)
        if len(attempts) == 1:
            raise RuntimeError("first run fails")

    combined = routines.CombinedRoutine(routines.CallbackRoutine(flaky, name="flaky"), gate)
    with pytest.raises(RuntimeError):
        combined.start()
    gate.started.clear()
    thread = start_in_thread(combined)
    assert gate.started.wait(WAIT)
    combined.stop()
    join(thread)
    assert len(attempts) == 2
    assert gate.runs == 2


def test_a_child_thread_that_cannot_start_fails_the_group_and_stops_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_start = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        if thread.name == "routine:b":
            raise RuntimeError("can't start new thread")
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    a, b = Gate("a"), Gate("b")
    with pytest.raises(RuntimeError, match="can't start new thread"):
        routines.CombinedRoutine(a, b).start()
    assert a.returned.is_set()
    assert b.runs == 0
