"""Hostile inputs and bad timing: exceptions whose `str()` raises, BaseExceptions in callbacks,
signals in the middle of a restore or of a lock, stops that arrive after their run has ended.

Each test pins a fault an adversarial review found (issue 11, numbered as there); each failed
before its fix.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

import routines
from routines import Monitor, RestartPolicy, WorkerPool
from routines.testing import FakeClock

from helpers import (
    NO_RESTART,
    WAIT,
    EventLog,
    Fatal,
    Gate,
    LogWatcher,
    Stubborn,
    Unprintable,
    in_background,
    join,
)

AT_ONCE = RestartPolicy(backoff=0, max_backoff=0, jitter=0)


class Unreadable(Unprintable):
    """One whose `repr()` fails too."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr either")


def all_messages(logs: LogWatcher) -> list[str]:
    """Every record's message: formatting one must not raise."""
    return [record.getMessage() for record in logs.records]


# -- 1. an exception whose str() raises --------------------------------------------------------


def test_describing_an_error_whose_str_raises_falls_back_to_its_type_and_repr() -> None:
    from routines._status import describe_error

    assert (
        describe_error(Unprintable("the key"))
        == "Unprintable: <str() failed> Unprintable('the key')"
    )
    assert describe_error(Unreadable()) == "Unreadable: <str() failed>"


def test_a_pool_handler_raising_an_unprintable_error_resolves_its_future_and_goes_on() -> None:
    def handler(item: int) -> int:
        if item == 0:
            raise Unprintable
        return item

    pool = WorkerPool(handler, workers=1)
    thread = threading.Thread(target=pool.start)
    with LogWatcher() as logs:
        thread.start()
        failed = pool.submit(0)
        assert isinstance(failed.exception(WAIT), Unprintable)
        assert pool.submit(1).result(WAIT) == 1
        assert pool.status().state == "running"
        assert pool.status().last_error == "Unprintable: <str() failed> Unprintable()"
        pool.stop()
        join(thread)
        assert any("Unprintable" in message for message in all_messages(logs))
    assert pool.status().failures == 1


def test_a_pool_item_whose_repr_raises_is_described_and_the_pool_goes_on() -> None:
    huge = [10**5000]  # repr() raises: past CPython's limit of digits in an int's str()
    pool: WorkerPool[object, object] = WorkerPool(lambda item: 1 / 0, workers=1)
    thread = threading.Thread(target=pool.start)
    with LogWatcher() as logs:
        thread.start()
        assert isinstance(pool.submit(huge).exception(WAIT), ZeroDivisionError)
        assert isinstance(pool.submit(2).exception(WAIT), ZeroDivisionError)
        assert pool.status().state == "running"
        pool.stop()
        join(thread)
        assert any("repr() failed" in message for message in all_messages(logs))


def test_a_periodic_handler_raising_an_unprintable_error_keeps_the_loop_going() -> None:
    clock = FakeClock()

    def handler() -> None:
        raise Unreadable

    routine = routines.PeriodicRoutine(handler, interval=1, clock=clock)
    thread = threading.Thread(target=routine.start)
    with LogWatcher() as logs:
        thread.start()
        clock.wait_for_sleepers(1)
        clock.advance(1)
        clock.wait_for_sleepers(1)
        routine.stop()
        join(thread)
        assert len(all_messages(logs)) == 2
    assert routine.status().failures == 2
    assert routine.status().last_error == "Unreadable: <str() failed>"


def test_with_error_message_logs_an_unprintable_error() -> None:
    def fn() -> None:
        raise Unprintable("x")

    with LogWatcher() as logs:
        routines.with_error_message("could not sync", fn)()
    assert all_messages(logs) == ["could not sync: <str() failed> Unprintable('x')"]


def test_a_routine_raising_an_unprintable_error_is_restarted_and_reported() -> None:
    class FailsOnce(routines.BackgroundRoutine):
        runs = 0

        def run(self) -> None:
            self.runs += 1
            if self.runs == 1:
                raise Unreadable
            self.wait(None)

    routine = FailsOnce("flaky")
    events = EventLog()
    monitor = Monitor(routine, signals=(), restart=AT_ONCE, on_event=events)
    with LogWatcher() as logs:
        monitor.start()
        events.wait_for("flaky", "started", count=2)
        (status,) = monitor.status()
        assert (status.state, status.restarts) == ("running", 1)
        assert status.last_error == "Unreadable: <str() failed>"
        monitor.shutdown()
        report = monitor.wait(WAIT)
        assert all_messages(logs)
    assert report is not None
    assert report.outcomes[0].state == "stopped"
    assert "flaky" in str(report)


