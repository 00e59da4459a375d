"""`PeriodicRoutine`: call a handler every interval, on one or more threads, until stopped."""

from __future__ import annotations

import enum
import functools
import logging
import math
import random
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Final, Literal, TypeAlias

from typing_extensions import final

from ._clock import SYSTEM_CLOCK, Clock
from ._context import running_as, stopping
from ._flag import Flag
from ._lifecycle import Lifecycle
from ._status import RoutineStatus, describe_error, error_text
from ._threads import join_all
from ._validate import (
    check_bool,
    check_callable,
    check_fraction,
    check_int,
    check_name,
    check_optional_seconds,
    check_seconds,
    describe_callable,
)

__all__ = ["REINVOKE_IMMEDIATELY", "PeriodicRoutine", "with_error_message"]

logger = logging.getLogger("routines")

Seconds: TypeAlias = float | timedelta  # a number of seconds, or a timedelta


class _Reinvoke(enum.Enum):
    REINVOKE_IMMEDIATELY = "REINVOKE_IMMEDIATELY"

    def __repr__(self) -> str:
        return "routines.REINVOKE_IMMEDIATELY"


REINVOKE_IMMEDIATELY: Final = _Reinvoke.REINVOKE_IMMEDIATELY
"""Return this from a periodic handler to run it again at once (ErrReinvokeImmediately)."""

# How often a callable concurrency is read again, on the routine's clock.
CONCURRENCY_REFRESH: Final = 30.0
# The shortest interval a fixed rate counts due times with; any shorter one counts as this.
_SHORTEST_RATE: Final = 1e-9
# The interval used when an interval function has never returned a valid one.
_FALLBACK_INTERVAL: Final = 1.0
# Loop threads have ended their loop once they said so; this only bounds the final join.
_JOIN_GRACE: Final = 5.0
# The uniform [0, 1) source of jitter; a seam for tests that need exact jitter.
_jitter_fraction: Callable[[], float] = random.random

_RunState: TypeAlias = Literal["idle", "running", "stopped"]


def with_error_message(message: str, fn: Callable[[], object]) -> Callable[[], object]:
    """A handler that calls `fn` and logs any `Exception` as `"<message>: <exception>"`.

    The exception is logged with its traceback under the `routines` logger and swallowed, so
    the periodic routine carries on (Sourcegraph's NewHandlerWithErrorMessage). What `fn`
    returns is passed on, so it may still return `REINVOKE_IMMEDIATELY`.
    """
    if not isinstance(message, str):
        msg = f"message must be a str, got {message!r}"
        raise TypeError(msg)
    check_callable("fn", fn)

    @functools.wraps(fn)
    def handler() -> object:
        try:
            return fn()
        except Exception as exc:
            logger.exception("%s: %s", message, error_text(exc))  # noqa: TRY401 - as documented
            return None

    return handler


def _seconds_or_function(
    value: object,
) -> tuple[float | None, Callable[[], float | timedelta] | None]:
    if callable(value):
        return None, value
    return check_seconds("interval", value, allow_zero=False), None


