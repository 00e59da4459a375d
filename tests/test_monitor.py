"""The Monitor: a thread per routine, shutdown within `stop_timeout`, stop() calls that block or
fail, shutdown asked from inside, events and status. Restarts are in test_monitor_restarts.py,
the report's own rendering in test_report.py."""

from __future__ import annotations

import logging
import threading
import time

import pytest

import routines

from helpers import (
    NO_RESTART,
    SLOW,
    WAIT,
    Counting,
    EventLog,
    Flaky,
    Gate,
    Harness,
    LogWatcher,
    Returner,
    Stubborn,
    started_monitor,
    status_of,
)


def finish(monitor: routines.Monitor, reason: str = "test over") -> routines.ShutdownReport:
    monitor.shutdown(reason)
    report = monitor.wait(WAIT * 2)
    assert report is not None, "the monitor did not finish its shutdown"
    return report


# -- running and shutting down -----------------------------------------------------------------


def test_each_routine_runs_on_its_own_thread_named_after_it() -> None:
    names: dict[str, str] = {}
    gates = [Gate("alpha"), Gate("beta")]
    for gate in gates:
        gate._on_run = lambda g=gate: names.__setitem__(g.name, threading.current_thread().name)  # type: ignore[misc]
    monitor = started_monitor(*gates)
    for gate in gates:
        assert gate.started.wait(WAIT)
    finish(monitor)
    assert names == {"alpha": "routine:alpha", "beta": "routine:beta"}


def test_shutdown_stops_every_routine_and_reports_them_in_order() -> None:
    gates = [Gate("c"), Gate("a"), Gate("b")]
    monitor = started_monitor(*gates)
    report = finish(monitor, "enough")
    assert [o.name for o in report.outcomes] == ["c", "a", "b"]
    assert [o.state for o in report.outcomes] == ["stopped"] * 3
    assert report.reason == "enough"
    assert report.signal is None
    assert report.forced is False
    assert report.ok is True
    assert report.exit_code == 0
    assert report.duration >= 0


def test_wait_returns_none_while_still_running() -> None:
    monitor = started_monitor(Gate())
    assert monitor.wait(0.01) is None
    finish(monitor)


def test_run_returns_when_every_routine_has_ended() -> None:
    done = routines.CallbackRoutine(lambda: None, name="quick")
    report = routines.Monitor(done, signals=(), restart=NO_RESTART).run()
    assert report.reason == "all routines ended"
    assert [o.state for o in report.outcomes] == ["finished"]
    assert report.ok


def test_a_monitor_with_no_routines_ends_at_once() -> None:
    report = routines.Monitor(signals=()).run()
    assert report.reason == "all routines ended"
    assert report.outcomes == ()
    assert report.ok


def test_a_failed_routine_with_no_restart_leaves_the_others_running() -> None:
    def crash() -> None:
        raise ValueError("bad config")

    gate = Gate("gate")
    with LogWatcher():
        monitor = started_monitor(
            routines.CallbackRoutine(crash, name="crash"), gate, restart=NO_RESTART
        )
        assert gate.started.wait(WAIT)
        assert monitor.wait(0.01) is None
        report = finish(monitor)
    assert [o.state for o in report.outcomes] == ["failed", "stopped"]
    assert isinstance(report.outcomes[0].error, ValueError)
    assert report.exit_code == 1


def test_a_start_that_raises_after_stop_is_stopped_with_the_error_and_not_restarted() -> None:
    class FailsOnStop(Gate):
        def run(self) -> None:
            super().run()
            raise RuntimeError("cleanup failed")

    routine = FailsOnStop("messy")
    monitor = started_monitor(routine, restart=routines.RestartPolicy(restart="always"))
    assert routine.started.wait(WAIT)
    with LogWatcher():
        report = finish(monitor)
    outcome = report.outcomes[0]
    assert outcome.state == "stopped"
    assert isinstance(outcome.error, RuntimeError)
    assert routine.runs == 1


def test_shutdown_before_start_stops_as_soon_as_it_starts() -> None:
    gate = Gate()
    monitor = routines.Monitor(gate, signals=())
    monitor.shutdown("never mind")
    monitor.start()
    report = monitor.wait(WAIT)
    assert report is not None
    assert report.reason == "never mind"
    assert report.outcomes[0].state == "stopped"
    assert gate.runs == 0


def test_the_first_shutdown_reason_wins() -> None:
    monitor = started_monitor(Gate())
    monitor.shutdown("first")
    monitor.shutdown("second")
    report = monitor.wait(WAIT)
    assert report is not None
    assert report.reason == "first"


