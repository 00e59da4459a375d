"""The fault matrix: whatever one routine or callback does wrong, shutdown stays bounded, the
report says what happened, and a healthy routine next to it is untouched.

Every test runs a faulty routine (or callback) next to `healthy`, a Gate that must be running
until the shutdown begins, run exactly once, and end "stopped" with no error. The Monitor must
return within `stop_timeout + MARGIN` of the moment the shutdown was triggered: a correctness
bound, not a speed test.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import pytest

import routines

from helpers import NO_RESTART, WAIT, EventLog, Gate, LogWatcher, Stubborn, in_background

STOP_TIMEOUT = 1.0
MARGIN = 2.0
BOUND = STOP_TIMEOUT + MARGIN


class Boom(Exception):
    pass


def raiser(error: BaseException) -> Callable[..., None]:
    """A callback that takes whatever it is called with, and raises `error`."""

    def fail(*args: object) -> None:
        raise error

    return fail


class CountingRaiser:
    """A callable that counts its calls, then raises `error`: a broken handler or callback."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self._calls = threading.Semaphore(0)

    def __call__(self, *args: object) -> None:
        self._calls.release()
        raise self.error

    def wait_calls(self, count: int) -> None:
        for _ in range(count):
            assert self._calls.acquire(timeout=WAIT), f"fewer than {count} calls within {WAIT}s"


def started(*members: routines.Routine, **options: object) -> routines.Monitor:
    options.setdefault("signals", ())
    options.setdefault("stop_timeout", STOP_TIMEOUT)
    monitor = routines.Monitor(*members, **options)  # type: ignore[arg-type]
    monitor.start()
    return monitor


def healthy_until_now(healthy: Gate) -> None:
    """The neighbour started and is still running: nothing so far has touched it."""
    assert healthy.started.wait(WAIT)
    assert not healthy.returned.is_set()


def shut_down(monitor: routines.Monitor, reason: str = "test over") -> routines.ShutdownReport:
    """Shut down and wait for the report; it must come within the bound."""
    began = time.monotonic()
    monitor.shutdown(reason)
    return bounded_report(monitor, began)


def bounded_report(monitor: routines.Monitor, since: float) -> routines.ShutdownReport:
    report = monitor.wait(BOUND + WAIT)  # waits past the bound only to say by how much
    elapsed = time.monotonic() - since
    assert report is not None, f"no report within {BOUND + WAIT}s"
    assert elapsed <= BOUND, f"the monitor took {elapsed:.2f}s, more than {BOUND}s"
    assert report.duration <= BOUND
    return report


def shut_down_next_to_healthy(
    faulty: routines.Routine, ready: threading.Event | None = None, **options: object
) -> tuple[routines.ShutdownReport, Gate]:
    """Run `faulty` next to a healthy Gate until `ready` (default: `faulty.started`), shut both
    down; the report and the healthy Gate."""
    healthy = Gate("healthy")
    monitor = started(faulty, healthy, **options)
    assert (ready or faulty.started).wait(WAIT)  # type: ignore[attr-defined]
    healthy_until_now(healthy)
    with LogWatcher():
        return shut_down(monitor), healthy


def assert_untouched(report: routines.ShutdownReport, healthy: Gate) -> None:
    outcome = next(o for o in report.outcomes if o.name == healthy.name)
    assert (outcome.state, outcome.error) == ("stopped", None)
    assert healthy.runs == 1


# -- start() raising ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error", [Boom("boom"), SystemExit(3), KeyboardInterrupt()], ids=lambda e: type(e).__name__
)
def test_a_start_that_raises_fails_alone_and_is_reported_with_its_error(
    error: BaseException,
) -> None:
    healthy, events = Gate("healthy"), EventLog()
    faulty = routines.CallbackRoutine(raiser(error), name="faulty")
    monitor = started(routines.supervised(faulty, NO_RESTART), healthy, on_event=events)
    events.wait_for("faulty", "failed")
    healthy_until_now(healthy)
    assert monitor.wait(0) is None, "one failed routine must not end the monitor"
    report = shut_down(monitor)
    assert report.outcomes[0].state == "failed"
    assert report.outcomes[0].error is error
    assert report.reason == "test over"
    assert report.exit_code == 1
    assert_untouched(report, healthy)


