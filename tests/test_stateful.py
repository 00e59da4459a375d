"""A stateful property test: random sequences of crash, finish, stop, hang, shutdown and signal
across several routines, each checked against a model of what the Monitor must do.

Hypothesis draws a scenario: how many routines, the restart policy of each, whether the Monitor
runs with `run()` (real signals) or `start()`/`wait()`, and a list of steps. A model replays the
steps first, dropping those that can't apply any more (nothing happens to a routine after it
ended, or after shutdown began), and says what each routine's outcome, the reason, the signal and
`forced` must be. Then the steps run for real, from a helper thread, while the main thread is in
`Monitor.run()`: real signals are sent only while `run()` is active, and each step waits for the
event that shows the Monitor has seen it before the next one. Checked after every step: every
routine's status; after the sequence: the report, that shutdown stayed within its bound, and that
the only routine threads still alive are those deliberately hung (released afterwards).

Hypothesis runs derandomized, without a database, so CI sees the same examples every time;
`--soak` runs many more of them.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import routines

from helpers import WAIT, EventLog, in_background

EXAMPLES = 20
SOAK_EXAMPLES = 400
MARGIN = 2.0
SHORT_STOP = 0.2  # the stop timeout when something hangs and nobody forces the end
LONG_STOP = 30.0
SHUTDOWN_REASON = "the test asked"  # when a second signal is to force it: the force must come first

Kind = Literal["crash", "finish", "stop", "hang", "shutdown", "signal"]
Mode = Literal["run", "start"]
RestartMode = Literal["never", "on-failure", "always"]
State = Literal["running", "hung", "finished", "failed"]


class Crash(Exception):
    pass


class Puppet:
    """A routine the test drives: it runs until told to crash, finish or hang, or stopped."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.release = threading.Event()  # ends a hang
        self.hanging = threading.Event()  # set once start() ignores stop
        self.stop_asked = threading.Event()  # set by every stop()
        self._cond = threading.Condition()
        self._command: Kind | None = None
        self._stop_asked = False

    def start(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._stop_asked or self._command is not None, 60)
            command, self._command = self._command, None
            self._stop_asked = False  # used up by this run, as the protocol says
        if command == "hang":
            self.hanging.set()
            self.release.wait(60)
        elif command == "crash":
            raise Crash(self.name)

    def stop(self) -> None:
        self.stop_asked.set()
        with self._cond:
            self._stop_asked = True
            self._cond.notify_all()

    def tell(self, command: Kind) -> None:
        with self._cond:
            self._command = command
            self._cond.notify_all()


@dataclass(frozen=True)
class Step:
    kind: Kind
    target: int = 0  # the routine, for crash/finish/stop/hang
    signum: int = signal.SIGTERM  # for signal


@dataclass
class Model:
    """What the Monitor must have done after the steps so far."""

    restart: list[RestartMode]
    states: list[State] = field(init=False)
    reason: str | None = None
    signum: int | None = None
    forced: bool = False
    starts: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.states = ["running"] * len(self.restart)
        self.starts = [1] * len(self.restart)

    def applies(self, step: Step, mode: Mode) -> bool:
        if step.kind == "signal":
            if mode != "run":
                return False
            # A second signal is only safe, and only certain to force, while a hung routine
            # keeps run() waiting.
            return self.reason is None or ("hung" in self.states and not self.forced)
        if self.reason is not None:
            return False
        if step.kind == "shutdown":
            return True
        return self.states[step.target] == "running"

    def apply(self, step: Step) -> None:
        if step.kind == "shutdown":
            self.begin(SHUTDOWN_REASON)
        elif step.kind == "signal":
            if self.reason is None:
                self.begin(f"received {signal.Signals(step.signum).name}", step.signum)
            else:
                self.forced = True
        elif step.kind == "hang":
            self.states[step.target] = "hung"
        else:
            restart = self.restart[step.target]
            raised = step.kind == "crash"
            if restart == "always" or (raised and restart == "on-failure"):
                self.starts[step.target] += 1
            else:
                self.states[step.target] = "failed" if raised else "finished"
                if all(state in ("finished", "failed") for state in self.states):
                    self.begin("all routines ended")

    def begin(self, reason: str, signum: int | None = None) -> None:
        self.reason, self.signum = reason, signum

    def outcome(self, index: int) -> str:
        state = self.states[index]
        if state == "running":
            return "stopped"
        if state == "hung":
            return "abandoned" if self.forced else "timed_out"
        return state


