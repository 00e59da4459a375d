"""The Monitor: starts routines on threads, acts on their supervisors, and stops them all.

Data flows one way at shutdown: signal -> monitor -> `stop()` on each routine -> outcomes ->
report. Status flows up the same way. The Monitor knows routines only through the protocol
(and an optional `status()`); what follows each run is its `Supervisor`'s decision.
"""

from __future__ import annotations

import functools
import logging
import queue
import signal as _signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import timedelta
from types import TracebackType
from typing import Literal, TypeAlias

from typing_extensions import Self, final

from ._context import Routine, running_as
from ._flag import Flag
from ._helpers import Helpers
from ._report import EventKind, RoutineEvent, RoutineOutcome, ShutdownReport
from ._signals import SignalCatcher, check_on_signal, check_signals, signal_name
from ._status import RoutineState, RoutineStatus, describe_error
from ._supervise import Final, RestartPolicy, Supervised, Supervisor
from ._threads import join_all, thread_stack
from ._validate import check_callable, check_routine, check_seconds, routine_name

__all__ = ["Monitor", "monitor"]

logger = logging.getLogger("routines")

Phase: TypeAlias = Literal["new", "running", "stopping", "done"]

# After the deadline, how long callbacks (on_event) still get to deliver what is queued, and how
# long threads that already reported their end get to finish exiting.
_CALLBACK_GRACE = 1.0
_EXIT_GRACE = 1.0


