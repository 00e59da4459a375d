"""The Monitor restarting routines: the three restart modes, backoff waits that end at once on
shutdown, giving up, per-routine policies, every routine class restartable, and the events,
status and log lines that tell of a restart.

The decisions themselves (RestartPolicy, RestartWindow, Supervisor) are tested on plain numbers
in test_supervise.py; here routines run under a real Monitor (the `harness` fixture).
"""

from __future__ import annotations

import logging
import re
import threading

import pytest

import routines
from routines import Monitor, RestartPolicy, RoutineEvent, supervised

from helpers import (
    FAST,
    SLOW,
    WAIT,
    Counting,
    EventLog,
    Fatal,
    Flaky,
    Harness,
    Returner,
    status_of,
)

# -- the three restart modes -------------------------------------------------------------------


@pytest.mark.parametrize("restart", [None, RestartPolicy()])
def test_default_policy_restarts_a_routine_that_raised(
    harness: Harness, restart: RestartPolicy | None
) -> None:
    events = EventLog()
    monitor = harness.monitor(Flaky("flaky"), restart=restart, on_event=events)
    events.wait_for("flaky", "restarting")
    assert status_of(monitor, "flaky").state == "restarting"


@pytest.mark.parametrize("restart", [None, RestartPolicy()])
def test_default_policy_leaves_a_routine_that_returned_finished(
    harness: Harness, restart: RestartPolicy | None
) -> None:
    events = EventLog()
    returner = Returner("returner")
    monitor = harness.monitor(returner, restart=restart, on_event=events)
    report = harness.ended(monitor)
    assert report.reason == "all routines ended"
    assert [(o.name, o.state) for o in report.outcomes] == [("returner", "finished")]
    assert report.exit_code == 0
    assert returner.starts == 1
    assert events.kinds() == ["started", "finished"]


def test_on_failure_restarts_until_the_routine_recovers(harness: Harness) -> None:
    flaky = Flaky("flaky", failures=2)
    monitor = harness.monitor(flaky, restart=FAST)
    assert flaky.recovered.wait(WAIT)
    status = status_of(monitor, "flaky")
    assert (status.state, status.restarts) == ("running", 2)
    assert flaky.starts == 3
    report = harness.finish(monitor)
    assert [(o.state, o.error) for o in report.outcomes] == [("stopped", None)]


def test_on_failure_leaves_a_returned_routine_finished_while_others_run(harness: Harness) -> None:
    returner, counting = Returner("returner"), Counting("counting")
    events = EventLog()
    monitor = harness.monitor(returner, counting, restart=FAST, on_event=events)
    events.wait_for("returner", "finished")
    assert status_of(monitor, "returner").state == "finished"
    assert monitor.wait(0) is None  # the other routine keeps the monitor running
    report = harness.finish(monitor)
    assert [o.state for o in report.outcomes] == ["finished", "stopped"]
    assert returner.starts == 1


def test_always_restarts_a_routine_that_returned(harness: Harness) -> None:
    returner = Returner("returner", returns=2)
    events = EventLog()
    policy = RestartPolicy(restart="always", backoff=0.001, max_backoff=0.001)
    monitor = harness.monitor(returner, restart=policy, on_event=events)
    assert returner.waiting.wait(WAIT)
    assert returner.starts == 3
    assert status_of(monitor, "returner").restarts == 2
    report = harness.finish(monitor)
    assert report.outcomes[0].state == "stopped"
    assert events.kinds() == [
        *(["started", "finished", "restarting"] * 2),
        "started",
        "stopped",
    ]


def test_always_restarts_a_routine_that_raised(harness: Harness) -> None:
    flaky = Flaky("flaky", failures=1)
    policy = RestartPolicy(restart="always", backoff=0.001, max_backoff=0.001)
    harness.monitor(flaky, restart=policy)
    assert flaky.recovered.wait(WAIT)
    assert flaky.starts == 2