@pytest.mark.parametrize(
    "error", [Boom("boom"), SystemExit(3), KeyboardInterrupt()], ids=lambda e: type(e).__name__
)
def test_a_crash_loop_in_backoff_ends_at_once_on_shutdown_as_failed(error: BaseException) -> None:
    healthy, events = Gate("healthy"), EventLog()
    faulty = routines.CallbackRoutine(raiser(error), name="faulty")
    policy = routines.RestartPolicy(backoff=60.0, max_backoff=60.0)  # the wait would be a minute
    monitor = started(routines.supervised(faulty, policy), healthy, on_event=events)
    events.wait_for("faulty", "restarting")
    healthy_until_now(healthy)
    report = shut_down(monitor)
    assert report.outcomes[0].state == "failed"
    assert report.outcomes[0].error is error
    assert_untouched(report, healthy)


# -- stop() misbehaving ------------------------------------------------------------------------


def test_a_stop_that_raises_after_asking_is_stopped_with_the_error() -> None:
    class RaisingStop(Gate):
        def stop(self) -> None:
            super().stop()
            raise Boom("stop failed")

    report, healthy = shut_down_next_to_healthy(RaisingStop("faulty"))
    assert report.outcomes[0].state == "stopped"
    assert isinstance(report.outcomes[0].error, Boom)
    assert_untouched(report, healthy)


def test_a_stop_that_raises_without_asking_times_out_with_the_error(
    release: threading.Event,
) -> None:
    class RaisingStop(Gate):
        def stop(self) -> None:
            if not release.is_set():
                raise Boom("stop failed")
            super().stop()

    faulty = RaisingStop("faulty")
    report, healthy = shut_down_next_to_healthy(faulty)
    release.set()
    faulty.stop()
    assert faulty.returned.wait(WAIT)
    assert report.outcomes[0].state == "timed_out"
    assert isinstance(report.outcomes[0].error, Boom)
    assert report.outcomes[0].stack is not None
    assert_untouched(report, healthy)


def test_a_stop_that_blocks_forever_times_out_and_delays_no_other(
    release: threading.Event,
) -> None:
    class BlockingStop(Gate):
        def stop(self) -> None:
            release.wait(60)  # "forever": until the test ends
            super().stop()

    faulty = BlockingStop("faulty")
    report, healthy = shut_down_next_to_healthy(faulty)
    assert report.outcomes[0].state == "timed_out"
    assert report.outcomes[0].stack is not None
    assert_untouched(report, healthy)
    release.set()
    assert faulty.returned.wait(WAIT)


def test_a_start_that_ignores_stop_times_out_with_its_stack() -> None:
    faulty = Stubborn("faulty")
    try:
        report, healthy = shut_down_next_to_healthy(faulty)
    finally:
        faulty.release.set()
    outcome = report.outcomes[0]
    assert outcome.state == "timed_out"
    assert outcome.stack is not None
    assert "in start" in outcome.stack
    assert faulty.stop_calls == 1
    assert report.exit_code == 1
    assert_untouched(report, healthy)


def test_a_stop_timeout_of_zero_still_reports_every_routine() -> None:
    faulty = Stubborn("faulty")
    try:
        report, healthy = shut_down_next_to_healthy(faulty, stop_timeout=0)
    finally:
        faulty.release.set()
    assert report.outcomes[0].state == "timed_out"
    assert report.outcomes[1].state in ("stopped", "timed_out")
    assert healthy.returned.wait(WAIT)


# -- periodic routines -------------------------------------------------------------------------


def test_a_periodic_handler_that_hangs_times_out_with_the_handler_on_its_stack(
    release: threading.Event,
) -> None:
    entered = threading.Event()

    def hanging_handler() -> None:
        entered.set()
        release.wait(60)

    faulty = routines.PeriodicRoutine(hanging_handler, name="faulty", interval=0.01)
    report, healthy = shut_down_next_to_healthy(faulty, entered)
    release.set()
    outcome = report.outcomes[0]
    assert outcome.state == "timed_out"
    assert outcome.stack is not None
    assert "hanging_handler" in outcome.stack
    assert_untouched(report, healthy)