@dataclass(frozen=True)
class Scenario:
    mode: Mode
    restart: tuple[RestartMode, ...]
    steps: tuple[Step, ...]


SIGNUMS = st.sampled_from([signal.SIGTERM, signal.SIGINT])


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """Routine faults first, then how shutdown comes, then maybe a second signal to force it.

    The model drops what no longer applies, so any order is valid; this shape just makes the
    interesting cases (a hang, then a forcing signal) common rather than rare.
    """
    count = draw(st.integers(min_value=1, max_value=4))
    modes = st.sampled_from(["never", "on-failure", "always"])
    restart = tuple(draw(st.lists(modes, min_size=count, max_size=count)))
    action = st.builds(
        Step,
        kind=st.sampled_from(["crash", "finish", "stop", "hang"]),
        target=st.integers(min_value=0, max_value=count - 1),
    )
    steps = draw(st.lists(action, max_size=10))
    ending = draw(st.sampled_from(["shutdown", "signal", "none"]))
    if ending == "shutdown":
        steps.append(Step("shutdown"))
    elif ending == "signal":
        steps.append(Step("signal", signum=draw(SIGNUMS)))
    if draw(st.booleans()):
        steps.append(Step("signal", signum=draw(SIGNUMS)))
    steps.extend(draw(st.lists(action, max_size=2)))  # too late: the model drops them
    mode: Mode = draw(st.sampled_from(["run", "start"]))
    return Scenario(mode, restart, tuple(steps))


def plan(scenario: Scenario) -> tuple[list[Step], Model]:
    """The steps that apply, in order, and the model after them (and after a final shutdown)."""
    model = Model(list(scenario.restart))
    steps = []
    for step in scenario.steps:
        if model.applies(step, scenario.mode):
            model.apply(step)
            steps.append(step)
    if model.reason is None:
        final = Step("shutdown")
        model.apply(final)
        steps.append(final)
    return steps, model


def policy(restart: RestartMode) -> routines.RestartPolicy:
    return routines.RestartPolicy(
        restart=restart,
        backoff=0,
        max_backoff=0,
        jitter=0,
        max_restarts=1000,
        on_give_up="continue",
    )


class Driver:
    """Runs the planned steps against the real Monitor, checking the status after each."""

    def __init__(self, scenario: Scenario, steps: list[Step], forced: bool) -> None:
        self.steps = steps
        self.puppets = [Puppet(f"p{n}") for n in range(len(scenario.restart))]
        self.events = EventLog()
        self.model = Model(list(scenario.restart))
        self.shutdown_began = 0.0
        self.stop_timeout = LONG_STOP if forced else SHORT_STOP
        self.monitor = routines.Monitor(
            *(
                routines.supervised(p, policy(r))
                for p, r in zip(self.puppets, scenario.restart, strict=True)
            ),
            stop_timeout=self.stop_timeout,
            signals=(signal.SIGINT, signal.SIGTERM) if scenario.mode == "run" else (),
            on_event=self.events,
        )

    def drive(self) -> None:
        for puppet in self.puppets:
            self.events.wait_for(puppet.name, "started")
        for step in self.steps:
            self.take(step)
            self.model.apply(step)
            if self.model.reason is None:
                self.check_status()

    def take(self, step: Step) -> None:
        if step.kind in ("shutdown", "signal") and self.model.reason is None:
            self.shutdown_began = time.monotonic()
        if step.kind == "shutdown":
            self.monitor.shutdown(SHUTDOWN_REASON)
            return
        if step.kind == "signal":
            if self.model.reason is not None:
                # The forcing signal: once the shutdown is under way (so the two can't merge
                # into one) and every routine that will stop has stopped (so none is abandoned).
                for index, puppet in enumerate(self.puppets):
                    if self.model.states[index] == "running":
                        self.events.wait_for(puppet.name, "stopped")
                    elif self.model.states[index] == "hung":
                        assert puppet.stop_asked.wait(WAIT)
            os.kill(os.getpid(), step.signum)
            return
        puppet = self.puppets[step.target]
        if step.kind == "stop":
            puppet.stop()  # someone other than the Monitor stops it: it returns by itself
        else:
            puppet.tell(step.kind)
        if step.kind == "hang":
            assert puppet.hanging.wait(WAIT)
            return
        restarted = self.model.starts[step.target] + 1
        probe = Model(list(self.model.restart))
        probe.states, probe.starts = list(self.model.states), list(self.model.starts)
        probe.apply(step)
        if probe.starts[step.target] == restarted:
            self.events.wait_for(puppet.name, "started", restarted)
        else:
            kind = "failed" if step.kind == "crash" else "finished"
            self.events.wait_for(puppet.name, kind)

    def check_status(self) -> None:
        expected = {
            "running": "running",
            "hung": "running",
            "finished": "finished",
            "failed": "failed",
        }
        states = [status.state for status in self.monitor.status()]
        assert states == [expected[s] for s in self.model.states], (states, self.model.states)