def test_a_monitor_runs_once() -> None:
    monitor = started_monitor(Gate())
    with pytest.raises(RuntimeError, match="already started"):
        monitor.start()
    finish(monitor)
    with pytest.raises(RuntimeError, match="already started"):
        monitor.run()


def test_wait_before_start_raises() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        routines.Monitor(Gate(), signals=()).wait(0)


def test_context_manager_starts_on_enter_and_stops_on_exit() -> None:
    gate = Gate()
    with routines.Monitor(gate, signals=()) as monitor:
        assert gate.started.wait(WAIT)
    assert gate.returned.is_set()
    report = monitor.wait(0)
    assert report is not None
    assert report.reason == "context exited"


def test_context_manager_stops_on_an_exception_and_lets_it_through() -> None:
    gate = Gate()
    monitor = routines.Monitor(gate, signals=())

    def crash_inside() -> None:
        with monitor:
            assert gate.started.wait(WAIT)
            raise KeyError("boom")

    with pytest.raises(KeyError):
        crash_inside()
    report = monitor.wait(0)
    assert report is not None
    assert "KeyError" in report.reason
    assert gate.returned.is_set()


def test_stopping_turns_true_in_any_routine_the_monitor_stops() -> None:
    seen: list[bool] = []
    entered = threading.Event()

    class Plain:
        """Not a routine of this library: it has no stop flag of its own."""

        name = "plain"

        def __init__(self) -> None:
            self.stop_asked = threading.Event()

        def start(self) -> None:
            entered.set()
            self.stop_asked.wait(WAIT)
            seen.append(routines.stopping())

        def stop(self) -> None:
            self.stop_asked.set()

    monitor = started_monitor(Plain())
    assert entered.wait(WAIT)
    finish(monitor)
    assert seen == [True]


def test_the_same_routine_name_may_appear_twice() -> None:
    monitor = started_monitor(Gate("twin"), Gate("twin"))
    report = finish(monitor)
    assert [o.name for o in report.outcomes] == ["twin", "twin"]


def test_monitor_function_runs_a_monitor() -> None:
    report = routines.monitor(routines.CallbackRoutine(lambda: None), signals=())
    assert report.reason == "all routines ended"


# -- routines that ignore stop, and stop() calls that block, raise or never return -------------


def test_a_routine_that_ignores_stop_times_out_with_its_stack() -> None:
    stubborn, gate = Stubborn("stubborn"), Gate("polite")
    events = EventLog()
    monitor = started_monitor(stubborn, gate, stop_timeout=0.2, on_event=events)
    assert stubborn.started.wait(WAIT)
    try:
        report = finish(monitor)
    finally:
        stubborn.release.set()
    timed_out, polite = report.outcomes
    assert timed_out.state == "timed_out"
    assert timed_out.stack is not None
    assert "in start" in timed_out.stack
    assert polite.state == "stopped"
    assert report.ok is False
    assert report.exit_code == 1
    assert 0.2 <= report.duration < WAIT
    assert events.kinds("stubborn") == ["started", "stop_timed_out"]


def test_stop_timeout_zero_stops_without_waiting() -> None:
    stubborn = Stubborn()
    monitor = started_monitor(stubborn, stop_timeout=0)
    assert stubborn.started.wait(WAIT)
    try:
        report = finish(monitor)
    finally:
        stubborn.release.set()
    assert report.outcomes[0].state == "timed_out"
    assert stubborn.stop_calls == 1


def test_a_stop_that_blocks_delays_no_other_routine() -> None:
    release = threading.Event()

    class BlockingStop(Gate):
        def stop(self) -> None:
            release.wait(WAIT)
            super().stop()

    blocking, gate = BlockingStop("blocking"), Gate("gate")
    monitor = started_monitor(blocking, gate, stop_timeout=WAIT)
    assert blocking.started.wait(WAIT)
    assert gate.started.wait(WAIT)
    monitor.shutdown()
    try:
        assert gate.returned.wait(WAIT)
        assert monitor.wait(0.01) is None  # still waiting for the blocked one
    finally:
        release.set()
    report = monitor.wait(WAIT)
    assert report is not None
    assert [o.state for o in report.outcomes] == ["stopped", "stopped"]


def test_a_stop_that_raises_is_reported_and_the_routine_is_still_stopped() -> None:
    class RaisingStop(Gate):
        def stop(self) -> None:
            super().stop()
            raise RuntimeError("stop failed")

    raising, gate = RaisingStop("raising"), Gate("gate")
    monitor = started_monitor(raising, gate)
    assert raising.started.wait(WAIT)
    with LogWatcher():
        report = finish(monitor)
    outcome = report.outcomes[0]
    assert outcome.state == "stopped"
    assert isinstance(outcome.error, RuntimeError)
    assert report.outcomes[1].state == "stopped"
    assert report.outcomes[1].error is None