def test_an_on_error_that_raises_is_logged_and_the_periodic_loop_goes_on() -> None:
    handler = CountingRaiser(Boom("handler failed"))
    faulty = routines.PeriodicRoutine(
        handler, name="faulty", interval=0.001, on_error=raiser(Boom("on_error failed"))
    )
    healthy = Gate("healthy")
    with LogWatcher() as logs:
        monitor = started(faulty, healthy)
        handler.wait_calls(3)  # the loop survived two broken error callbacks
        logs.wait_for("the error callback raised")
        healthy_until_now(healthy)
        report = shut_down(monitor)
    assert (report.outcomes[0].state, report.outcomes[0].error) == ("stopped", None)
    assert faulty.status().failures >= 2
    assert_untouched(report, healthy)


def test_a_handle_error_method_that_raises_is_logged_and_the_periodic_loop_goes_on() -> None:
    class Handler(CountingRaiser):
        def handle_error(self, exc: Exception) -> None:
            raise Boom("handle_error failed")

    handler = Handler(Boom("handler failed"))
    faulty = routines.PeriodicRoutine(handler, name="faulty", interval=0.001)
    healthy = Gate("healthy")
    with LogWatcher() as logs:
        monitor = started(faulty, healthy)
        handler.wait_calls(3)
        logs.wait_for("the error callback raised")
        healthy_until_now(healthy)
        report = shut_down(monitor)
    assert report.outcomes[0].state == "stopped"
    assert_untouched(report, healthy)


def test_an_on_shutdown_that_raises_is_logged_and_the_routine_is_stopped() -> None:
    ran = threading.Event()
    faulty = routines.PeriodicRoutine(
        ran.set, name="faulty", interval=60, on_shutdown=raiser(Boom("on_shutdown failed"))
    )
    healthy = Gate("healthy")
    monitor = started(faulty, healthy)
    assert ran.wait(WAIT)
    healthy_until_now(healthy)
    with LogWatcher() as logs:
        report = shut_down(monitor)
        logs.wait_for("on_shutdown raised")
    assert (report.outcomes[0].state, report.outcomes[0].error) == ("stopped", None)
    assert_untouched(report, healthy)


# -- Monitor callbacks -------------------------------------------------------------------------


def test_an_on_event_that_raises_is_logged_and_every_event_is_still_delivered() -> None:
    def broken(event: routines.RoutineEvent) -> None:
        raise Boom(f"on_event failed on {event.kind}")

    events = EventLog(then=broken)
    faulty, healthy = Gate("other"), Gate("healthy")
    with LogWatcher() as logs:
        monitor = started(faulty, healthy, on_event=events)
        events.wait_for("healthy", "started")
        events.wait_for("other", "started")
        healthy_until_now(healthy)
        report = shut_down(monitor)
        logs.wait_for("on_event raised")
    kinds = sorted((e.routine, e.kind) for e in events.events)
    assert kinds == [
        ("healthy", "started"),
        ("healthy", "stopped"),
        ("other", "started"),
        ("other", "stopped"),
    ]
    assert report.ok
    assert_untouched(report, healthy)


def test_an_on_signal_that_raises_is_logged_and_later_signals_still_work() -> None:
    broken_reload = CountingRaiser(Boom("reload failed"))
    healthy = Gate("healthy")
    began: list[float] = []

    def send() -> None:
        healthy_until_now(healthy)
        os.kill(os.getpid(), signal.SIGUSR1)
        broken_reload.wait_calls(1)
        os.kill(os.getpid(), signal.SIGUSR1)  # the callback thread survived the first raise
        broken_reload.wait_calls(1)
        healthy_until_now(healthy)
        began.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGTERM)

    monitor = routines.Monitor(
        healthy, stop_timeout=STOP_TIMEOUT, on_signal={signal.SIGUSR1: broken_reload}
    )
    with LogWatcher() as logs, in_background(send):
        report = monitor.run()
        assert "on_signal raised" in logs.text()
    assert time.monotonic() - began[0] <= BOUND
    assert report.signal == signal.SIGTERM
    assert_untouched(report, healthy)


