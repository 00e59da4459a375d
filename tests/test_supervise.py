"""Supervision: restart policies, backoff, giving up, status and events (spec section 7)."""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

import routines
from routines import Monitor, RestartPolicy, RoutineEvent, supervised
from routines._flag import Flag
from routines._supervise import Decision, Final, Restart, RestartWindow, Supervisor
from routines.testing import FakeClock

from helpers import EventLog, LogWatcher, join

WAIT = 5.0  # the bound on every wait for something that should happen soon

# Restarts at once, never gives up in a test's lifetime unless told.
FAST = RestartPolicy(backoff=0.001, max_backoff=0.001, jitter=0.0, max_restarts=100)
SLOW = RestartPolicy(backoff=60.0, max_backoff=60.0, jitter=0.0)


# -- routines and tools ------------------------------------------------------------------------


class Flaky(routines.BackgroundRoutine):
    """Raises on its first `failures` starts (every start by default), then runs until stopped."""

    def __init__(self, name: str | None = None, *, failures: float = math.inf) -> None:
        super().__init__(name)
        self.failures = failures
        self.starts = 0
        self.start_times: list[float] = []
        self.started_as: list[object] = []
        self.errors: list[BaseException] = []
        self.recovered = threading.Event()

    def run(self) -> None:
        self.starts += 1
        self.start_times.append(time.monotonic())
        self.started_as.append(self)
        if self.starts <= self.failures:
            error = RuntimeError(f"{self.name} crashed")
            self.errors.append(error)
            raise error
        self.recovered.set()
        self.wait(None)


class Returner(routines.BackgroundRoutine):
    """Returns on its own on its first `returns` starts, then runs until stopped."""

    def __init__(self, name: str | None = None, *, returns: float = math.inf) -> None:
        super().__init__(name)
        self.returns = returns
        self.starts = 0
        self.waiting = threading.Event()

    def run(self) -> None:
        self.starts += 1
        if self.starts <= self.returns:
            return
        self.waiting.set()
        self.wait(None)