def test_a_stop_that_never_returns_is_reported_even_when_its_routine_stopped() -> None:
    release = threading.Event()

    class HangingStop(Gate):
        def stop(self) -> None:
            super().stop()  # the routine returns...
            release.wait(WAIT)  # ...but stop() itself does not

    routine = HangingStop("hanging-stop")
    monitor = started_monitor(routine, stop_timeout=0.1)
    assert routine.started.wait(WAIT)
    try:
        with LogWatcher() as logs:
            report = finish(monitor)
            logs.wait_for("its stop() has not returned")
    finally:
        release.set()
    outcome = report.outcomes[0]
    assert outcome.state == "stopped"
    assert isinstance(outcome.error, TimeoutError)
    assert "stop() did not return" in str(outcome.error)


def test_the_report_comes_even_when_no_thread_can_be_had_to_call_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = Gate("gate")
    monitor = routines.Monitor(gate, signals=(), stop_timeout=0.1)

    class NoThreadsLeft:
        def submit(self, call: object) -> None:
            raise RuntimeError("can't start new thread")

        def close(self, timeout: float = 0.0) -> bool:
            return True

    monkeypatch.setattr(monitor, "_stop_calls", NoThreadsLeft())
    monitor.start()
    assert gate.started.wait(WAIT)
    try:
        with LogWatcher():
            report = finish(monitor)
    finally:
        gate.stop()
    outcome = report.outcomes[0]
    assert outcome.state == "timed_out"
    assert isinstance(outcome.error, RuntimeError)


# -- shutdown asked from inside ----------------------------------------------------------------


def test_shutdown_from_inside_a_routine_does_not_deadlock() -> None:
    holder: list[routines.Monitor] = []
    ready = threading.Event()

    def ask_for_shutdown() -> None:
        assert ready.wait(WAIT)
        holder[0].shutdown("routine asked")
        routines.sleep(WAIT)

    monitor = routines.Monitor(
        routines.CallbackRoutine(ask_for_shutdown, name="asker"), Gate("other"), signals=()
    )
    holder.append(monitor)
    monitor.start()
    ready.set()
    report = monitor.wait(WAIT)
    assert report is not None
    assert report.reason == "routine asked"
    assert [o.state for o in report.outcomes] == ["stopped", "stopped"]


def test_shutdown_from_on_event_does_not_deadlock() -> None:
    holder: list[routines.Monitor] = []

    def on_event(event: routines.RoutineEvent) -> None:
        if event.kind == "started":
            holder[0].shutdown(f"{event.routine} started")

    monitor = routines.Monitor(Gate("g"), signals=(), on_event=on_event)
    holder.append(monitor)
    monitor.start()
    report = monitor.wait(WAIT)
    assert report is not None
    assert report.reason == "g started"


# -- events ------------------------------------------------------------------------------------


def test_events_carry_the_routine_name_wall_clock_time_and_error(harness: Harness) -> None:
    flaky = Flaky("flaky")
    events = EventLog()
    before = time.time()
    harness.monitor(flaky, restart=routines.RestartPolicy(restart="never"), on_event=events)
    events.wait_for("flaky", "failed")
    started, failed = events.events
    assert (started.routine, started.error) == ("flaky", None)
    assert (failed.routine, failed.error) == ("flaky", flaky.errors[0])
    assert before <= started.time <= failed.time <= time.time()


def test_a_stop_timed_out_event_is_delivered_before_wait_returns(harness: Harness) -> None:
    blocked = harness.blocker()
    events = EventLog()
    monitor = harness.monitor(blocked, stop_timeout=0.05, on_event=events)
    assert blocked.started.wait(WAIT)
    report = harness.finish(monitor)
    assert report.outcomes[0].state == "timed_out"
    assert events.kinds() == ["started", "stop_timed_out"]


def test_an_on_event_that_raises_is_logged_and_delivery_goes_on(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(event: routines.RoutineEvent) -> None:
        raise ValueError(f"bad handler for {event.kind}")

    events = EventLog(then=explode)
    with caplog.at_level(logging.ERROR, logger="routines"):
        monitor = harness.monitor(Returner("returner"), on_event=events)
        harness.ended(monitor)
    assert events.kinds() == ["started", "finished"]
    raised = [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], ValueError)]
    assert [str(r.exc_info[1]) for r in raised if r.exc_info] == [
        "bad handler for started",
        "bad handler for finished",
    ]
    assert all("on_event" in r.getMessage() for r in raised)