def test_always_counts_returns_toward_max_restarts(harness: Harness) -> None:
    returner = Returner("returner")
    policy = RestartPolicy(restart="always", backoff=0, max_backoff=0, max_restarts=2)
    report = harness.ended(harness.monitor(returner, restart=policy))
    assert returner.starts == 3
    assert [(o.state, o.error) for o in report.outcomes] == [("failed", None)]


def test_never_leaves_a_routine_that_raised_failed(harness: Harness) -> None:
    flaky = Flaky("flaky")
    events = EventLog()
    monitor = harness.monitor(flaky, restart=RestartPolicy(restart="never"), on_event=events)
    report = harness.ended(monitor)
    assert flaky.starts == 1
    assert report.reason == "all routines ended"
    assert [(o.state, o.error) for o in report.outcomes] == [("failed", flaky.errors[0])]
    assert report.exit_code == 1
    assert events.kinds() == ["started", "failed"]


def test_never_leaves_a_routine_that_returned_finished(harness: Harness) -> None:
    returner = Returner("returner")
    report = harness.ended(harness.monitor(returner, restart=RestartPolicy(restart="never")))
    assert returner.starts == 1
    assert report.outcomes[0].state == "finished"
    assert report.exit_code == 0


def test_never_leaves_the_other_routines_running(harness: Harness) -> None:
    counting = Counting("counting")
    events = EventLog()
    policy = RestartPolicy(restart="never")
    monitor = harness.monitor(Flaky("flaky"), counting, restart=policy, on_event=events)
    events.wait_for("flaky", "failed")
    assert counting.running.wait(WAIT)
    assert monitor.wait(0) is None
    assert [s.state for s in monitor.status()] == ["failed", "running"]


# -- backoff -----------------------------------------------------------------------------------


def test_shutdown_ends_a_backoff_wait_at_once(harness: Harness) -> None:
    flaky = Flaky("flaky")
    events = EventLog()
    monitor = harness.monitor(flaky, restart=SLOW, on_event=events)
    events.wait_for("flaky", "restarting")
    monitor.shutdown("done")
    report = monitor.wait(WAIT)  # far less than the 60 s backoff
    assert report is not None
    assert report.reason == "done"
    (outcome,) = report.outcomes
    assert outcome.state == "failed"
    assert outcome.error is flaky.errors[-1]
    assert flaky.starts == 1


def test_a_backoff_interrupted_by_shutdown_ends_with_a_failed_event(harness: Harness) -> None:
    # The last event of a routine always tells how it ended.
    events = EventLog()
    monitor = harness.monitor(Flaky("flaky"), restart=SLOW, on_event=events)
    events.wait_for("flaky", "restarting")
    harness.finish(monitor)
    assert events.kinds() == ["started", "failed", "restarting", "failed"]


def test_shutdown_before_a_restart_after_a_return_is_stopped(harness: Harness) -> None:
    events = EventLog()
    policy = RestartPolicy(restart="always", backoff=60.0, max_backoff=60.0)
    monitor = harness.monitor(Returner("returner"), restart=policy, on_event=events)
    events.wait_for("returner", "restarting")
    report = harness.finish(monitor)
    assert [(o.state, o.error) for o in report.outcomes] == [("stopped", None)]


# -- max_restarts within `within`, and giving up -----------------------------------------------


def test_max_restarts_three_means_at_most_four_starts(harness: Harness) -> None:
    flaky = Flaky("flaky")
    events = EventLog()
    policy = RestartPolicy(backoff=0, max_backoff=0, max_restarts=3)
    monitor = harness.monitor(flaky, restart=policy, on_event=events)
    report = harness.ended(monitor)
    assert flaky.starts == 4
    assert status_of(monitor, "flaky").restarts == 3
    assert events.kinds() == [
        *(["started", "failed", "restarting"] * 3),
        "started",
        "failed",
        "gave_up",
    ]
    assert [(o.state, o.error) for o in report.outcomes] == [("failed", flaky.errors[-1])]


