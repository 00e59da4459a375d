"""The Monitor: starts routines on threads, acts on their supervisors, and stops them all.

Data flows one way at shutdown: signal -> monitor -> `stop()` on each routine -> outcomes ->
report. Status flows up the same way. The Monitor knows routines only through the protocol
(and an optional `status()`); what follows each run is its `Supervisor`'s decision.
"""

from __future__ import annotations

import queue
import signal as _signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Literal, TypeAlias, TypedDict

from typing_extensions import Self, Unpack, final

from ._context import Routine
from ._flag import Flag
from ._helpers import Helpers
from ._host import HostHooks, HostOptions
from ._logs import fields, get_logger, log_error
from ._process import StartedIn
from ._report import (
    Reporter,
    ReportingHooks,
    RoutineEvent,
    RoutineOutcome,
    RoutineRecord,
    ShutdownReport,
    report_headline,
)
from ._signals import (
    SignalPump,
    check_on_signal,
    check_signals,
    signal_name,
    wait_interruptibly,
)
from ._status import RoutineState, RoutineStatus, describe_error, forked_status, supervised_status
from ._stops import StopCalls
from ._supervise import Final, RestartPolicy, Supervisor, plan_supervision
from ._threads import join_all
from ._validate import check_callable, check_seconds, routine_name

__all__ = ["Monitor", "MonitorOptions", "monitor"]

logger = get_logger("monitor")

Phase: TypeAlias = Literal["new", "running", "stopping", "done"]

# After the deadline, how long callbacks (on_event) still get to deliver what is queued, and how
# long threads that already reported their end get to finish exiting.
_CALLBACK_GRACE = 1.0
# A routine in one of these is as it should be: running, about to, or waiting for its restart.
_HEALTHY_STATES: frozenset[RoutineState] = frozenset({"idle", "running", "restarting"})
_EXIT_GRACE = 1.0