def test_a_report_with_an_unprintable_error_renders() -> None:
    routine = routines.CallbackRoutine(lambda: (_ for _ in ()).throw(Unreadable()), name="bad")
    report = routines.Monitor(routine, signals=(), restart=NO_RESTART).run()
    assert report.outcomes[0].state == "failed"
    assert "bad" in str(report)
    assert "Unreadable: <str() failed>" in str(report)


# -- 2. a pool's on_error that raises a BaseException ------------------------------------------


def test_a_pool_on_error_raising_a_base_exception_resolves_the_future_and_ends_the_pool() -> None:
    error = ValueError("bad item")

    def handler(item: int) -> int:
        if item == 0:
            raise error
        return item

    def on_error(item: int, exc: Exception) -> None:
        sys.exit(3)

    pool = WorkerPool(handler, workers=1, on_error=on_error)
    futures = [pool.submit(item) for item in range(3)]
    with LogWatcher(), pytest.raises(SystemExit):
        pool.start()
    assert futures[0].exception(0) is error
    assert not any(future.done() for future in futures[1:])  # kept for a restart
    assert pool.status().state == "failed"
    pool.stop()
    assert pool.unprocessed() == [1, 2]


# -- 3. a BaseException in on_event or on_signal -----------------------------------------------


@pytest.mark.parametrize(
    "error", [SystemExit(2), KeyboardInterrupt()], ids=lambda e: type(e).__name__
)
def test_on_event_raising_a_base_exception_is_logged_and_later_events_are_delivered(
    error: BaseException,
) -> None:
    seen: list[str] = []

    def on_event(event: routines.RoutineEvent) -> None:
        seen.append(event.kind)
        if event.kind == "started":
            raise error

    gate = Gate("gate")
    monitor = Monitor(gate, signals=(), on_event=on_event)
    with LogWatcher() as logs:
        monitor.start()
        assert gate.started.wait(WAIT)
        logs.wait_for("on_event raised")
        monitor.shutdown()
        report = monitor.wait(WAIT)
        assert "not run" not in logs.text()  # no callback was dropped
    assert report is not None
    assert seen == ["started", "stopped"]  # the thread that runs callbacks lived on


def test_on_signal_raising_a_base_exception_is_logged_and_the_next_one_runs() -> None:
    calls: list[int] = []
    second_call = threading.Event()
    gate = Gate("gate")

    def on_usr1() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        second_call.set()

    with LogWatcher() as logs:

        def send() -> None:
            assert gate.started.wait(WAIT)
            os.kill(os.getpid(), signal.SIGUSR1)
            logs.wait_for("on_signal raised")
            os.kill(os.getpid(), signal.SIGUSR1)
            assert second_call.wait(WAIT)
            os.kill(os.getpid(), signal.SIGTERM)

        with in_background(send):
            report = Monitor(gate, on_signal={signal.SIGUSR1: on_usr1}).run()
    assert calls == [1, 1]
    assert report.ok


# -- 4. a SIGINT that lands while run() restores the handlers ----------------------------------


def test_a_sigint_landing_during_the_restore_still_leaves_every_handler_restored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_signal = signal.signal
    landed: list[int] = []

    def signal_then_sigint(signum: int, handler: Any) -> Any:
        previous = real_signal(signum, handler)
        if signum == signal.SIGINT and handler is signal.default_int_handler and not landed:
            # A real SIGINT, right after Python's default handler is back: it raises
            # KeyboardInterrupt at the next bytecode, in the middle of the restore.
            landed.append(signum)
            signal.raise_signal(signal.SIGINT)
        return previous

    term_before = signal.getsignal(signal.SIGTERM)
    int_before = real_signal(signal.SIGINT, signal.default_int_handler)
    wakeup_before = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup_before)
    monkeypatch.setattr(signal, "signal", signal_then_sigint)
    try:
        monitor = Monitor(routines.CallbackRoutine(lambda: None), restart=NO_RESTART)
        with pytest.raises(KeyboardInterrupt):
            monitor.run()
    finally:
        monkeypatch.undo()
        real_signal(signal.SIGINT, int_before)
    assert landed == [signal.SIGINT]
    assert signal.getsignal(signal.SIGTERM) is term_before
    wakeup_after = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup_after)
    assert wakeup_after == wakeup_before
    assert monitor.wait(0) is not None


# -- 5. KeyboardInterrupt inside WorkerPool.submit() -------------------------------------------


def _lines_of(fn: Callable[..., object]) -> list[int]:
    code = fn.__code__
    return sorted({line for _, _, line in code.co_lines() if line is not None})