def test_max_restarts_zero_never_restarts(harness: Harness) -> None:
    flaky = Flaky("flaky")
    events = EventLog()
    policy = RestartPolicy(max_restarts=0)
    report = harness.ended(harness.monitor(flaky, restart=policy, on_event=events))
    assert flaky.starts == 1
    assert events.kinds() == ["started", "failed", "gave_up"]
    assert report.outcomes[0].state == "failed"


def test_restarts_outside_the_window_do_not_count(harness: Harness) -> None:
    # Each backoff (0.03 s) outlasts the window (0.02 s): no restart is ever counted twice.
    flaky = Flaky("flaky", failures=4)
    policy = RestartPolicy(backoff=0.03, max_backoff=0.03, jitter=0.0, max_restarts=1, within=0.02)
    harness.monitor(flaky, restart=policy)
    assert flaky.recovered.wait(WAIT)
    assert flaky.starts == 5


def test_give_up_with_shutdown_names_the_routine_in_the_reason(harness: Harness) -> None:
    counting = Counting("counting")
    policy = RestartPolicy(backoff=0, max_backoff=0, max_restarts=1)
    monitor = harness.monitor(supervised(Flaky("crashy"), policy), counting)
    report = harness.ended(monitor)
    assert "crashy" in report.reason
    assert "gave up" in report.reason
    assert report.exit_code == 1
    assert [(o.name, o.state) for o in report.outcomes] == [
        ("crashy", "failed"),
        ("counting", "stopped"),
    ]


def test_give_up_with_shutdown_names_the_routine_when_it_was_the_only_one(
    harness: Harness,
) -> None:
    policy = RestartPolicy(backoff=0, max_backoff=0, max_restarts=1)
    report = harness.ended(harness.monitor(Flaky("crashy"), restart=policy))
    assert "crashy" in report.reason
    assert "gave up" in report.reason
    assert report.exit_code == 1


def test_give_up_reason_tells_the_last_error(harness: Harness) -> None:
    policy = RestartPolicy(backoff=0, max_backoff=0, max_restarts=0)
    report = harness.ended(harness.monitor(Flaky("crashy"), restart=policy))
    assert "RuntimeError: crashy crashed" in report.reason


def test_give_up_with_continue_leaves_the_others_running(harness: Harness) -> None:
    counting = Counting("counting")
    events = EventLog()
    policy = RestartPolicy(backoff=0, max_backoff=0, max_restarts=1, on_give_up="continue")
    monitor = harness.monitor(Flaky("crashy"), counting, restart=policy, on_event=events)
    events.wait_for("crashy", "gave_up")
    assert counting.running.wait(WAIT)
    assert monitor.wait(0) is None
    crashy = status_of(monitor, "crashy")
    assert (crashy.state, crashy.last_error) == ("failed", "RuntimeError: crashy crashed")
    assert status_of(monitor, "counting").state == "running"
    report = harness.finish(monitor)
    assert report.reason == "test over"
    assert [o.state for o in report.outcomes] == ["failed", "stopped"]
    assert report.exit_code == 1


def test_give_up_with_continue_of_the_last_routine_ends_the_monitor(harness: Harness) -> None:
    policy = RestartPolicy(backoff=0, max_backoff=0, max_restarts=1, on_give_up="continue")
    report = harness.ended(harness.monitor(Flaky("crashy"), restart=policy))
    assert report.reason == "all routines ended"
    assert report.exit_code == 1


# -- per-routine policies ----------------------------------------------------------------------


def test_supervised_policy_overrides_the_monitors(harness: Harness) -> None:
    flaky = Flaky("flaky", failures=2)
    monitor = harness.monitor(supervised(flaky, FAST), restart=RestartPolicy(restart="never"))
    assert flaky.recovered.wait(WAIT)
    assert status_of(monitor, "flaky").restarts == 2