# -- shutdown() called from inside -------------------------------------------------------------


class Holder:
    """Lets a routine or callback reach the Monitor that is built after it."""

    monitor: routines.Monitor
    triggered: float = 0.0

    def shutdown(self, reason: str) -> None:
        self.triggered = time.monotonic()
        self.monitor.shutdown(reason)

    def start(self, *members: routines.Routine, **options: object) -> None:
        """Build the Monitor and hold it before starting it: a routine may ask for it at once."""
        options.setdefault("signals", ())
        options.setdefault("stop_timeout", STOP_TIMEOUT)
        self.monitor = routines.Monitor(*members, **options)  # type: ignore[arg-type]
        self.monitor.start()


def assert_shut_down_from_inside(
    holder: Holder, healthy: Gate, reason: str
) -> routines.ShutdownReport:
    report = bounded_report(holder.monitor, holder.triggered or time.monotonic())
    assert report.reason == reason
    assert report.ok, str(report)
    assert_untouched(report, healthy)
    return report


def test_shutdown_from_inside_a_routine_is_bounded_and_stops_everyone() -> None:
    holder, healthy = Holder(), Gate("healthy")

    def ask() -> None:
        healthy_until_now(healthy)
        holder.shutdown("asked by a routine")
        routines.sleep(60)

    holder.start(routines.CallbackRoutine(ask, name="asker"), healthy)
    assert_shut_down_from_inside(holder, healthy, "asked by a routine")


def test_shutdown_from_inside_a_periodic_handler_is_bounded_and_stops_everyone() -> None:
    holder, healthy = Holder(), Gate("healthy")

    def handler() -> None:
        healthy_until_now(healthy)
        holder.shutdown("asked by a handler")

    holder.start(routines.PeriodicRoutine(handler, name="asker"), healthy)
    assert_shut_down_from_inside(holder, healthy, "asked by a handler")


def test_shutdown_from_inside_on_error_is_bounded_and_stops_everyone() -> None:
    holder, healthy = Holder(), Gate("healthy")

    def on_error(exc: Exception) -> None:
        healthy_until_now(healthy)
        holder.shutdown(f"on_error saw {exc}")

    asker = routines.PeriodicRoutine(raiser(Boom("bad")), name="asker", on_error=on_error)
    holder.start(asker, healthy)
    assert_shut_down_from_inside(holder, healthy, "on_error saw bad")


def test_shutdown_from_inside_on_shutdown_of_a_routine_that_ended_is_bounded() -> None:
    holder, healthy = Holder(), Gate("healthy")
    ran = threading.Event()

    def on_shutdown() -> None:
        healthy_until_now(healthy)
        holder.shutdown("asked by on_shutdown")

    asker = routines.PeriodicRoutine(ran.set, name="asker", interval=60, on_shutdown=on_shutdown)
    holder.start(asker, healthy)
    assert ran.wait(WAIT)
    asker.stop()  # someone else ends it; its on_shutdown takes the whole monitor down
    report = assert_shut_down_from_inside(holder, healthy, "asked by on_shutdown")
    assert report.outcomes[0].state in ("stopped", "finished")


def test_shutdown_from_inside_on_shutdown_during_a_shutdown_is_bounded() -> None:
    holder, healthy = Holder(), Gate("healthy")
    ran, called = threading.Event(), threading.Event()

    def on_shutdown() -> None:
        holder.shutdown("asked again by on_shutdown")
        called.set()

    asker = routines.PeriodicRoutine(ran.set, name="asker", interval=60, on_shutdown=on_shutdown)
    holder.start(asker, healthy)
    assert ran.wait(WAIT)
    healthy_until_now(healthy)
    report = shut_down(holder.monitor, "first")
    assert called.is_set()
    assert report.reason == "first"
    assert report.ok
    assert_untouched(report, healthy)