class _Child:
    """The Monitor's record of one routine. Guarded by the Monitor's lock."""

    __slots__ = (
        "name",
        "outcome",
        "routine",
        "state",
        "stop_error",
        "stop_pending",
        "supervisor",
        "thread",
    )

    def __init__(self, routine: Routine, policy: RestartPolicy) -> None:
        self.routine = routine
        self.name = routine_name(routine)
        self.supervisor = Supervisor(self.name, policy)
        self.thread: threading.Thread | None = None
        self.state: RoutineState = "idle"
        self.stop_error: BaseException | None = None
        self.stop_pending = False  # its stop() was called and has not returned yet
        self.outcome: RoutineOutcome | None = None


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
        if restart is None:
            restart = RestartPolicy()
        elif not isinstance(restart, RestartPolicy):
            msg = f"restart must be a RestartPolicy or None, got {restart!r}"
            raise TypeError(msg)
        self._children: list[_Child] = []
        seen: set[int] = set()
        for index, given in enumerate(routines):
            check_routine(f"routines[{index}]", given)
            routine, policy = (
                (given.routine, given.policy) if isinstance(given, Supervised) else (given, restart)
            )
            if id(routine) in seen:
                msg = f"routines[{index}] is passed twice to one Monitor: {routine!r}"
                raise ValueError(msg)
            seen.add(id(routine))
            self._children.append(_Child(routine, policy))
        self._stop_timeout = check_seconds("stop_timeout", stop_timeout)
        self._shutdown_signals = check_signals("signals", signals)
        self._on_signal = check_on_signal(on_signal)
        self._on_event = check_callable("on_event", on_event, allow_none=True)

        self._cond = threading.Condition(threading.Lock())
        # Set when shutdown begins: every routine's thread is then "stopping" (routines.stopping())
        # and no routine starts or restarts any more.
        self._stopping = Flag()
        self._phase: Phase = "new"
        self._ended = 0  # children with a final outcome
        self._stops_running = 0  # stop() calls that have not returned yet
        self._reason: str | None = None
        self._signal: int | None = None
        self._forced = False
        self._report: ShutdownReport | None = None
        self._wake_pump: Callable[[], None] | None = None
        # shutdown() hands its reason to the coordinator through this queue and takes no lock:
        # it may run in a signal handler that interrupted this very thread while it held the
        # Monitor's lock (in wait() or status()). SimpleQueue.put() is reentrant for that.
        # None only wakes the coordinator.
        self._requests: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._events: Helpers | None = None
        self._signal_callbacks: Helpers | None = None
        self._stop_calls = Helpers("routines:monitor:stop", "a stop() call", serial=False)

    # -- the public face -------------------------------------------------------------------

    def run(self) -> ShutdownReport:
        """Start every routine, block until a shutdown signal or `shutdown()`, stop all, report.

        Installs handlers for `signals` (and the keys of `on_signal`) in the main thread first,
        and restores the previous ones before returning.
        """
        handled = (*self._shutdown_signals, *self._on_signal)
        if not handled:
            self.start()
            return self._wait_report()
        with SignalCatcher(handled) as catcher:
            if self._on_signal:
                self._signal_callbacks = Helpers(
                    "routines:monitor:signals", "on_signal", serial=True
                )
            self._wake_pump = catcher.wake
            started = False
            try:
                self.start()
                started = True
                while (report := self._finished_report()) is None:
                    for signum in catcher.wait():
                        self._handle_signal(signum)
            except BaseException as exc:
                # Whatever broke the pump, the routines must not go on unsupervised: stop them
                # (bounded, and still reading signals) before the exception goes on.
                if started:
                    self.shutdown(f"run() was interrupted by {describe_error(exc)}")
                    self._pump_until_reported(catcher)
                raise
            finally:
                self._wake_pump = None
                if self._signal_callbacks is not None:
                    self._signal_callbacks.close(0.0 if self._forced else _CALLBACK_GRACE)
        return report

    def start(self) -> None:
        """Start every routine, each on its own daemon thread, and return at once."""
        with self._cond:
            if self._phase != "new":
                msg = f"monitor was already started (it is {self._phase}); a Monitor runs once"
                raise RuntimeError(msg)
            self._take_requests()
            self._phase = "running"
            if self._on_event is not None:
                self._events = Helpers("routines:monitor:events", "on_event", serial=True)
            if not self._children:
                self._begin_shutdown("all routines ended")
            if self._reason is not None:
                # shutdown() came first: no routine may start, whichever thread gets the lock
                # first, the coordinator or the routine's.
                self._stopping.set()
            for child in self._children:
                child.thread = threading.Thread(
                    target=self._supervise, args=(child,), name=f"routine:{child.name}", daemon=True
                )
        # Started outside the lock: each new thread takes it at once, and would queue on it.
        threading.Thread(target=self._coordinate, name="routines:monitor", daemon=True).start()
        for child in self._children:
            assert child.thread is not None
            try:
                child.thread.start()
            except RuntimeError as exc:  # the process can't have more threads
                logger.exception("routine %r: could not start its thread", child.name)
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
        self._requests.put(reason)

    def wait(self, timeout: float | None = None) -> ShutdownReport | None:
        """Block until the shutdown is over; the report, or None if `timeout` ran out first."""
        seconds = None if timeout is None else check_seconds("timeout", timeout)
        with self._cond:
            if self._phase == "new":
                msg = "monitor was not started: call start() or run() first"
                raise RuntimeError(msg)
            self._cond.wait_for(lambda: self._report is not None, seconds)
            return self._report

    def status(self) -> list[RoutineStatus]:
        """Every routine's state and restart count now; never blocks on a running routine."""
        with self._cond:
            seen = [
                (child, child.state, child.supervisor.restarts, child.supervisor.last_error)
                for child in self._children
            ]
        statuses = []
        for child, state, restarts, error in seen:
            last_error = describe_error(error)  # outside the lock: it may run foreign code
            own = _own_status(child.routine)
            if own is None:
                statuses.append(RoutineStatus(child.name, state, restarts, last_error))
            else:
                last_error = last_error or own.last_error
                statuses.append(
                    replace(
                        own, name=child.name, state=state, restarts=restarts, last_error=last_error
                    )
                )
        return statuses

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.shutdown("context exited")
        else:
            self.shutdown(f"context exited with {describe_error(exc)}")
        self.wait()

    def __repr__(self) -> str:
        return f"<Monitor {self._phase} with {len(self._children)} routines>"

    # -- signals (on the thread that called run()) -----------------------------------------

    def _handle_signal(self, signum: int) -> None:
        name = signal_name(signum)
        callback = self._on_signal.get(signum)
        if callback is not None and self._signal_callbacks is not None:
            logger.info("received %s: calling its on_signal callback", name)
            self._signal_callbacks.submit(callback)
        if signum not in self._shutdown_signals:
            return
        with self._cond:
            if self._phase == "running":
                logger.info("received %s: shutting down", name)
                self._begin_shutdown(f"received {name}", signum)
            elif self._phase == "stopping" and not self._forced:
                logger.warning("received %s during shutdown: no longer waiting for routines", name)
                self._forced = True
                self._cond.notify_all()

    def _pump_until_reported(self, catcher: SignalCatcher) -> None:
        """After the pump broke: read signals (a second one forces the end) until the report."""
        deadline = time.monotonic() + self._stop_timeout + _CALLBACK_GRACE + _EXIT_GRACE
        while self._finished_report() is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                for signum in catcher.wait(remaining):
                    self._handle_signal(signum)
            except Exception:
                logger.exception("the signal pump broke again; waiting for the report without it")
                self._wait_report(max(0.0, deadline - time.monotonic()))
                return

    def _finished_report(self) -> ShutdownReport | None:
        with self._cond:
            return self._report

    def _wait_report(self, timeout: float | None = None) -> ShutdownReport:
        """`wait()` without its argument check: the report, or the one so far if none in time."""
        with self._cond:
            if timeout is not None:
                timeout = min(timeout, threading.TIMEOUT_MAX)
            self._cond.wait_for(lambda: self._report is not None, timeout)
            return self._report  # type: ignore[return-value]  # None only past a timeout

    # -- supervision (one thread per routine) ----------------------------------------------

    def _supervise(self, child: _Child) -> None:
        supervisor = child.supervisor
        with running_as(self._stopping):
            delay: float | None = 0.0
            while delay is not None:
                self._stopping.wait(delay)  # the backoff; shutdown ends it at once
                with self._cond:
                    # Checked under the lock: shutdown may set the mark just after the wait.
                    if self._stopping.is_set():
                        self._finish(child, supervisor.interrupted())
                        return
                    child.state = "running"
                    self._emit(child, "started")
                error: BaseException | None = None
                try:
                    child.routine.start()
                except BaseException as exc:  # noqa: BLE001 - handed on to the report and the policy
                    error = exc
                # Read at once: a stop asked after start() ended must not turn a crash into a
                # clean stop just because the lock was taken a moment later.
                stop_asked = self._stopping.is_set()
                with self._cond:
                    decision = supervisor.after_run(
                        error, stop_asked=stop_asked, now=time.monotonic()
                    )
                    if isinstance(decision, Final):
                        self._finish(child, decision)
                        return
                    child.state = "restarting"
                    for event in decision.events:
                        self._emit(child, event, error)
                delay = decision.delay

    def _finish(self, child: _Child, final: Final) -> None:
        """Under the lock: the routine's supervision is over; emit, record, maybe shut down."""
        for event in final.events:
            self._emit(child, event, final.error)
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

    def _emit(self, child: _Child, kind: EventKind, error: BaseException | None = None) -> None:
        if self._events is None or self._phase == "done":
            return
        event = RoutineEvent(kind, child.name, time.time(), error)
        on_event = self._on_event
        assert on_event is not None
        self._events.submit(lambda: on_event(event))

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
        while True:
            with self._cond:
                if self._reason is not None:
                    break
            reason = self._requests.get()
            if reason is not None:
                with self._cond:
                    self._begin_shutdown(reason)
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
                child.stop_pending = True
            self._stops_running += len(self._children)
        # Outside the lock, which every stop() takes when it returns: a helper done with one
        # stop() is then free for the next at once, and a few helpers do the thousand stops.
        for child in self._children:
            try:
                self._stop_calls.submit(functools.partial(self._call_stop, child))
            except Exception as exc:  # no thread to call it on: the report must still come
                logger.exception("routine %r: could not call its stop()", child.name)
                self._stop_returned(child, exc)
        with self._cond:
            # A stop() may raise after its routine returned: wait for it too, to report it.
            while (self._ended < len(self._children) or self._stops_running) and not self._forced:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            outcomes = tuple(self._final_outcome(child) for child in self._children)
            self._phase = "done"
            report = ShutdownReport(
                reason=self._reason or "",
                signal=self._signal,
                forced=self._forced,
                duration=time.monotonic() - started,
                outcomes=outcomes,
            )
        self._release_threads(report)
        with self._cond:
            self._report = report
            self._cond.notify_all()
        if self._wake_pump is not None:
            self._wake_pump()
        logger.info("%s", report)

    def _call_stop(self, child: _Child) -> None:
        error: BaseException | None = None
        try:
            child.routine.stop()
        except BaseException as exc:
            logger.exception("routine %r: stop() raised", child.name)
            error = exc
        self._stop_returned(child, error)

    def _stop_returned(self, child: _Child, error: BaseException | None) -> None:
        with self._cond:
            child.stop_error = error
            child.stop_pending = False
            self._stops_running -= 1
            if not self._stops_running:
                self._cond.notify_all()

    def _final_outcome(self, child: _Child) -> RoutineOutcome:
        """Under the lock, at the end of the wait: the outcome the report gives the routine."""
        if child.stop_pending and not self._forced:
            logger.warning("routine %r: its stop() has not returned", child.name)
            child.stop_error = TimeoutError(
                f"stop() did not return within stop_timeout ({self._stop_timeout:g}s)"
            )
        outcome = child.outcome
        if outcome is not None:
            if outcome.error is None and child.stop_error is not None:
                return replace(outcome, error=child.stop_error)
            return outcome
        assert child.thread is not None
        stack = thread_stack(child.thread)
        if self._forced:
            logger.warning("routine %r abandoned, still running", child.name)
            return RoutineOutcome(child.name, "abandoned", child.stop_error, stack)
        logger.warning(
            "routine %r did not stop within %gs; its stack:\n%s",
            child.name,
            self._stop_timeout,
            stack,
        )
        self._emit(child, "stop_timed_out", child.stop_error)
        return RoutineOutcome(child.name, "timed_out", child.stop_error, stack)

    def _release_threads(self, report: ShutdownReport) -> None:
        """Let the helper threads end, and deliver the queued callbacks, within a grace."""
        if self._events is not None:
            # Also when forced: every event is delivered before the report (a hung callback
            # gets this grace, then what is left is dropped and logged).
            self._events.close(_CALLBACK_GRACE)
        self._stop_calls.close()
        ended = [
            child.thread
            for child, outcome in zip(self._children, report.outcomes, strict=True)
            if child.thread is not None and outcome.state not in ("timed_out", "abandoned")
        ]
        join_all(ended, _EXIT_GRACE)


def monitor(
    *routines: Routine,
    stop_timeout: float | timedelta = 10.0,
    signals: Iterable[int] = (_signal.SIGINT, _signal.SIGTERM),
    on_signal: Mapping[int, Callable[[], object]] | None = None,
    restart: RestartPolicy | None = None,
    on_event: Callable[[RoutineEvent], object] | None = None,
) -> ShutdownReport:
    """`Monitor(*routines, ...).run()`: run until a signal, return the report."""
    return Monitor(
        *routines,
        stop_timeout=stop_timeout,
        signals=signals,
        on_signal=on_signal,
        restart=restart,
        on_event=on_event,
    ).run()


def _own_status(routine: Routine) -> RoutineStatus | None:
    """The routine's own status (periodic routines and pools have one), if it has one."""
    status = getattr(routine, "status", None)
    if not callable(status):
        return None
    try:
        own = status()
    except Exception:
        logger.debug("routine %r: status() raised", routine_name(routine), exc_info=True)
        return None
    return own if isinstance(own, RoutineStatus) else None