def test_supervised_twice_uses_the_outer_policy(harness: Harness) -> None:
    flaky = Flaky("flaky")
    events = EventLog()
    inner = RestartPolicy(restart="never")
    harness.monitor(supervised(supervised(flaky, inner), FAST), on_event=events)
    events.wait_for("flaky", "started", count=2)


def test_routines_without_their_own_policy_use_the_monitors(harness: Harness) -> None:
    own, plain = Flaky("own", failures=1), Flaky("plain", failures=1)
    events = EventLog()
    monitor = harness.monitor(
        supervised(own, FAST), plain, restart=RestartPolicy(restart="never"), on_event=events
    )
    assert own.recovered.wait(WAIT)
    events.wait_for("plain", "failed")
    assert [(s.name, s.state) for s in monitor.status()] == [
        ("own", "running"),
        ("plain", "failed"),
    ]
    assert plain.starts == 1


def test_supervised_routine_is_reported_under_its_own_name(harness: Harness) -> None:
    monitor = harness.monitor(supervised(routines.NoopRoutine("db"), FAST))
    assert [s.name for s in monitor.status()] == ["db"]
    assert [o.name for o in harness.finish(monitor).outcomes] == ["db"]


# -- restarts reuse the routine, and every routine class is restartable ------------------------


def test_a_restart_reuses_the_same_routine_object(harness: Harness) -> None:
    flaky = Flaky("flaky", failures=2)
    harness.monitor(flaky, restart=FAST)
    assert flaky.recovered.wait(WAIT)
    assert flaky.started_as == [flaky, flaky, flaky]


def test_a_callback_routine_is_restartable(harness: Harness) -> None:
    calls: list[int] = []
    serving = threading.Event()

    def serve() -> None:
        calls.append(len(calls))
        if len(calls) <= 2:
            raise OSError("address in use")
        serving.set()
        routines.sleep(30)

    monitor = harness.monitor(routines.CallbackRoutine(serve, name="serve"), restart=FAST)
    assert serving.wait(WAIT)
    assert status_of(monitor, "serve").restarts == 2
    report = harness.finish(monitor)
    assert [(o.state, o.error) for o in report.outcomes] == [("stopped", None)]


def test_a_callback_routine_calls_its_stop_callback_on_the_restarted_run(harness: Harness) -> None:
    attempts: list[int] = []
    serving, stop_asked = threading.Event(), threading.Event()

    def serve() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("address in use")
        serving.set()
        stop_asked.wait(30)

    routine = routines.CallbackRoutine(serve, stop_asked.set, name="serve")
    monitor = harness.monitor(routine, restart=FAST)
    assert serving.wait(WAIT)
    report = harness.finish(monitor)
    assert stop_asked.is_set()
    assert report.outcomes[0].state == "stopped"


def test_a_noop_routine_stopped_from_outside_is_restarted_and_waits_again(
    harness: Harness,
) -> None:
    noop = routines.NoopRoutine("noop")
    events = EventLog()
    policy = RestartPolicy(restart="always", backoff=0, max_backoff=0, max_restarts=1)
    monitor = harness.monitor(noop, restart=policy, on_event=events)
    events.wait_for("noop", "started")
    noop.stop()  # it returns on its own, as far as the monitor knows
    events.wait_for("noop", "started", count=2)
    report = harness.finish(monitor)
    assert report.outcomes[0].state == "stopped"
    assert events.kinds() == ["started", "finished", "restarting", "started", "stopped"]


def test_a_combined_routine_is_restarted_as_one(harness: Harness) -> None:
    flaky, counting = Flaky("flaky", failures=1), Counting("counting")
    events = EventLog()
    combined = routines.CombinedRoutine(flaky, counting, name="group")
    monitor = harness.monitor(combined, restart=FAST, on_event=events)
    assert flaky.recovered.wait(WAIT)
    events.wait_for("group", "started", count=2)
    assert counting.running.wait(WAIT)
    assert status_of(monitor, "group").restarts == 1
    report = harness.finish(monitor)
    assert counting.starts == 2
    assert [(o.state, o.error) for o in report.outcomes] == [("stopped", None)]