def test_shutdown_from_inside_on_event_is_bounded_and_stops_everyone() -> None:
    holder, healthy = Holder(), Gate("healthy")

    def on_event(event: routines.RoutineEvent) -> None:
        if (event.routine, event.kind) == ("asker", "finished"):
            holder.shutdown("asked by on_event")

    asker = routines.CallbackRoutine(healthy.started.wait, name="asker")  # returns by itself
    holder.start(asker, healthy, on_event=on_event)
    report = assert_shut_down_from_inside(holder, healthy, "asked by on_event")
    assert report.outcomes[0].state == "finished"


def test_shutdown_from_inside_on_signal_is_bounded_and_stops_everyone() -> None:
    holder, healthy = Holder(), Gate("healthy")

    def send() -> None:
        healthy_until_now(healthy)
        os.kill(os.getpid(), signal.SIGUSR1)

    holder.monitor = routines.Monitor(
        healthy,
        stop_timeout=STOP_TIMEOUT,
        on_signal={signal.SIGUSR1: lambda: holder.shutdown("asked by on_signal")},
    )
    with in_background(send):
        report = holder.monitor.run()
    assert time.monotonic() - holder.triggered <= BOUND
    assert report.reason == "asked by on_signal"
    assert report.signal is None
    assert_untouched(report, healthy)


# -- worker pools ------------------------------------------------------------------------------


def test_a_pool_handler_that_hangs_times_out_with_the_handler_on_its_stack(
    release: threading.Event,
) -> None:
    entered = threading.Event()

    def hanging_job(job: int) -> None:
        entered.set()
        release.wait(60)

    pool: routines.WorkerPool[int, None] = routines.WorkerPool(hanging_job, workers=1, name="pool")
    pool.submit(1)  # waits in the queue until the pool starts
    report, healthy = shut_down_next_to_healthy(pool, entered)
    release.set()
    outcome = report.outcomes[0]
    assert outcome.state == "timed_out"
    assert_untouched(report, healthy)


def test_a_pool_on_error_that_raises_is_logged_and_the_worker_goes_on() -> None:
    handler = CountingRaiser(Boom("job failed"))
    pool: routines.WorkerPool[int, None] = routines.WorkerPool(
        handler, workers=1, name="pool", on_error=raiser(Boom("on_error failed"))
    )
    healthy = Gate("healthy")
    with LogWatcher() as logs:
        monitor = started(pool, healthy)
        first, second = pool.submit(1), pool.submit(2)
        assert isinstance(first.exception(WAIT), Boom)
        assert isinstance(second.exception(WAIT), Boom)  # the same worker survived
        logs.wait_for("on_error raised")
        healthy_until_now(healthy)
        report = shut_down(monitor)
    assert (report.outcomes[0].state, report.outcomes[0].error) == ("stopped", None)
    assert pool.status().failures == 2
    assert_untouched(report, healthy)


def test_shutdown_from_inside_a_pool_handler_is_bounded_and_stops_everyone() -> None:
    holder, healthy = Holder(), Gate("healthy")

    def job(item: int) -> int:
        healthy_until_now(healthy)
        holder.shutdown("asked by a job")
        return item

    pool: routines.WorkerPool[int, int] = routines.WorkerPool(job, workers=2, name="asker")
    holder.monitor = started(pool, healthy)
    done = pool.submit(7)
    assert_shut_down_from_inside(holder, healthy, "asked by a job")
    assert done.result(0) == 7


def test_shutdown_from_inside_a_pool_on_error_is_bounded_and_stops_everyone() -> None:
    holder, healthy = Holder(), Gate("healthy")

    def on_error(item: int, exc: Exception) -> None:
        healthy_until_now(healthy)
        holder.shutdown(f"job {item} failed: {exc}")

    pool: routines.WorkerPool[int, None] = routines.WorkerPool(
        CountingRaiser(Boom("bad")), workers=2, name="asker", on_error=on_error
    )
    holder.monitor = started(pool, healthy)
    pool.submit(3)
    assert_shut_down_from_inside(holder, healthy, "job 3 failed: bad")
