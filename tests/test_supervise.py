"""Supervision on plain numbers: RestartPolicy (defaults, delays, frozen), RestartWindow, what
the Supervisor decides after each run and logs, its restart loop on a FakeClock, and supervised().

The same rules under a running Monitor are tested in test_monitor_restarts.py.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest

import routines
from routines import RestartPolicy, supervised
from routines._flag import Flag
from routines._supervise import Decision, Final, Restart, RestartWindow, Supervisor
from routines.testing import FakeClock

from helpers import FAST, LogWatcher, join

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

    class Hooks:
        def started(self, child: str) -> None:
            pass

        def restarting(self, child: str, restart: Restart, error: BaseException | None) -> None:
            pass

        def ended(self, child: str, final: Final) -> None:
            ended.append(final)

    thread = threading.Thread(target=supervisor.run, args=(Crashes(), lock, stopping, Hooks(), "r"))
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
