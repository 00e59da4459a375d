"""Health data: `to_dict()` of statuses, events, outcomes and reports round-trips through JSON in
every state, the wall-clock times of runs, and `Monitor.healthy()`."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

import routines
from routines import RestartPolicy

from helpers import WAIT, EventLog, Gate, LogWatcher, Stubborn, join


class Unprintable(Exception):
    def __str__(self) -> str:
        raise KeyError("message")


def round_trip(value: dict[str, object]) -> Any:
    return json.loads(json.dumps(value))


@pytest.mark.parametrize(
    "state", ["idle", "running", "stopping", "stopped", "finished", "failed", "restarting"]
)
def test_a_status_in_every_state_round_trips_through_json(state: routines.RoutineState) -> None:
    status = routines.RoutineStatus(
        "r", state, restarts=2, last_error="ValueError: bad", runs=3, last_run_at=1.5
    )
    assert round_trip(status.to_dict()) == {
        "name": "r",
        "state": state,
        "restarts": 2,
        "last_error": "ValueError: bad",
        "runs": 3,
        "failures": 0,
        "missed_runs": 0,
        "overdue_runs": 0,
        "last_run_duration": None,
        "queued": 0,
        "last_run_at": 1.5,
        "last_success_at": None,
        "next_run_at": None,
        "paused": False,
        "limited": False,
        "run_durations": None,
    }


@pytest.mark.parametrize("state", ["stopped", "finished", "failed", "timed_out", "abandoned"])
@pytest.mark.parametrize(
    "error", [None, ValueError("bad"), Unprintable()], ids=["none", "plain", "unprintable"]
)
def test_an_outcome_and_its_report_round_trip_through_json(
    state: routines.OutcomeState, error: BaseException | None
) -> None:
    outcome = routines.RoutineOutcome(
        "r", state, error, "  File x\n" if state == "timed_out" else None
    )
    report = routines.ShutdownReport("received SIGTERM", 15, False, 0.25, (outcome,))
    data = round_trip(report.to_dict())
    assert data["reason"] == "received SIGTERM"
    assert data["signal"] == 15
    assert data["ok"] is (state in ("stopped", "finished"))
    assert data["exit_code"] == (0 if data["ok"] else 1)
    (found,) = data["outcomes"]
    assert found["state"] == state
    assert found["stack"] == outcome.stack
    if error is None:
        assert found["error"] is None
    else:
        assert found["error"]["type"] == type(error).__name__
        assert isinstance(found["error"]["message"], str)


@pytest.mark.parametrize(
    "kind", ["started", "stopped", "finished", "failed", "restarting", "gave_up", "stop_timed_out"]
)
def test_an_event_of_every_kind_round_trips_through_json(kind: routines.EventKind) -> None:
    event = routines.RoutineEvent(kind, "r", 1700000000.5, ValueError("bad"))
    assert round_trip(event.to_dict()) == {
        "kind": kind,
        "routine": "r",
        "time": 1700000000.5,
        "error": {"type": "ValueError", "message": "bad"},
    }


def test_a_real_report_and_statuses_round_trip_through_json() -> None:
    events = EventLog()
    stubborn = Stubborn("stuck")
    monitor = routines.Monitor(
        Gate("gate"), stubborn, signals=(), stop_timeout=0.1, on_event=events
    )
    monitor.start()
    try:
        assert stubborn.started.wait(WAIT)
        statuses = [round_trip(status.to_dict()) for status in monitor.status()]
        with LogWatcher():
            monitor.shutdown()
            report = monitor.wait(WAIT)
    finally:
        stubborn.release.set()
    assert [status["state"] for status in statuses] == ["running", "running"]
    assert report is not None
    data = round_trip(report.to_dict())
    assert [o["state"] for o in data["outcomes"]] == ["stopped", "timed_out"]
    assert "start" in data["outcomes"][1]["stack"]
    assert all(round_trip(event.to_dict())["routine"] for event in events.events)


def test_a_periodic_status_tells_when_it_last_ran_succeeded_and_runs_next() -> None:
    failures = iter([None, ValueError("bad")])
    ran = threading.Semaphore(0)

    def handler() -> None:
        ran.release()
        error = next(failures, None)
        if error is not None:
            raise error

    periodic = routines.PeriodicRoutine(handler, interval=60, on_error=lambda exc: None)
    thread = threading.Thread(target=periodic.start)
    thread.start()
    try:
        assert ran.acquire(timeout=WAIT)
        first = periodic.status()
    finally:
        periodic.stop()
        join(thread)
    assert first.last_run_at is not None
    assert first.last_success_at == first.last_run_at
    assert first.next_run_at is not None
    assert 59 < first.next_run_at - first.last_run_at < 61
    assert periodic.status().next_run_at is None  # stopped: no run is due


def test_not_healthy_as_soon_as_shutdown_returns() -> None:
    gate = Gate()
    monitor = routines.Monitor(gate, signals=())
    monitor.start()
    assert gate.started.wait(WAIT)
    assert monitor.healthy()
    monitor.shutdown()
    assert not monitor.healthy()
    assert monitor.wait(WAIT) is not None


def test_healthy_while_every_routine_runs_or_waits_to_restart() -> None:
    class Crashes(routines.BackgroundRoutine):
        def run(self) -> None:
            raise RuntimeError("crash")

    events = EventLog()
    slow = RestartPolicy(backoff=60, max_backoff=60, jitter=0)
    monitor = routines.Monitor(
        Gate("gate"), routines.supervised(Crashes("crashes"), slow), signals=(), on_event=events
    )
    assert monitor.healthy() is False  # not started
    with LogWatcher():
        monitor.start()
        events.wait_for("crashes", "restarting")
        assert monitor.healthy() is True  # running, and waiting to restart within its policy
        monitor.shutdown()
        assert monitor.wait(WAIT) is not None
    assert monitor.healthy() is False


def test_unhealthy_once_a_routine_ended_for_good() -> None:
    events = EventLog()
    never = RestartPolicy(restart="never")
    monitor = routines.Monitor(
        Gate("gate"),
        routines.supervised(routines.CallbackRoutine(lambda: None, name="once"), never),
        signals=(),
        on_event=events,
    )
    monitor.start()
    try:
        events.wait_for("once", "finished")
        assert monitor.healthy() is False
    finally:
        monitor.shutdown()
        assert monitor.wait(WAIT) is not None