@final
class PeriodicRoutine:
    """Call `handler` every `interval` seconds until stopped (Sourcegraph's PeriodicGoroutine).

    Timing: the first run starts at once (after `initial_delay`). By default the next wait
    starts when a run ends (fixed delay). With `fixed_rate=True` runs are due at
    `start + k * interval`; after a run that ends at t the next one is due at the first such
    time >= t, and the due times skipped are counted as `missed_runs`, never run in a burst.
    `jitter` lengthens every wait between runs (not the initial delay) by up to
    `jitter * interval`; with a fixed rate it is drawn afresh for each due time, so it never
    accumulates. A callable `interval` is read before every wait; when it raises or returns
    something that is not a positive number of seconds, that is reported like a handler error
    and the last valid interval (one second if none) is used. When the interval changes under a
    fixed rate, the schedule is rebased on the last due time.

    Concurrency: `concurrency=N` runs N independent loops, the first on the thread that called
    `start()`, the others on threads named `routine:<name>:<k>`. A callable concurrency is read
    at start and every 30 seconds on the routine's clock by `start()`'s thread, and the set of
    loops resized: new loops run at once, retired loops finish the run they are in and then
    end, so no run is lost or doubled. If it raises or returns an invalid value, that is
    reported like a handler error and the size is kept (one loop if it never gave a valid one).

    Errors: an `Exception` from the handler goes to `on_error`, else to the handler's
    `handle_error(exc)`, else to the `routines` log with its traceback, and is counted as a
    failure; one raised after stop was asked is only logged at debug level. An exception in
    `on_error`, `handle_error`, `on_shutdown` or the interval or concurrency function is logged.
    A `BaseException` that is not an `Exception` ends the routine: the other loops are asked to
    stop and finish their run, `on_shutdown` runs, and `start()` re-raises it.

    `on_shutdown` (else the handler's `on_shutdown()`) is called exactly once per `start()`, on
    `start()`'s thread, after every loop has ended, also when there was no run.

    Overdue runs: a run whose duration on the routine's clock exceeds `run_timeout` is counted
    in `overdue_runs` and logged as a warning when it returns. This costs no timer and no
    thread; a run that never returns is not counted (a Monitor reports it, with its stack, when
    it does not stop in time).
    """

    # Slots: a thousand idle routines should cost little more than their threads.
    __slots__ = (
        "_clock",
        "_concurrency",
        "_concurrency_function",
        "_failures",
        "_fixed_rate",
        "_handler",
        "_initial_delay",
        "_interval",
        "_interval_function",
        "_jitter",
        "_last_error",
        "_last_run_duration",
        "_last_valid_interval",
        "_lifecycle",
        "_max_reinvocations",
        "_missed_runs",
        "_on_error",
        "_on_shutdown",
        "_overdue_runs",
        "_run_timeout",
        "_runs",
        "_state",
        "_stats_lock",
        "description",
        "name",
    )

    def __init__(
        self,
        handler: Callable[[], object],
        *,
        interval: Seconds | Callable[[], Seconds] = 1.0,
        name: str | None = None,
        description: str = "",
        initial_delay: Seconds = 0.0,
        concurrency: int | Callable[[], int] = 1,
        fixed_rate: bool = False,
        jitter: float = 0.0,
        max_consecutive_reinvocations: int = 100,
        run_timeout: Seconds | None = None,
        on_error: Callable[[Exception], object] | None = None,
        on_shutdown: Callable[[], object] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._handler: Callable[[], object] = check_callable("handler", handler)
        self._interval, self._interval_function = _seconds_or_function(interval)
        self.name: str = check_name(name) or describe_callable(handler)
        if not isinstance(description, str):
            msg = f"description must be a str, got {description!r}"
            raise TypeError(msg)
        self.description = description
        self._initial_delay = check_seconds("initial_delay", initial_delay)
        self._concurrency_function: Callable[[], int] | None = None
        self._concurrency = 1
        if callable(concurrency):
            self._concurrency_function = concurrency
        else:
            self._concurrency = check_int("concurrency", concurrency, minimum=1)
        self._fixed_rate = check_bool("fixed_rate", fixed_rate)
        self._jitter = check_fraction("jitter", jitter)
        self._max_reinvocations = check_int(
            "max_consecutive_reinvocations", max_consecutive_reinvocations, minimum=1
        )
        self._run_timeout = check_optional_seconds("run_timeout", run_timeout, allow_zero=False)
        on_error = check_callable("on_error", on_error, allow_none=True)
        on_shutdown = check_callable("on_shutdown", on_shutdown, allow_none=True)
        # The handler object's hooks (Sourcegraph's ErrorHandler and Finalizer) are the fallback.
        self._on_error: Callable[[Exception], object] | None = on_error or _method(
            handler, "handle_error"
        )
        self._on_shutdown: Callable[[], object] | None = on_shutdown or _method(
            handler, "on_shutdown"
        )
        if clock is not None and not isinstance(clock, Clock):
            msg = f"clock must have now() and wait(event, timeout), got {clock!r}"
            raise TypeError(msg)
        self._clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        self._lifecycle = Lifecycle()
        self._stats_lock = threading.Lock()
        self._state: _RunState = "idle"
        self._runs = 0
        self._failures = 0
        self._missed_runs = 0
        self._overdue_runs = 0
        self._last_run_duration: float | None = None
        self._last_error: str | None = None
        self._last_valid_interval = self._interval

    def start(self) -> None:
        """Run the loops until `stop()`; return at once if `stop()` was already called."""
        with self._lifecycle.run(self.name) as go:
            self._set_state("running")
            try:
                if go:
                    _PeriodicRun(self).run()
            finally:
                try:
                    self._shut_down()
                finally:
                    self._set_state("stopped")

    def stop(self) -> None:
        """End every wait at once; a run in progress finishes first. Thread-safe and quick."""
        self._lifecycle.stop()

    def status(self) -> RoutineStatus:
        """The routine's state and counters, as it sees them (thread-safe, never blocks on a run).

        The counters add up over every `start()` of this object.
        """
        with self._stats_lock:
            state = self._state
            if state == "running" and self._lifecycle.stopping:
                return self._status("stopping")
            return self._status(state)

    def _status(self, state: Literal["idle", "running", "stopping", "stopped"]) -> RoutineStatus:
        return RoutineStatus(
            name=self.name,
            state=state,
            last_error=self._last_error,
            runs=self._runs,
            failures=self._failures,
            missed_runs=self._missed_runs,
            overdue_runs=self._overdue_runs,
            last_run_duration=self._last_run_duration,
        )

    def _set_state(self, state: _RunState) -> None:
        with self._stats_lock:
            self._state = state

    # -- one run of the handler -------------------------------------------------------------

    def _run_handler(self) -> bool:
        """Call the handler once; True if it asked to be run again at once."""
        clock = self._clock
        started = clock.now()
        try:
            result = self._handler()
        except Exception as exc:  # noqa: BLE001 - reported; the loop goes on
            self._record_run(clock.now() - started)
            self._report(exc, "the handler")
            return False
        except BaseException as exc:
            self._record_run(clock.now() - started)
            with self._stats_lock:
                self._last_error = describe_error(exc)
            raise
        self._record_run(clock.now() - started)
        return result is REINVOKE_IMMEDIATELY

    def _record_run(self, duration: float) -> None:
        overdue = self._run_timeout is not None and duration > self._run_timeout
        with self._stats_lock:
            self._runs += 1
            self._last_run_duration = duration
            if overdue:
                self._overdue_runs += 1
        if overdue:
            logger.warning(
                "routine %r: a run took %.3fs, longer than its run_timeout of %.3fs",
                self.name,
                duration,
                self._run_timeout,
            )

    def _report(self, exc: Exception, source: str) -> None:
        """Hand an error to on_error / handle_error / the log, unless stop was already asked."""
        # stopping(): a Monitor marks the thread stopping a moment before its stop() arrives.
        if self._lifecycle.stopping or stopping():
            logger.debug(
                "routine %r: %s raised after stop was asked: %s",
                self.name,
                source,
                describe_error(exc),
            )
            return
        with self._stats_lock:
            self._failures += 1
            self._last_error = describe_error(exc)
        if self._on_error is None:
            logger.error(
                "routine %r: %s raised %s", self.name, source, error_text(exc), exc_info=exc
            )
            return
        try:
            self._on_error(exc)
        except Exception:
            logger.exception(
                "routine %r: the error callback raised while handling %s",
                self.name,
                error_text(exc),
            )

    # -- timing ---------------------------------------------------------------------------

    def _read_interval(self) -> float:
        """The interval for the next wait: the fixed one, or what the interval function says."""
        if self._interval is not None:
            return self._interval
        assert self._interval_function is not None
        try:
            seconds = check_seconds(
                "the interval function's result", self._interval_function(), allow_zero=False
            )
        except Exception as exc:  # noqa: BLE001 - reported; the last valid interval is used
            self._report(exc, "the interval function")
            return self._last_valid_interval or _FALLBACK_INTERVAL
        self._last_valid_interval = seconds
        return seconds

    def _read_concurrency(self, current: int) -> int:
        if self._concurrency_function is None:
            return self._concurrency
        try:
            return check_int(
                "the concurrency function's result", self._concurrency_function(), minimum=1
            )
        except Exception as exc:  # noqa: BLE001 - reported; the pool keeps its size
            self._report(exc, "the concurrency function")
            return current

    def _jitter_for(self, interval: float) -> float:
        return self._jitter * interval * _jitter_fraction() if self._jitter else 0.0

    def _shut_down(self) -> None:
        if self._on_shutdown is None:
            return
        try:
            self._on_shutdown()
        except Exception:
            logger.exception("routine %r: on_shutdown raised", self.name)

    def __repr__(self) -> str:
        return f"<PeriodicRoutine {self.name!r}>"


def _method(obj: object, name: str) -> Callable[..., object] | None:
    """`obj.<name>` if it is callable; plain functions have no such hooks."""
    method = getattr(obj, name, None)
    return method if callable(method) else None


class _FixedRate:
    """Due times `anchor + k * interval`, rebased on the last due time when the interval changes.

    Each due time is computed from the anchor, never by adding intervals up, so it can't drift.
    """

    def __init__(self, anchor: float) -> None:
        self._anchor = anchor
        self._interval: float | None = None
        self._index = 0  # the due time of the run that just ended

    def next_due(self, now: float, interval: float) -> tuple[float, int]:
        """The first due time >= `now` after the last one, and how many were skipped."""
        # A positive interval can be too small to count due times with (5e-324 s): the
        # arithmetic would overflow, and the due times would not advance the clock.
        interval = max(interval, _SHORTEST_RATE)
        if interval != self._interval:
            if self._interval is not None:
                self._anchor += self._index * self._interval
            self._interval = interval
            self._index = 0
        index = max(self._index + 1, math.ceil((now - self._anchor) / interval))
        # ceil() on floats may land one off; settle on the first due time >= now.
        if index - 1 > self._index and self._anchor + (index - 1) * interval >= now:
            index -= 1
        if self._anchor + index * interval < now:
            index += 1
        missed = index - self._index - 1
        self._index = index
        return self._anchor + index * interval, missed


class _PeriodicRun:
    """The loops of one `start()` of a PeriodicRoutine."""

    __slots__ = (
        "cond",
        "first_error",
        "loops_running",
        "routine",
        "stop_flag",
        "thread_count",
        "threads",
    )

    def __init__(self, routine: PeriodicRoutine) -> None:
        self.routine = routine
        self.stop_flag = routine._lifecycle.flag
        self.cond: threading.Condition  # made by run() when there is more than one loop
        self.loops_running = 0
        self.first_error: BaseException | None = None
        self.threads: list[threading.Thread] = []
        self.thread_count = 0

    def run(self) -> None:
        routine = self.routine
        if routine._concurrency_function is None and routine._concurrency == 1:
            # The usual case: one loop, on this thread, with no other loop to wait for or stop.
            self._loop(self.stop_flag, routine._initial_delay)
            return
        self.cond = threading.Condition(threading.Lock())
        try:
            if routine._concurrency_function is None:
                # Every loop waits on the routine's own stop flag; the first one runs here.
                for _ in range(routine._concurrency - 1):
                    self._spawn(self.stop_flag, routine._initial_delay)
                self._loop(self.stop_flag, routine._initial_delay)
            else:
                self._control(routine._concurrency_function)
        except BaseException as exc:  # noqa: BLE001 - handed on below, once every loop ended
            self._fail(exc)
        with self.cond:
            while self.loops_running:
                self.cond.wait()
        join_all(self.threads, _JOIN_GRACE)
        if self.first_error is not None:
            raise self.first_error

    def _control(self, read_concurrency: Callable[[], int]) -> None:
        """Keep as many loops as the concurrency function says, re-reading it every 30 s."""
        routine = self.routine
        clock = routine._clock
        loops: list[Flag] = []  # one retire flag per live loop, oldest first
        size = routine._read_concurrency(1)
        delay = routine._initial_delay
        while True:
            while len(loops) < size:
                loops.append(self._spawn(Flag(), delay, follow_stop=True))
            while len(loops) > size:
                loops.pop().set()  # it finishes the run it is in, then ends
            delay = 0.0  # loops added later run at once
            if clock.wait(self.stop_flag, CONCURRENCY_REFRESH):
                return
            size = routine._read_concurrency(len(loops))

    def _spawn(self, flag: Flag, initial_delay: float, *, follow_stop: bool = False) -> Flag:
        self.thread_count += 1
        thread = threading.Thread(
            target=self._run_loop_thread,
            args=(flag, initial_delay, follow_stop),
            name=f"routine:{self.routine.name}:{self.thread_count}",
            daemon=True,
        )
        with self.cond:
            self.loops_running += 1
        self.threads.append(thread)
        try:
            thread.start()
        except BaseException:
            with self.cond:
                self.loops_running -= 1
            raise
        return flag

    def _run_loop_thread(self, flag: Flag, initial_delay: float, follow_stop: bool) -> None:
        if follow_stop:
            # A stop of the routine ends this loop's waits at once, as a retirement does.
            self.stop_flag.subscribe(flag.set)
            if self.stop_flag.is_set():
                flag.set()
        try:
            with running_as(self.stop_flag):
                self._loop(flag, initial_delay)
        except BaseException as exc:  # noqa: BLE001 - handed on: start() re-raises it
            self._fail(exc)
        finally:
            if follow_stop:
                self.stop_flag.unsubscribe(flag.set)
            with self.cond:
                self.loops_running -= 1
                self.cond.notify_all()

    def _fail(self, exc: BaseException) -> None:
        with self.cond:
            if self.first_error is None:
                self.first_error = exc
        self.stop_flag.set()  # the routine ends: the other loops finish their run and stop

    def _loop(self, flag: Flag, initial_delay: float) -> None:
        """Run the handler, wait, run again, until `flag` is set."""
        routine = self.routine
        clock = routine._clock
        started = clock.now()
        if initial_delay > 0 and clock.wait(flag, initial_delay):
            return
        schedule = _FixedRate(started + initial_delay) if routine._fixed_rate else None
        if flag.is_set():  # stopped before this loop's first run: no run starts after a stop
            return
        while True:
            for _ in range(routine._max_reinvocations):
                if not routine._run_handler() or flag.is_set():
                    break
            if flag.is_set():
                return
            interval = routine._read_interval()
            jitter = routine._jitter_for(interval)
            if schedule is None:
                timeout = interval + jitter
            else:
                now = clock.now()
                due, missed = schedule.next_due(now, interval)
                if missed:
                    with routine._stats_lock:
                        routine._missed_runs += missed
                timeout = due + jitter - now
            if clock.wait(flag, max(0.0, timeout)):
                return