def test_shutdown_from_on_event_works(harness: Harness) -> None:
    # The harness holds the monitor before starting it: on_event may need it at once.
    def stop_on_start(event: routines.RoutineEvent) -> None:
        if event.kind == "started":
            harness.monitors[0].shutdown("asked by on_event")

    events = EventLog(then=stop_on_start)
    monitor = harness.monitor(Counting("counting"), on_event=events)
    report = monitor.wait(WAIT)
    assert report is not None
    assert report.reason == "asked by on_event"
    assert events.kinds() == ["started", "stopped"]


# -- status ------------------------------------------------------------------------------------


def test_status_reports_every_routine_from_idle_to_stopped() -> None:
    gate = Gate("gate")
    monitor = routines.Monitor(gate, signals=())
    assert [(s.name, s.state) for s in monitor.status()] == [("gate", "idle")]
    monitor.start()
    assert gate.started.wait(WAIT)
    assert [(s.name, s.state, s.restarts) for s in monitor.status()] == [("gate", "running", 0)]
    finish(monitor)
    assert [s.state for s in monitor.status()] == ["stopped"]


def test_status_includes_the_routines_own_counters() -> None:
    class Counting(Gate):
        def status(self) -> routines.RoutineStatus:
            return routines.RoutineStatus(self.name, "running", runs=7, failures=2)

    routine = Counting("counting")
    monitor = started_monitor(routine)
    assert routine.started.wait(WAIT)
    (status,) = monitor.status()
    assert (status.name, status.state, status.runs, status.failures) == (
        "counting",
        "running",
        7,
        2,
    )
    finish(monitor)


def test_status_does_not_block_while_a_stop_blocks() -> None:
    release = threading.Event()
    stop_entered = threading.Event()

    class BlockingStop(Gate):
        def stop(self) -> None:
            stop_entered.set()
            release.wait(WAIT)
            super().stop()

    routine = BlockingStop("blocking")
    monitor = started_monitor(routine)
    assert routine.started.wait(WAIT)
    monitor.shutdown()
    try:
        assert stop_entered.wait(WAIT)
        assert [s.state for s in monitor.status()] == ["stopping"]
    finally:
        release.set()
    assert monitor.wait(WAIT) is not None


def test_status_before_start_is_idle() -> None:
    monitor = routines.Monitor(routines.NoopRoutine("a"), routines.NoopRoutine("b"), signals=())
    statuses = monitor.status()
    assert [(s.name, s.state, s.restarts, s.last_error) for s in statuses] == [
        ("a", "idle", 0, None),
        ("b", "idle", 0, None),
    ]


def test_status_does_not_block_while_a_start_is_blocked(harness: Harness) -> None:
    blocked = harness.blocker()
    monitor = harness.monitor(blocked)
    assert blocked.started.wait(WAIT)
    assert [(s.name, s.state) for s in monitor.status()] == [("blocked", "running")]


def test_status_works_from_another_thread(harness: Harness) -> None:
    blocked = harness.blocker()
    monitor = harness.monitor(blocked, Flaky("flaky"), restart=SLOW)
    assert blocked.started.wait(WAIT)
    seen: list[list[routines.RoutineStatus]] = []
    reader = threading.Thread(target=lambda: seen.append(monitor.status()), name="status-reader")
    reader.start()
    reader.join(WAIT)
    assert not reader.is_alive()
    assert [s.name for s in seen[0]] == ["blocked", "flaky"]
    assert seen[0][0].state == "running"


def test_status_while_a_routine_ignores_stop_is_stopping(harness: Harness) -> None:
    blocked = harness.blocker()
    monitor = harness.monitor(blocked, stop_timeout=WAIT)
    assert blocked.started.wait(WAIT)
    monitor.shutdown()
    assert blocked.stop_called.wait(WAIT)  # the monitor marks it "stopping" before it calls stop()
    assert status_of(monitor, "blocked").state == "stopping"
    blocked.release.set()
    report = monitor.wait(WAIT)
    assert report is not None
    assert status_of(monitor, "blocked").state == "stopped"


# -- races between shutdown and a start --------------------------------------------------------


def test_shutdown_right_after_start_never_deadlocks() -> None:
    # Shutdown can land between the wait before a start and the check under the monitor's lock.
    for _ in range(200):
        monitor = routines.Monitor(routines.NoopRoutine(), signals=())
        monitor.start()
        monitor.shutdown()
        report = monitor.wait(WAIT)
        assert report is not None, "the monitor deadlocked"
        assert report.outcomes[0].state == "stopped"