class Counting(routines.BackgroundRoutine):
    """Runs until stopped; counts its starts and signals each one."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name)
        self.starts = 0
        self.running = threading.Event()

    def run(self) -> None:
        self.starts += 1
        self.running.set()
        self.wait(None)


class Blocked:
    """A routine whose start() blocks until `release` is set, whatever stop() says."""

    def __init__(self, name: str = "blocked") -> None:
        self.name = name
        self.entered = threading.Event()
        self.release = threading.Event()
        self.stop_called = threading.Event()

    def start(self) -> None:
        self.entered.set()
        self.release.wait(30)

    def stop(self) -> None:
        self.stop_called.set()


class Harness:
    """Makes started monitors and, at teardown, releases blocked routines and shuts all down."""

    def __init__(self) -> None:
        self.monitors: list[Monitor] = []
        self.blocked: list[Blocked] = []

    def monitor(self, *given: routines.Routine, **options: Any) -> Monitor:
        options.setdefault("signals", ())
        monitor = Monitor(*given, **options)
        self.monitors.append(monitor)
        monitor.start()
        return monitor

    def blocker(self, name: str = "blocked") -> Blocked:
        blocked = Blocked(name)
        self.blocked.append(blocked)
        return blocked

    def close(self) -> None:
        for blocked in self.blocked:
            blocked.release.set()
        for monitor in self.monitors:
            monitor.shutdown("test over")
            assert monitor.wait(WAIT) is not None, "the monitor did not shut down"


@pytest.fixture
def harness() -> Iterator[Harness]:
    made = Harness()
    try:
        yield made
    finally:
        made.close()


def finish(monitor: Monitor) -> routines.ShutdownReport:
    """Shut the monitor down and return its report."""
    monitor.shutdown("test over")
    report = monitor.wait(WAIT)
    assert report is not None, "the monitor did not shut down"
    return report


def ended(monitor: Monitor) -> routines.ShutdownReport:
    """The report of a monitor that ends by itself."""
    report = monitor.wait(WAIT)
    assert report is not None, "the monitor did not end by itself"
    return report


def status_of(monitor: Monitor, name: str) -> routines.RoutineStatus:
    (status,) = (s for s in monitor.status() if s.name == name)
    return status


# -- RestartPolicy: defaults, delay, checks ----------------------------------------------------


def test_policy_defaults_match_the_contract() -> None:
    policy = RestartPolicy()
    assert policy.restart == "on-failure"
    assert policy.backoff_seconds == 1.0
    assert policy.max_backoff_seconds == 60.0
    assert policy.jitter == 0.1
    assert policy.max_restarts == 5
    assert policy.within_seconds == 60.0
    assert policy.on_give_up == "shutdown"


def test_delay_doubles_from_backoff_up_to_max_backoff() -> None:
    policy = RestartPolicy(backoff=1.0, max_backoff=10.0, jitter=0.0)
    delays = [policy.delay(n) for n in range(1, 7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_delay_of_a_huge_restart_number_is_max_backoff() -> None:
    policy = RestartPolicy(backoff=0.5, max_backoff=60.0, jitter=0.0)
    assert policy.delay(10_000) == 60.0


def test_delay_with_zero_backoff_is_zero() -> None:
    policy = RestartPolicy(backoff=0, max_backoff=0)
    assert policy.delay(1) == 0.0
    assert policy.delay(50) == 0.0


@pytest.mark.parametrize(
    ("uniform", "low", "high"),
    [(0.0, 3.0, 3.0), (0.5, 4.0, 4.0), (0.999999, 4.99, 5.0)],
)
def test_delay_jitter_varies_the_delay_by_plus_or_minus_the_fraction(
    uniform: float, low: float, high: float
) -> None:
    policy = RestartPolicy(backoff=4.0, max_backoff=4.0, jitter=0.25)
    assert low <= policy.delay(1, uniform=lambda: uniform) <= high


def test_delay_jitter_applies_to_the_capped_delay() -> None:
    policy = RestartPolicy(backoff=1.0, max_backoff=2.0, jitter=0.5)
    assert policy.delay(5, uniform=lambda: 0.0) == 1.0  # 2 * (1 - 0.5)


def test_delay_with_real_randomness_stays_within_the_jitter_bounds() -> None:
    policy = RestartPolicy(backoff=1.0, max_backoff=1.0, jitter=0.1)
    for _ in range(200):
        assert 0.9 <= policy.delay(1) < 1.1


def test_policy_accepts_timedelta_durations() -> None:
    policy = RestartPolicy(
        backoff=timedelta(milliseconds=10),
        max_backoff=timedelta(seconds=2),
        within=timedelta(minutes=1),
        jitter=0,
    )
    assert policy.backoff_seconds == pytest.approx(0.01)
    assert policy.max_backoff_seconds == 2.0
    assert policy.within_seconds == 60.0
    assert policy.delay(2) == pytest.approx(0.02)


def test_policy_allows_zero_where_the_contract_does() -> None:
    policy = RestartPolicy(backoff=0, max_backoff=0, jitter=0, max_restarts=0)
    assert policy.max_restarts == 0
    assert policy.max_backoff_seconds == 0.0


def test_policy_is_frozen() -> None:
    policy = RestartPolicy()
    with pytest.raises(AttributeError):
        policy.restart = "always"  # type: ignore[misc]


# -- RestartWindow: max_restarts within `within` ------------------------------------------------


def test_window_allows_max_restarts_then_gives_up() -> None:
    window = RestartWindow(RestartPolicy(max_restarts=3, within=10))
    assert [window.next_restart(t) for t in (0.0, 1.0, 2.0)] == [1, 2, 3]
    assert window.next_restart(3.0) is None


def test_window_with_max_restarts_zero_never_restarts() -> None:
    window = RestartWindow(RestartPolicy(max_restarts=0))
    assert window.next_restart(0.0) is None


def test_window_forgets_restarts_older_than_within() -> None:
    window = RestartWindow(RestartPolicy(max_restarts=3, within=10))
    for t in (0.0, 1.0, 2.0):
        window.next_restart(t)
    assert window.next_restart(9.9) is None
    assert window.next_restart(10.0) == 3  # the restart at 0 is out of the window
    assert window.next_restart(10.5) is None
    assert window.next_restart(11.0) == 3  # the one at 1 is out now


def test_window_counts_from_one_again_after_a_quiet_period() -> None:
    # The restart number picks the backoff, so a routine that stayed up resets its backoff.
    window = RestartWindow(RestartPolicy(max_restarts=3, within=10))
    assert [window.next_restart(t) for t in (0.0, 1.0)] == [1, 2]
    assert window.next_restart(100.0) == 1


def test_window_does_not_count_a_refused_restart() -> None:
    window = RestartWindow(RestartPolicy(max_restarts=1, within=10))
    assert window.next_restart(0.0) == 1
    assert window.next_restart(5.0) is None
    assert window.next_restart(10.0) == 1


# -- Supervisor: the decision after each run, on the time it is given ---------------------------


def decide(
    supervisor: Supervisor, error: BaseException | None, now: float, *, stop_asked: bool = False
) -> Decision:
    return supervisor.after_run(error, stop_asked=stop_asked, now=now)


def test_a_run_that_raised_under_on_failure_restarts_after_the_backoff() -> None:
    supervisor = Supervisor("r", RestartPolicy(backoff=2, jitter=0), uniform=lambda: 0.5)
    error = RuntimeError("boom")
    decision = decide(supervisor, error, now=0.0)
    assert decision == Restart(delay=2.0, number=1, events=("failed", "restarting"))
    assert (supervisor.restarts, supervisor.last_error) == (1, error)


def test_the_default_policy_waits_about_one_second_before_the_first_restart() -> None:
    for uniform in (0.0, 0.5, 0.999):
        supervisor = Supervisor("r", RestartPolicy(), uniform=lambda u=uniform: u)
        decision = decide(supervisor, RuntimeError(), now=0.0)
        assert isinstance(decision, Restart)
        assert 0.9 <= decision.delay <= 1.1


def test_the_backoff_doubles_with_each_restart_up_to_max_backoff() -> None:
    policy = RestartPolicy(backoff=0.02, max_backoff=0.05, jitter=0.0, max_restarts=10)
    supervisor = Supervisor("r", policy)
    delays = []
    for now in range(4):
        decision = decide(supervisor, RuntimeError(), now=float(now))
        assert isinstance(decision, Restart)
        delays.append(decision.delay)
    assert delays == [0.02, 0.04, 0.05, 0.05]


def test_jitter_shortens_or_lengthens_the_backoff_by_its_fraction() -> None:
    policy = RestartPolicy(backoff=0.05, max_backoff=0.05, jitter=0.5)
    shortest = decide(Supervisor("r", policy, uniform=lambda: 0.0), RuntimeError(), now=0.0)
    longest = decide(Supervisor("r", policy, uniform=lambda: 0.999), RuntimeError(), now=0.0)
    assert isinstance(shortest, Restart)
    assert isinstance(longest, Restart)
    assert shortest.delay == pytest.approx(0.025)
    assert longest.delay == pytest.approx(0.075, rel=0.01)


def test_a_run_that_returned_under_on_failure_is_finished() -> None:
    decision = decide(Supervisor("r", RestartPolicy()), None, now=0.0)
    assert decision == Final("finished", None, ("finished",))


def test_a_run_that_returned_under_always_restarts() -> None:
    policy = RestartPolicy(restart="always", backoff=0, max_backoff=0)
    decision = decide(Supervisor("r", policy), None, now=0.0)
    assert decision == Restart(delay=0.0, number=1, events=("finished", "restarting"))


def test_a_run_that_raised_under_never_is_failed_for_good() -> None:
    error = RuntimeError("boom")
    decision = decide(Supervisor("r", RestartPolicy(restart="never")), error, now=0.0)
    assert decision == Final("failed", error, ("failed",))


@pytest.mark.parametrize("error", [None, RuntimeError("after stop")])
def test_a_run_that_ended_after_a_stop_was_asked_is_stopped_with_its_error(
    error: BaseException | None,
) -> None:
    decision = decide(Supervisor("r", RestartPolicy()), error, now=0.0, stop_asked=True)
    assert decision == Final("stopped", error, ("stopped",))


def test_giving_up_with_shutdown_names_the_routine_and_its_last_error() -> None:
    policy = RestartPolicy(backoff=0, max_backoff=0, max_restarts=1, within=60)
    supervisor = Supervisor("crashy", policy)
    assert isinstance(decide(supervisor, RuntimeError("first"), now=0.0), Restart)
    error = RuntimeError("second")
    decision = decide(supervisor, error, now=1.0)
    assert isinstance(decision, Final)
    assert (decision.state, decision.error, decision.events) == (
        "failed",
        error,
        ("failed", "gave_up"),
    )
    assert decision.shutdown_reason == (
        "routine 'crashy' gave up after 1 restarts within 60s, last error: RuntimeError: second"
    )


def test_giving_up_with_continue_asks_no_shutdown() -> None:
    policy = RestartPolicy(max_restarts=0, on_give_up="continue")
    decision = decide(Supervisor("r", policy), RuntimeError(), now=0.0)
    assert isinstance(decision, Final)
    assert (decision.state, decision.shutdown_reason) == ("failed", None)


def test_restarts_older_than_the_window_no_longer_count() -> None:
    policy = RestartPolicy(backoff=0, max_backoff=0, max_restarts=1, within=10)
    supervisor = Supervisor("r", policy)
    assert isinstance(decide(supervisor, RuntimeError(), now=0.0), Restart)
    assert isinstance(decide(supervisor, RuntimeError(), now=10.0), Restart)
    assert isinstance(decide(supervisor, RuntimeError(), now=11.0), Final)


def test_shutdown_while_waiting_ends_stopped_or_failed_with_the_last_error() -> None:
    supervisor = Supervisor("r", RestartPolicy())
    assert supervisor.interrupted() == Final("stopped", None, ("stopped",))
    error = RuntimeError("boom")
    decide(supervisor, error, now=0.0)
    assert supervisor.interrupted() == Final("failed", error, ("failed",))


def test_a_repeated_failure_is_logged_in_full_once_then_briefly_until_a_quiet_window() -> None:
    supervisor = Supervisor("crashy", RestartPolicy(backoff=0, max_restarts=100, within=10))
    with LogWatcher() as logs:
        for now in (0.0, 1.0, 2.0, 20.0):  # 20 s: after a quiet spell longer than the window
            decide(supervisor, RuntimeError("same"), now=now)
    failures = [
        r for r in logs.records if "crashy" in r.getMessage() and "failed" in r.getMessage()
    ]
    assert [(r.levelno, r.exc_info is not None) for r in failures] == [
        (logging.ERROR, True),
        (logging.WARNING, False),
        (logging.WARNING, False),
        (logging.ERROR, True),
    ]


def test_the_restart_loop_waits_each_backoff_on_its_clock_and_ends_at_once_when_stopping() -> None:
    clock = FakeClock()
    policy = RestartPolicy(backoff=10, max_backoff=10, jitter=0, max_restarts=5)
    supervisor = Supervisor("r", policy, clock=clock)
    starts: list[float] = []
    ended: list[Final] = []
    lock = threading.Condition()
    stopping = Flag()

    class Crashes:
        def start(self) -> None:
            starts.append(clock.now())
            raise RuntimeError("boom")

        def stop(self) -> None:
            pass

    thread = threading.Thread(
        target=supervisor.run,
        args=(Crashes(), lock, stopping),
        kwargs={"started": lambda: None, "restarting": lambda d, e: None, "ended": ended.append},
    )
    with LogWatcher():
        thread.start()
        clock.wait_for_sleepers(1)  # in its first backoff
        clock.advance(9.999)
        assert starts == [0.0]
        clock.advance(0.001)
        clock.wait_for_sleepers(1)
        assert starts == [0.0, 10.0]
        stopping.set()  # shutdown: the backoff ends at once, and no start follows
        join(thread)
    assert starts == [0.0, 10.0]
    assert [final.state for final in ended] == ["failed"]


# -- supervised() ------------------------------------------------------------------------------


def test_supervised_keeps_the_routine_name() -> None:
    assert getattr(supervised(routines.NoopRoutine("db"), FAST), "name", None) == "db"


def test_supervised_twice_uses_the_outer_policy(harness: Harness) -> None:
    flaky = Flaky("flaky")
    events = EventLog()
    inner = RestartPolicy(restart="never")
    harness.monitor(supervised(supervised(flaky, inner), FAST), on_event=events)
    events.wait_for("flaky", "started", count=2)


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
    report = ended(monitor)
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
    report = finish(monitor)
    assert [(o.state, o.error) for o in report.outcomes] == [("stopped", None)]


def test_on_failure_leaves_a_returned_routine_finished_while_others_run(harness: Harness) -> None:
    returner, counting = Returner("returner"), Counting("counting")
    events = EventLog()
    monitor = harness.monitor(returner, counting, restart=FAST, on_event=events)
    events.wait_for("returner", "finished")
    assert status_of(monitor, "returner").state == "finished"
    assert monitor.wait(0) is None  # the other routine keeps the monitor running
    report = finish(monitor)
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
    report = finish(monitor)
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
    report = ended(harness.monitor(returner, restart=policy))
    assert returner.starts == 3
    assert [(o.state, o.error) for o in report.outcomes] == [("failed", None)]


def test_never_leaves_a_routine_that_raised_failed(harness: Harness) -> None:
    flaky = Flaky("flaky")
    events = EventLog()
    monitor = harness.monitor(flaky, restart=RestartPolicy(restart="never"), on_event=events)
    report = ended(monitor)
    assert flaky.starts == 1
    assert report.reason == "all routines ended"
    assert [(o.state, o.error) for o in report.outcomes] == [("failed", flaky.errors[0])]
    assert report.exit_code == 1
    assert events.kinds() == ["started", "failed"]


def test_never_leaves_a_routine_that_returned_finished(harness: Harness) -> None:
    returner = Returner("returner")
    report = ended(harness.monitor(returner, restart=RestartPolicy(restart="never")))
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
    finish(monitor)
    assert events.kinds() == ["started", "failed", "restarting", "failed"]


def test_shutdown_before_a_restart_after_a_return_is_stopped(harness: Harness) -> None:
    events = EventLog()
    policy = RestartPolicy(restart="always", backoff=60.0, max_backoff=60.0)
    monitor = harness.monitor(Returner("returner"), restart=policy, on_event=events)
    events.wait_for("returner", "restarting")
    report = finish(monitor)
    assert [(o.state, o.error) for o in report.outcomes] == [("stopped", None)]


# -- max_restarts within `within`, and giving up ------------------------------------------------


def test_max_restarts_three_means_at_most_four_starts(harness: Harness) -> None:
    flaky = Flaky("flaky")
    events = EventLog()
    policy = RestartPolicy(backoff=0, max_backoff=0, max_restarts=3)
    monitor = harness.monitor(flaky, restart=policy, on_event=events)
    report = ended(monitor)
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
    report = ended(harness.monitor(flaky, restart=policy, on_event=events))
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
    report = ended(monitor)
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
    report = ended(harness.monitor(Flaky("crashy"), restart=policy))
    assert "crashy" in report.reason
    assert "gave up" in report.reason
    assert report.exit_code == 1


def test_give_up_reason_tells_the_last_error(harness: Harness) -> None:
    policy = RestartPolicy(backoff=0, max_backoff=0, max_restarts=0)
    report = ended(harness.monitor(Flaky("crashy"), restart=policy))
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
    report = finish(monitor)
    assert report.reason == "test over"
    assert [o.state for o in report.outcomes] == ["failed", "stopped"]
    assert report.exit_code == 1


def test_give_up_with_continue_of_the_last_routine_ends_the_monitor(harness: Harness) -> None:
    policy = RestartPolicy(backoff=0, max_backoff=0, max_restarts=1, on_give_up="continue")
    report = ended(harness.monitor(Flaky("crashy"), restart=policy))
    assert report.reason == "all routines ended"
    assert report.exit_code == 1


# -- per-routine policies ----------------------------------------------------------------------


def test_supervised_policy_overrides_the_monitors(harness: Harness) -> None:
    flaky = Flaky("flaky", failures=2)
    monitor = harness.monitor(supervised(flaky, FAST), restart=RestartPolicy(restart="never"))
    assert flaky.recovered.wait(WAIT)
    assert status_of(monitor, "flaky").restarts == 2


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
    assert [o.name for o in finish(monitor).outcomes] == ["db"]


# -- restarts reuse the routine, and every routine class is restartable -------------------------


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
    report = finish(monitor)
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
    report = finish(monitor)
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
    report = finish(monitor)
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
    report = finish(monitor)
    assert counting.starts == 2
    assert [(o.state, o.error) for o in report.outcomes] == [("stopped", None)]


# -- a start() that raises after its stop was asked ---------------------------------------------


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
    report = finish(monitor)
    assert [(o.state, o.error) for o in report.outcomes] == [("stopped", routine.error)]
    assert routine.starts == 1
    assert events.kinds() == ["started", "stopped"]


# -- events ------------------------------------------------------------------------------------


def test_events_carry_the_routine_name_wall_clock_time_and_error(harness: Harness) -> None:
    flaky = Flaky("flaky")
    events = EventLog()
    before = time.time()
    harness.monitor(flaky, restart=RestartPolicy(restart="never"), on_event=events)
    events.wait_for("flaky", "failed")
    started, failed = events.events
    assert (started.routine, started.error) == ("flaky", None)
    assert (failed.routine, failed.error) == ("flaky", flaky.errors[0])
    assert before <= started.time <= failed.time <= time.time()


def test_every_event_is_delivered_before_wait_returns(harness: Harness) -> None:
    slow_delivery = threading.Event()
    events = EventLog(then=lambda event: slow_delivery.wait(0.01))
    policy = RestartPolicy(backoff=0, max_backoff=0, max_restarts=2)
    monitor = harness.monitor(
        Flaky("crashy"), Returner("returner"), restart=policy, on_event=events
    )
    ended(monitor)
    assert events.kinds("crashy") == [
        *(["started", "failed", "restarting"] * 2),
        "started",
        "failed",
        "gave_up",
    ]
    # The other routine may end before its first start, but its last event always comes.
    assert events.kinds("returner")[-1] in ("finished", "stopped")


def test_a_stop_timed_out_event_is_delivered_before_wait_returns(harness: Harness) -> None:
    blocked = harness.blocker()
    events = EventLog()
    monitor = harness.monitor(blocked, stop_timeout=0.05, on_event=events)
    assert blocked.entered.wait(WAIT)
    report = finish(monitor)
    assert report.outcomes[0].state == "timed_out"
    assert events.kinds() == ["started", "stop_timed_out"]


def test_an_on_event_that_raises_is_logged_and_delivery_goes_on(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(event: RoutineEvent) -> None:
        raise ValueError(f"bad handler for {event.kind}")

    events = EventLog(then=explode)
    with caplog.at_level(logging.ERROR, logger="routines"):
        monitor = harness.monitor(Returner("returner"), on_event=events)
        ended(monitor)
    assert events.kinds() == ["started", "finished"]
    raised = [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], ValueError)]
    assert [str(r.exc_info[1]) for r in raised if r.exc_info] == [
        "bad handler for started",
        "bad handler for finished",
    ]
    assert all("on_event" in r.getMessage() for r in raised)


def test_shutdown_from_on_event_works(harness: Harness) -> None:
    # The harness holds the monitor before starting it: on_event may need it at once.
    def stop_on_start(event: RoutineEvent) -> None:
        if event.kind == "started":
            harness.monitors[0].shutdown("asked by on_event")

    events = EventLog(then=stop_on_start)
    monitor = harness.monitor(Counting("counting"), on_event=events)
    report = monitor.wait(WAIT)
    assert report is not None
    assert report.reason == "asked by on_event"
    assert events.kinds() == ["started", "stopped"]


def test_status_from_on_event_works(harness: Harness) -> None:
    seen: list[list[str]] = []

    def look(event: RoutineEvent) -> None:
        if event.kind == "restarting":
            seen.append([s.state for s in harness.monitors[0].status()])

    events = EventLog(then=look)
    monitor = harness.monitor(Flaky("flaky"), restart=SLOW, on_event=events)
    events.wait_for("flaky", "restarting")
    finish(monitor)
    assert seen == [["restarting"]]


# -- status ------------------------------------------------------------------------------------


def test_status_before_start_is_idle() -> None:
    monitor = Monitor(routines.NoopRoutine("a"), routines.NoopRoutine("b"), signals=())
    statuses = monitor.status()
    assert [(s.name, s.state, s.restarts, s.last_error) for s in statuses] == [
        ("a", "idle", 0, None),
        ("b", "idle", 0, None),
    ]


def test_status_does_not_block_while_a_start_is_blocked(harness: Harness) -> None:
    blocked = harness.blocker()
    monitor = harness.monitor(blocked)
    assert blocked.entered.wait(WAIT)
    assert [(s.name, s.state) for s in monitor.status()] == [("blocked", "running")]


def test_status_works_from_another_thread(harness: Harness) -> None:
    blocked = harness.blocker()
    monitor = harness.monitor(blocked, Flaky("flaky"), restart=SLOW)
    assert blocked.entered.wait(WAIT)
    seen: list[list[routines.RoutineStatus]] = []
    reader = threading.Thread(target=lambda: seen.append(monitor.status()), name="status-reader")
    reader.start()
    reader.join(WAIT)
    assert not reader.is_alive()
    assert [s.name for s in seen[0]] == ["blocked", "flaky"]
    assert seen[0][0].state == "running"


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


def test_status_while_a_routine_ignores_stop_is_stopping(harness: Harness) -> None:
    blocked = harness.blocker()
    monitor = harness.monitor(blocked, stop_timeout=WAIT)
    assert blocked.entered.wait(WAIT)
    monitor.shutdown()
    assert blocked.stop_called.wait(WAIT)  # the monitor marks it "stopping" before it calls stop()
    assert status_of(monitor, "blocked").state == "stopping"
    blocked.release.set()
    report = monitor.wait(WAIT)
    assert report is not None
    assert status_of(monitor, "blocked").state == "stopped"


def test_status_of_a_recovered_routine_keeps_its_last_error(harness: Harness) -> None:
    flaky = Flaky("flaky", failures=1)
    monitor = harness.monitor(flaky, restart=FAST)
    assert flaky.recovered.wait(WAIT)
    assert status_of(monitor, "flaky").last_error == "RuntimeError: flaky crashed"


# -- logging -----------------------------------------------------------------------------------


def _failure_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    failed = re.compile(r"^routine '[^']*' failed")
    return [r for r in caplog.records if r.name == "routines" and failed.match(r.getMessage())]


def _log_until_ended(
    harness: Harness,
    caplog: pytest.LogCaptureFixture,
    routine: routines.Routine,
    policy: RestartPolicy,
) -> list[logging.LogRecord]:
    """Run `routine` under a monitor until it ends by itself; the log records of that."""
    with caplog.at_level(logging.INFO, logger="routines"):
        ended(harness.monitor(routine, restart=policy))
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


# -- races between shutdown and a (re)start ----------------------------------------------------


def test_shutdown_right_after_start_never_deadlocks() -> None:
    # Shutdown can land between the wait before a start and the check under the monitor's lock.
    for _ in range(200):
        monitor = Monitor(routines.NoopRoutine(), signals=())
        monitor.start()
        monitor.shutdown()
        report = monitor.wait(WAIT)
        assert report is not None, "the monitor deadlocked"
        assert report.outcomes[0].state == "stopped"


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


class Fatal(BaseException):
    """Not an `Exception`: it ends a periodic routine instead of being reported and skipped."""


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
    report = finish(monitor)
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
    report = finish(monitor)
    assert [(o.state, o.error) for o in report.outcomes] == [("stopped", None)]