def check_report(driver: Driver, report: routines.ShutdownReport, model: Model) -> None:
    assert report.reason == model.reason
    assert report.signal == model.signum
    assert report.forced == model.forced
    assert [o.state for o in report.outcomes] == [
        model.outcome(n) for n in range(len(driver.puppets))
    ]
    for index, outcome in enumerate(report.outcomes):
        assert (outcome.error is not None) == (model.states[index] == "failed"), outcome
        assert (outcome.stack is not None) == (model.states[index] == "hung"), outcome
    assert report.ok == all(s in ("running", "finished") for s in model.states)
    assert report.duration <= driver.stop_timeout + MARGIN
    if driver.shutdown_began:
        assert time.monotonic() - driver.shutdown_began <= driver.stop_timeout + MARGIN


@pytest.fixture
def late_signals() -> Iterator[list[int]]:
    """Signals that reach the process outside run(): recorded instead of killing the test run."""
    late: list[int] = []

    def record(signum: int, frame: FrameType | None) -> None:
        late.append(signum)

    previous = {s: signal.signal(s, record) for s in (signal.SIGINT, signal.SIGTERM)}
    yield late
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def run_scenario(scenario: Scenario, late: list[int]) -> None:
    steps, model = plan(scenario)
    driver = Driver(scenario, steps, model.forced)
    try:
        if scenario.mode == "run":
            with in_background(driver.drive):
                report = driver.monitor.run()
        else:
            driver.monitor.start()
            driver.drive()
            waited = driver.monitor.wait(driver.stop_timeout + MARGIN)
            assert waited is not None, "no report within the bound"
            report = waited
        check_report(driver, report, model)
        alive = {t.name for t in threading.enumerate() if t.name.startswith("routine:")}
        hung = {
            f"routine:{p.name}" for n, p in enumerate(driver.puppets) if model.states[n] == "hung"
        }
        assert alive == hung, f"routine threads alive: {alive}, hung on purpose: {hung}"
        assert late == [], "a signal was sent while run() was not there to catch it"
    finally:
        for puppet in driver.puppets:
            puppet.release.set()
            puppet.stop()
        threads = [t for t in threading.enumerate() if t.name.startswith("routine:")]
        for thread in threads:
            thread.join(WAIT)
        assert not any(t.is_alive() for t in threads)


def check_scenarios(examples: int, late: list[int]) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(scenario=scenarios())
    def check(scenario: Scenario) -> None:
        run_scenario(scenario, late)

    check()


def test_random_sequences_end_in_a_report_that_matches_the_model(late_signals: list[int]) -> None:
    check_scenarios(EXAMPLES, late_signals)


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_many_random_sequences_end_in_a_report_that_matches_the_model(
    late_signals: list[int],
) -> None:
    check_scenarios(SOAK_EXAMPLES, late_signals)