def test_a_periodic_routine_is_restartable(harness: Harness) -> None:
    runs: list[int] = []
    shutdowns: list[int] = []
    ran_again = threading.Event()

    def handler() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise Fatal("handler gave up")
        ran_again.set()

    periodic = routines.PeriodicRoutine(
        handler, interval=60, name="periodic", on_shutdown=lambda: shutdowns.append(1)
    )
    events = EventLog()
    monitor = harness.monitor(periodic, restart=FAST, on_event=events)
    assert ran_again.wait(WAIT)
    events.wait_for("periodic", "started", count=2)
    assert events.kinds() == ["started", "failed", "restarting", "started"]
    assert isinstance(events.events[1].error, Fatal)
    report = harness.finish(monitor)
    assert [(o.state, o.error) for o in report.outcomes] == [("stopped", None)]
    assert len(shutdowns) == 2  # once per start()


def test_a_worker_pool_restarted_after_a_failed_start_keeps_its_queue(harness: Harness) -> None:
    pool_class = getattr(routines, "WorkerPool", None)
    if pool_class is None:
        pytest.skip("WorkerPool has not landed yet")
    poisoned: list[str] = []

    def handler(item: str) -> str:
        if item == "poison" and not poisoned:
            poisoned.append(item)
            raise Fatal("poison pill")
        return item.upper()

    pool = pool_class(handler, workers=1, name="pool")
    pool.submit("poison")
    queued = [pool.submit(item) for item in ("a", "b")]
    events = EventLog()
    monitor = harness.monitor(pool, restart=FAST, on_event=events)
    assert [future.result(WAIT) for future in queued] == ["A", "B"]
    assert events.kinds()[:3] == ["started", "failed", "restarting"]
    assert status_of(monitor, "pool").restarts == 1
    report = harness.finish(monitor)
    assert [(o.state, o.error) for o in report.outcomes] == [("stopped", None)]


# -- a start() that raises after its stop was asked --------------------------------------------


class FailsOnStop(routines.BackgroundRoutine):
    def __init__(self) -> None:
        super().__init__("fails-on-stop")
        self.starts = 0
        self.running = threading.Event()
        self.error = RuntimeError("cleanup failed")

    def run(self) -> None:
        self.starts += 1
        self.running.set()
        self.wait(None)
        raise self.error


def test_a_start_that_raises_after_stop_was_asked_is_stopped_with_its_error(
    harness: Harness,
) -> None:
    routine = FailsOnStop()
    events = EventLog()
    monitor = harness.monitor(routine, restart=FAST, on_event=events)
    assert routine.running.wait(WAIT)
    report = harness.finish(monitor)
    assert [(o.state, o.error) for o in report.outcomes] == [("stopped", routine.error)]
    assert routine.starts == 1
    assert events.kinds() == ["started", "stopped"]


# -- the events and status of a restart --------------------------------------------------------


def test_every_event_is_delivered_before_wait_returns(harness: Harness) -> None:
    slow_delivery = threading.Event()
    events = EventLog(then=lambda event: slow_delivery.wait(0.01))
    policy = RestartPolicy(backoff=0, max_backoff=0, max_restarts=2)
    monitor = harness.monitor(
        Flaky("crashy"), Returner("returner"), restart=policy, on_event=events
    )
    harness.ended(monitor)
    assert events.kinds("crashy") == [
        *(["started", "failed", "restarting"] * 2),
        "started",
        "failed",
        "gave_up",
    ]
    # The other routine may end before its first start, but its last event always comes.
    assert events.kinds("returner")[-1] in ("finished", "stopped")


def test_status_from_on_event_works(harness: Harness) -> None:
    seen: list[list[str]] = []

    def look(event: RoutineEvent) -> None:
        if event.kind == "restarting":
            seen.append([s.state for s in harness.monitors[0].status()])

    events = EventLog(then=look)
    monitor = harness.monitor(Flaky("flaky"), restart=SLOW, on_event=events)
    events.wait_for("flaky", "restarting")
    harness.finish(monitor)
    assert seen == [["restarting"]]