def _interrupt_at(line: int, code: object, call: Callable[[], object]) -> object | None:
    """Call `call`, raising KeyboardInterrupt when `code` is about to run `line`."""

    def local(frame: FrameType, event: str, arg: object) -> Any:
        if event == "line" and frame.f_lineno == line:
            raise KeyboardInterrupt
        return local

    def global_trace(frame: FrameType, event: str, arg: object) -> Any:
        return local if frame.f_code is code else None

    sys.settrace(global_trace)
    try:
        return call()
    except KeyboardInterrupt:
        return None
    finally:
        sys.settrace(None)


def test_a_keyboard_interrupt_anywhere_in_submit_never_pairs_an_item_with_another_future() -> None:
    submit = WorkerPool.submit
    for line in _lines_of(submit):
        pool = WorkerPool(lambda item: item * 2, workers=2, drain_timeout=None)
        accepted: dict[int, concurrent.futures.Future[int]] = {}
        for item in range(3):
            accepted[item] = pool.submit(item)
        future = _interrupt_at(line, submit.__code__, functools.partial(pool.submit, 100))
        if future is not None:
            accepted[100] = future  # type: ignore[assignment]
        for item in range(3, 6):
            accepted[item] = pool.submit(item)
        thread = threading.Thread(target=pool.start)
        thread.start()
        pool.stop()
        join(thread)
        for item, accepted_future in accepted.items():
            assert accepted_future.result(0) == item * 2, f"line {line}: item {item}"
        assert pool.unprocessed() == []
        assert pool.status().runs in (len(accepted), len(accepted) + 1)


# -- 6. a stop that arrives after its run has ended ---------------------------------------------


def _kinds_that_end_on_their_own(runs: list[int]) -> list[routines.Routine]:
    class Once(routines.BackgroundRoutine):
        def run(self) -> None:
            runs.append(1)

    def ends_its_run() -> None:
        runs.append(1)
        raise Fatal

    return [
        Once("background"),
        routines.CallbackRoutine(lambda: runs.append(1), name="callback"),
        routines.CombinedRoutine(routines.CallbackRoutine(lambda: runs.append(1), name="child")),
        routines.PeriodicRoutine(ends_its_run, name="periodic"),
    ]


@pytest.mark.parametrize("index", range(4), ids=["background", "callback", "combined", "periodic"])
def test_a_stop_after_the_run_ended_applies_to_no_later_run(index: int) -> None:
    runs: list[int] = []
    routine = _kinds_that_end_on_their_own(runs)[index]
    with pytest.raises(Fatal) if index == 3 else _no_error():
        routine.start()
    routine.stop()  # late: the run it was meant for is over
    with pytest.raises(Fatal) if index == 3 else _no_error():
        routine.start()
    assert len(runs) == 2


class _no_error:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class LateStop(routines.BackgroundRoutine):
    """A legacy loop that watches `routines.stopping()`; its `stop()` arrives once the run it was
    meant for has already returned (as one from a busy stop helper can)."""

    def __init__(self, name: str = "legacy") -> None:
        super().__init__(name)
        self.runs = 0
        self.started = threading.Semaphore(0)
        self.returned = threading.Event()

    def run(self) -> None:
        self.runs += 1
        self.returned.clear()
        self.started.release()
        try:
            while not routines.stopping():
                routines.sleep(WAIT)
        finally:
            self.returned.set()

    def stop(self) -> None:
        self.returned.wait(WAIT)
        super().stop()

    def wait_started(self) -> None:
        assert self.started.acquire(timeout=WAIT), "the legacy loop did not (re)start"


def test_a_late_stop_from_one_monitor_does_not_end_the_routine_in_the_next() -> None:
    legacy = LateStop()
    for _ in range(2):
        monitor = Monitor(legacy, signals=(), stop_timeout=WAIT)
        monitor.start()
        legacy.wait_started()
        monitor.shutdown()
        report = monitor.wait(WAIT * 2)
        assert report is not None
        assert report.outcomes[0].state == "stopped"
    assert legacy.runs == 2


def test_a_restarted_combined_routine_runs_its_legacy_child_again() -> None:
    legacy = LateStop()

    class CrashesOnce(routines.BackgroundRoutine):
        runs = 0

        def run(self) -> None:
            self.runs += 1
            if self.runs == 1:
                legacy.wait_started()  # its sibling runs: now fail the group
                raise RuntimeError("crash")
            self.wait(None)

    crasher = CrashesOnce("crasher")
    events = EventLog()
    group = routines.CombinedRoutine(legacy, crasher, name="group")
    monitor = Monitor(group, signals=(), restart=AT_ONCE, on_event=events)
    with LogWatcher():
        monitor.start()
        events.wait_for("group", "started", count=2)
        legacy.wait_started()
        monitor.shutdown()
        report = monitor.wait(WAIT * 2)
    assert report is not None
    assert report.outcomes[0].state == "stopped"
    assert (legacy.runs, crasher.runs) == (2, 2)