@final
class Monitor:
    """Runs routines on daemon threads, restarts them by policy and stops them all on a signal.

    `run()` blocks until SIGINT/SIGTERM (or `shutdown()`, or every routine ended), then calls
    `stop()` on every routine at once and waits for them against one deadline, `stop_timeout`
    from the start of shutdown. A second signal during shutdown stops the waiting at once.
    """

    def __init__(
        self,
        *routines: Routine,
        stop_timeout: float | timedelta = 10.0,
        signals: Iterable[int] = (_signal.SIGINT, _signal.SIGTERM),
        on_signal: Mapping[int, Callable[[], object]] | None = None,
        restart: RestartPolicy | None = None,
        on_event: Callable[[RoutineEvent], object] | None = None,
    ) -> None:
        self._children = [
            RoutineRecord(routine, Supervisor(routine_name(routine), policy))
            for routine, policy in plan_supervision(routines, restart)
        ]
        self._stop_timeout = check_seconds("stop_timeout", stop_timeout)
        self._shutdown_signals = check_signals("signals", signals)
        self._on_signal = check_on_signal(on_signal)
        self._reporter = Reporter(check_callable("on_event", on_event, allow_none=True, takes=1))
        self._hooks = ReportingHooks(self._reporter, self._finish)

        self._cond = threading.Condition(threading.Lock())
        # Set when shutdown begins: every routine's thread is then "stopping" (routines.stopping())
        # and no routine starts or restarts any more.
        self._stopping = Flag()
        self._phase: Phase = "new"
        self._ended = 0  # children with a final outcome
        self._reason: str | None = None
        self._signal: int | None = None
        self._forced = False
        self._report: ShutdownReport | None = None
        self._wake_pump: Callable[[], None] | None = None
        # shutdown() takes no lock: it may run in a signal handler that interrupted this very
        # thread inside wait() or status(). SimpleQueue.put() is reentrant; None only wakes.
        self._requests: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._shutdown_asked = False
        # Set once `_report` is: what every wait for the report waits on. A Flag, not the
        # Condition: a signal handler's exception (Ctrl-C) that interrupts a plain lock's
        # acquire leaves nothing half-done, where Condition.wait() may be left re-taking its lock.
        self._reported = Flag()
        self._stop_calls = Helpers("routines:monitor:stop", "a stop() call", serial=False)
        self._stops = StopCalls(self._cond)
        self._started_in = StartedIn()

    # -- the public face -------------------------------------------------------------------

    def run(self) -> ShutdownReport:
        """Start every routine, block until a shutdown signal or `shutdown()`, stop all, report.

        Installs handlers for `signals` (and the keys of `on_signal`) in the main thread first,
        and restores the previous ones before returning.
        """
        if not self._shutdown_signals and not self._on_signal:
            fresh = self._phase == "new"
            try:
                self.start()
                return self._report_when_done()
            except BaseException as error:  # re-raised once the routines are stopped (bounded)
                if fresh and self._phase != "new":
                    self._interrupted(error)
                    self._wait_report(self._stop_timeout + _CALLBACK_GRACE + _EXIT_GRACE)
                raise
        with SignalPump(self._shutdown_signals, self._on_signal, self._shutdown_signal) as pump:
            self._wake_pump = pump.wake
            try:
                pump.serve(
                    self.start,
                    done=self._reported.is_set,
                    interrupted=self._interrupted,
                    settle=self._stop_timeout + _CALLBACK_GRACE + _EXIT_GRACE,
                    wait=self._wait_report,
                )
            finally:
                self._wake_pump = None
                pump.close(0.0 if self._forced else _CALLBACK_GRACE)
        return self._report_when_done()

    def start(self) -> None:
        """Start every routine, each on its own daemon thread, and return at once."""
        with self._cond:
            if self._phase != "new":
                msg = f"monitor was already started (it is {self._phase}); a Monitor runs once"
                raise RuntimeError(msg)
            self._take_requests()
            self._started_in.mark()
            self._phase = "running"
            if not self._children:
                self._begin_shutdown("all routines ended")
            if self._reason is not None:
                # shutdown() came first: no routine may start, whichever thread gets the lock
                # first, the coordinator or the routine's.
                self._stopping.set()
            for child in self._children:
                child.thread = threading.Thread(
                    target=child.supervisor.run,
                    args=(child.routine, self._cond, self._stopping, self._hooks, child),
                    name=f"routine:{child.name}",
                    daemon=True,
                )
        # Started outside the lock: each new thread takes it at once, and would queue on it.
        threading.Thread(target=self._coordinate, name="routines:monitor", daemon=True).start()
        for child in self._children:
            assert child.thread is not None
            try:
                child.thread.start()
            except RuntimeError as exc:  # the process can't have more threads
                log_error(logger, child.name, "thread_failed", "could not start its thread")
                with self._cond:
                    self._finish(child, Final("failed", exc, ("failed",)))

    def shutdown(self, reason: str = "shutdown requested") -> None:
        """Ask every routine to stop. Thread-safe, non-blocking, callable from anywhere,
        including a signal handler.

        Before `start()`, the monitor stops as soon as it starts. A second call changes nothing.
        """
        if not isinstance(reason, str):
            msg = f"reason must be a str, got {reason!r}"
            raise TypeError(msg)
        self._shutdown_asked = True  # for healthy(), before the coordinator has acted on it
        self._requests.put(reason)

    def wait(self, timeout: float | None = None) -> ShutdownReport | None:
        """Block until the shutdown is over; the report, or None if `timeout` ran out first."""
        seconds = None if timeout is None else check_seconds("timeout", timeout)
        if self._phase == "new":
            msg = "monitor was not started: call start() or run() first"
            raise RuntimeError(msg)
        if self._started_in.forked():
            raise RuntimeError(self._started_in.message("the monitor"))
        return self._wait_report(seconds)

    def status(self) -> list[RoutineStatus]:
        """Every routine's state and restart count now; never blocks on a running routine.

        In a process forked after `start()`, every routine is said not to run there.
        """
        if self._started_in.forked():  # before the lock, which the fork may have left held
            why = self._started_in.message("the monitor")
            return [forked_status(RoutineStatus(c.name, "stopped"), why) for c in self._children]
        with self._cond:
            seen = [
                (child, child.state, child.supervisor.restarts, child.supervisor.last_error)
                for child in self._children
            ]
        return [
            supervised_status(child.routine, child.name, state, restarts, error)
            for child, state, restarts, error in seen
        ]

    @property
    def routines(self) -> tuple[Routine, ...]:
        """The routines it supervises, in the order given (those given to `supervised()`
        unwrapped)."""
        return tuple(child.routine for child in self._children)

    def healthy(self) -> bool:
        """True while every routine runs, or waits to be restarted within its policy.

        False before `start()`, once a routine has ended for good (finished, failed or given
        up on), once shutdown has begun, and in a process forked after `start()`.
        """
        if self._started_in.forked() or self._shutdown_asked:
            return False
        with self._cond:
            return self._phase == "running" and all(
                child.state in _HEALTHY_STATES for child in self._children
            )

    def start_in_host(self, **options: Unpack[HostOptions]) -> HostHooks:
        """`start()` for a host that owns the main thread and its signals (a web server): see
        `HostHooks` for the options, and docs/embedding.md for recipes."""
        return HostHooks.start(self, self._shutdown_signals, self._stop_timeout, **options)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        error = exc_info[1]
        if isinstance(error, BaseException):
            self.shutdown(f"context exited with {describe_error(error)}")
        else:
            self.shutdown("context exited")
        self.wait()

    def __repr__(self) -> str:
        return f"<Monitor {self._phase} with {len(self._children)} routines>"

    # -- signals (on the thread that called run()) -----------------------------------------

    def _shutdown_signal(self, signum: int) -> None:
        name = signal_name(signum)
        with self._cond:
            if self._phase == "running":
                logger.info("received %s: shutting down", name, extra=fields(event="signal"))
                self._begin_shutdown(f"received {name}", signum)
            elif self._phase == "stopping" and not self._forced:
                logger.warning(
                    "received %s during shutdown: no longer waiting for routines",
                    name,
                    extra=fields(event="forced"),
                )
                self._forced = True
                self._cond.notify_all()

    def _interrupted(self, error: BaseException) -> None:
        """Whatever broke run()'s wait, the routines must not go on unsupervised."""
        self.shutdown(f"run() was interrupted by {describe_error(error)}")

    def _report_when_done(self) -> ShutdownReport:
        report = self._wait_report()
        assert report is not None
        return report

    def _wait_report(self, timeout: float | None = None) -> ShutdownReport | None:
        """`wait()` without its checks; on the main thread, a signal's handler runs meanwhile."""
        wait_interruptibly(self._reported, timeout)
        return self._report

    # -- supervision (one thread per routine) ----------------------------------------------

    def _finish(self, child: RoutineRecord, final: Final) -> None:
        """Under the lock: the routine's supervision is over; emit, record, maybe shut down."""
        for event in final.events:
            self._reporter.emit(child.name, event, final.error)
        if final.shutdown_reason is not None:
            # Before the outcome: if this was the last routine, "all routines ended" would win.
            self._begin_shutdown(final.shutdown_reason)
        if child.outcome is not None or self._phase == "done":
            return  # the report was written without it: the routine was past its deadline
        child.outcome = RoutineOutcome(child.name, final.state, final.error)
        child.state = final.state
        self._ended += 1
        if self._ended == len(self._children):
            self._begin_shutdown("all routines ended")
            # Only the last one wakes the coordinator: a thousand wake-ups, each retaking the
            # lock that the routines still ending need, made shutdown several times slower.
            self._cond.notify_all()

    # -- shutdown (on the coordinator thread) ----------------------------------------------

    def _take_requests(self) -> None:
        """Under the lock: act on the shutdown() requests queued so far."""
        while True:
            try:
                reason = self._requests.get_nowait()
            except queue.Empty:
                return
            if reason is not None:
                self._begin_shutdown(reason)

    def _begin_shutdown(self, reason: str, signum: int | None = None) -> None:
        """Under the lock: move to "stopping" (or remember the request until start())."""
        if self._reason is not None:
            return
        self._reason, self._signal = reason, signum
        if self._phase == "running":
            self._phase = "stopping"
            self._cond.notify_all()
            self._requests.put(None)  # wakes the coordinator

    def _coordinate(self) -> None:
        reason: str | None = None
        while True:
            with self._cond:
                if reason is not None:
                    self._begin_shutdown(reason)
                if self._reason is not None:
                    break
            reason = self._requests.get()
        with self._cond:
            self._phase = "stopping"
            started = time.monotonic()
            deadline = started + self._stop_timeout
            self._stopping.set()
            # Every routine gets its stop(), also one that ended for good: a pool that failed
            # hands back its queue then. (A stop after a run has ended applies to no later run.)
            for child in self._children:
                if child.state == "running":
                    child.state = "stopping"
            self._stops.expect(self._children)
        self._stops.call(self._children, self._stop_calls)
        with self._cond:
            # A stop() may raise after its routine returned: wait for it too, to report it.
            while (self._ended < len(self._children) or self._stops.pending) and not self._forced:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            report = self._reporter.report(
                self._children,
                reason=self._reason or "",
                signal=self._signal,
                forced=self._forced,
                stop_timeout=self._stop_timeout,
                started=started,
            )
            self._phase = "done"
        self._release_threads(report)
        self._report = report
        self._reported.set()
        wake = self._wake_pump  # read once: run() clears it as soon as its pump sees the report
        if wake is not None:
            wake()
        logger.info(
            "%s", report_headline(report), extra=fields(event="report", report=report.to_dict())
        )

    def _release_threads(self, report: ShutdownReport) -> None:
        """Let the helper threads end, and deliver the queued callbacks, within a grace."""
        # Also when forced: every event is delivered before the report (a hung callback gets
        # this grace, then what is left is dropped and logged).
        self._reporter.close(_CALLBACK_GRACE)
        self._stop_calls.close()
        ended = [
            child.thread
            for child, outcome in zip(self._children, report.outcomes, strict=True)
            if child.thread is not None and outcome.state not in ("timed_out", "abandoned")
        ]
        join_all(ended, _EXIT_GRACE)


class MonitorOptions(TypedDict, total=False):
    """The keyword arguments of `Monitor`, for `routines.monitor()`."""

    stop_timeout: float | timedelta
    signals: Iterable[int]
    on_signal: Mapping[int, Callable[[], object]] | None
    restart: RestartPolicy | None
    on_event: Callable[[RoutineEvent], object] | None


def monitor(*routines: Routine, **options: Unpack[MonitorOptions]) -> ShutdownReport:
    """`Monitor(*routines, **options).run()`: run until a signal, return the report."""
    return Monitor(*routines, **options).run()