def test_status_during_a_backoff_is_restarting_with_the_count_and_error(harness: Harness) -> None:
    events = EventLog()
    monitor = harness.monitor(Flaky("flaky"), restart=SLOW, on_event=events)
    events.wait_for("flaky", "restarting")
    status = status_of(monitor, "flaky")
    assert (status.state, status.restarts, status.last_error) == (
        "restarting",
        1,
        "RuntimeError: flaky crashed",
    )


def test_status_of_a_recovered_routine_keeps_its_last_error(harness: Harness) -> None:
    flaky = Flaky("flaky", failures=1)
    monitor = harness.monitor(flaky, restart=FAST)
    assert flaky.recovered.wait(WAIT)
    assert status_of(monitor, "flaky").last_error == "RuntimeError: flaky crashed"


# -- logging -----------------------------------------------------------------------------------


def _failure_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    failed = re.compile(r"^routine '[^']*' failed")
    return [
        r for r in caplog.records if r.name.startswith("routines") and failed.match(r.getMessage())
    ]


def _log_until_ended(
    harness: Harness,
    caplog: pytest.LogCaptureFixture,
    routine: routines.Routine,
    policy: RestartPolicy,
) -> list[logging.LogRecord]:
    """Run `routine` under a monitor until it ends by itself; the log records of that."""
    with caplog.at_level(logging.INFO, logger="routines"):
        harness.ended(harness.monitor(routine, restart=policy))
    return caplog.records


def test_a_crash_loop_logs_the_traceback_once_and_repeats_briefly(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    policy = RestartPolicy(backoff=0, max_backoff=0, max_restarts=3)
    _log_until_ended(harness, caplog, Flaky("crashy"), policy)
    records = _failure_records(caplog)
    assert len(records) == 4  # one per failure
    first, *repeats = records
    assert first.levelno == logging.ERROR
    assert first.exc_info is not None
    assert "RuntimeError: crashy crashed" in first.getMessage()
    for record in repeats:
        assert record.exc_info is None
        assert record.levelno < logging.ERROR
        assert "crashy" in record.getMessage()
        assert "RuntimeError: crashy crashed" in record.getMessage()


def test_a_different_failure_is_logged_with_its_traceback(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    class Changing(routines.BackgroundRoutine):
        def __init__(self) -> None:
            super().__init__("changing")
            self.starts = 0

        def run(self) -> None:
            self.starts += 1
            raise (ValueError if self.starts == 2 else KeyError)("oops")

    policy = RestartPolicy(backoff=0, max_backoff=0, max_restarts=2)
    _log_until_ended(harness, caplog, Changing(), policy)
    with_traceback = [r.exc_info is not None for r in _failure_records(caplog)]
    assert with_traceback == [True, True, True]  # KeyError, ValueError, KeyError again


def test_giving_up_is_logged_as_an_error_naming_the_routine(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    policy = RestartPolicy(backoff=0, max_backoff=0, max_restarts=1)
    records = _log_until_ended(harness, caplog, Flaky("crashy"), policy)
    giving_up = [r for r in records if "giving up" in r.getMessage()]
    assert len(giving_up) == 1
    assert giving_up[0].levelno == logging.ERROR
    assert "crashy" in giving_up[0].getMessage()


# -- races between shutdown and a restart ------------------------------------------------------


def test_shutdown_during_a_crash_loop_never_deadlocks() -> None:
    for _ in range(50):
        flaky = Flaky("flaky")
        events = EventLog()
        monitor = Monitor(flaky, signals=(), restart=FAST, on_event=events)
        monitor.start()
        events.wait_for("flaky", "restarting")
        monitor.shutdown()
        report = monitor.wait(WAIT)
        assert report is not None, "the monitor deadlocked"
        assert report.outcomes[0].state in ("failed", "stopped")