# -- 7. shutdown() from the program's own signal handler ---------------------------------------


def test_shutdown_from_a_signal_handler_interrupting_wait_or_status_never_deadlocks() -> None:
    from helpers import Example

    program = str(Path(__file__).resolve().parent / "programs" / "handler_shutdown.py")
    with Example(program) as run:
        code = run.wait(timeout=30)
    assert code == 0, run.output + run.errors
    assert "shut down from a signal handler" in run.output


# -- 8 and 9. after an exception breaks run()'s signal pump ------------------------------------


def _break_the_pump_once(monkeypatch: pytest.MonkeyPatch, monitor: Monitor) -> None:
    handle = monitor._shutdown_signal
    broke: list[int] = []

    def broken_once(signum: int) -> None:
        if not broke:
            broke.append(signum)
            raise RuntimeError("pump broke")
        handle(signum)

    monkeypatch.setattr(monitor, "_shutdown_signal", broken_once)


def test_after_the_pump_broke_a_second_signal_still_forces_the_end(
    monkeypatch: pytest.MonkeyPatch, release: threading.Event
) -> None:
    stubborn = Stubborn()
    monitor = Monitor(stubborn, stop_timeout=WAIT * 2)
    _break_the_pump_once(monkeypatch, monitor)

    def send() -> None:
        assert stubborn.started.wait(WAIT)
        os.kill(os.getpid(), signal.SIGTERM)  # breaks the pump: the shutdown begins
        deadline = time.monotonic() + WAIT
        while stubborn.stop_calls == 0 and time.monotonic() < deadline:
            threading.Event().wait(0.01)
        os.kill(os.getpid(), signal.SIGTERM)  # the second signal: stop waiting

    with in_background(send), pytest.raises(RuntimeError, match="pump broke"):
        monitor.run()  # with the second signal unread, this took stop_timeout (10 s) more
    stubborn.release.set()
    report = monitor.wait(0)
    assert report is not None
    assert report.forced
    assert report.outcomes[0].state == "abandoned"


def test_after_the_pump_broke_the_longest_stop_timeout_lets_the_exception_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from routines._validate import MAX_SECONDS

    gate = Gate()
    monitor = Monitor(gate, stop_timeout=MAX_SECONDS)
    _break_the_pump_once(monkeypatch, monitor)

    def send() -> None:
        assert gate.started.wait(WAIT)
        os.kill(os.getpid(), signal.SIGTERM)

    with in_background(send), pytest.raises(RuntimeError, match="pump broke"):
        monitor.run()
    assert gate.returned.is_set()


# -- 10. a fixed rate with a tiny interval -----------------------------------------------------


@pytest.mark.parametrize("constant", [True, False], ids=["constant", "function"])
def test_a_fixed_rate_with_a_tiny_interval_keeps_running(constant: bool) -> None:
    clock = FakeClock()
    runs: list[float] = []
    tiny = 5e-324
    routine = routines.PeriodicRoutine(
        lambda: runs.append(clock.now()),
        interval=tiny if constant else (lambda: tiny),
        fixed_rate=True,
        clock=clock,
    )
    errors: list[BaseException] = []

    def start() -> None:
        try:
            routine.start()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=start)
    thread.start()
    try:
        clock.wait_for_sleepers(1)
        clock.advance(1)
        clock.wait_for_sleepers(1)
    finally:
        routine.stop()
        join(thread)
    assert errors == []
    assert runs[:2] == [0.0, 1.0]
    assert routine.status().missed_runs > 0


# -- 11. the queue of a pool that failed for good ----------------------------------------------


@pytest.mark.parametrize(
    "policy",
    [NO_RESTART, RestartPolicy(max_restarts=0, on_give_up="continue")],
    ids=["never", "gave-up"],
)
def test_a_pool_that_failed_for_good_hands_back_its_queue_at_shutdown(
    policy: RestartPolicy,
) -> None:
    def handler(item: int) -> int:
        if item == 0:
            sys.exit(1)
        return item

    pool = WorkerPool(handler, workers=1, name="pool")
    futures = [pool.submit(item) for item in range(3)]
    events = EventLog()
    gate = Gate("gate")
    monitor = Monitor(routines.supervised(pool, policy), gate, signals=(), on_event=events)
    with LogWatcher():
        monitor.start()
        events.wait_for("pool", "failed")
        assert gate.started.wait(WAIT)
        monitor.shutdown()
        report = monitor.wait(WAIT)
    assert report is not None
    assert [o.state for o in report.outcomes] == ["failed", "stopped"]
    assert pool.unprocessed() == [1, 2]
    assert all(future.cancelled() for future in futures[1:])
