"""`PeriodicRoutine`: call a handler every interval, on one or more threads, until stopped."""

from __future__ import annotations

import enum
import functools
import random
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Final, Literal, TypeAlias

from typing_extensions import final

from ._clock import SYSTEM_CLOCK, Clock
from ._context import running_as, stopping
from ._flag import Flag
from ._lifecycle import Lifecycle
from ._logs import RepeatedFailures, fields, get_logger, log_error
from ._process import StartedIn
from ._record import RunRecord
from ._schedule import FixedDelay, FixedRate, Schedule
from ._status import RoutineStatus, describe_error, error_text, forked_status
from ._threads import ThreadGroup
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

logger = get_logger("periodic")

Seconds: TypeAlias = float | timedelta  # a number of seconds, or a timedelta


class _Reinvoke(enum.Enum):
    REINVOKE_IMMEDIATELY = "REINVOKE_IMMEDIATELY"

    def __repr__(self) -> str:
        return "routines.REINVOKE_IMMEDIATELY"


REINVOKE_IMMEDIATELY: Final = _Reinvoke.REINVOKE_IMMEDIATELY
"""Return this from a periodic handler to run it again at once (ErrReinvokeImmediately)."""

# How often a callable concurrency is read again, on the routine's clock.
CONCURRENCY_REFRESH: Final = 30.0
# A failure that repeats after a quiet spell this long is a new incident, logged in full.
_QUIET_WINDOW: Final = 60.0
# The interval used when an interval function has never returned a valid one.
_FALLBACK_INTERVAL: Final = 1.0
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
    check_callable("fn", fn, takes=0)

    @functools.wraps(fn)
    def handler() -> object:
        try:
            return fn()
        except Exception as exc:
            # The message shows the error text, as documented.
            logger.exception("%s: %s", message, error_text(exc), extra=fields(event="failed"))  # noqa: TRY401
            return None

    return handler


def _seconds_or_function(
    value: object,
) -> tuple[float | None, Callable[[], float | timedelta] | None]:
    if callable(value):
        return None, check_callable("interval", value, takes=0)
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
    accumulates. `rng` is its random source (`random.Random(seed)` for reproducible waits).
    A callable `interval` is read before every wait; when it raises or returns something that
    is not a positive number of seconds, that is reported like a handler error and the last
    valid interval (one second if none) is used. When the interval changes under a
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
        "_last_valid_interval",
        "_lifecycle",
        "_max_reinvocations",
        "_named_after",
        "_on_error",
        "_on_shutdown",
        "_record",
        "_run_timeout",
        "_started_in",
        "_state",
        "_uniform",
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
        rng: random.Random | None = None,
    ) -> None:
        self._handler = check_callable("handler", handler, takes=0)
        self._interval, self._interval_function = _seconds_or_function(interval)
        self.name: str = check_name(name) or describe_callable(handler)
        self._named_after = None if name is not None else handler  # for fleet_name()
        if not isinstance(description, str):
            msg = f"description must be a str, got {description!r}"
            raise TypeError(msg)
        self.description = description
        self._initial_delay = check_seconds("initial_delay", initial_delay)
        self._concurrency_function: Callable[[], int] | None = None
        self._concurrency = 1
        if callable(concurrency):
            self._concurrency_function = check_callable("concurrency", concurrency, takes=0)
        else:
            self._concurrency = check_int("concurrency", concurrency, minimum=1)
        self._fixed_rate = check_bool("fixed_rate", fixed_rate)
        self._jitter = check_fraction("jitter", jitter)
        self._max_reinvocations = check_int(
            "max_consecutive_reinvocations", max_consecutive_reinvocations, minimum=1
        )
        self._run_timeout = check_optional_seconds("run_timeout", run_timeout, allow_zero=False)
        on_error = check_callable("on_error", on_error, allow_none=True, takes=1)
        on_shutdown = check_callable("on_shutdown", on_shutdown, allow_none=True, takes=0)
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
        if rng is not None and not isinstance(rng, random.Random):
            msg = f"rng must be a random.Random or None, got {rng!r}"
            raise TypeError(msg)
        self._uniform = rng.random if rng is not None else random.random
        self._lifecycle = Lifecycle()
        self._record = RunRecord()
        # A handler that keeps failing the same way: its traceback once, then one line a time.
        self._failures = RepeatedFailures(_QUIET_WINDOW)
        self._state: _RunState = "idle"
        self._started_in = StartedIn()
        self._last_valid_interval = self._interval

    def start(self) -> None:
        """Run the loops until `stop()`; return at once if `stop()` was already called."""
        with self._lifecycle.run(self.name) as go:
            self._state = "running"
            self._started_in.mark()
            try:
                if go:
                    self._run_loops()
            finally:
                self._record.scheduled(None)  # no run is due once the loops have ended
                try:
                    self._shut_down()
                finally:
                    self._state = "stopped"

    def stop(self) -> None:
        """End every wait at once; a run in progress finishes first. Thread-safe and quick.
        In a process forked after it started, it does nothing: no loop of it runs there."""
        if self._started_in.forked():  # before the lock, which the fork may have left held
            return
        self._lifecycle.stop()

    def status(self) -> RoutineStatus:
        """The routine's state and counters, as it sees them (thread-safe, never blocks on a run).

        The counters add up over every `start()` of this object. In a process forked after it
        started, it says the routine is not running there.
        """
        state: Literal["idle", "running", "stopping", "stopped"] = self._state
        if state == "running" and self._lifecycle.stopping:
            state = "stopping"
        if self._started_in.forked():  # before the record's lock, which the fork may have left held
            why = self._started_in.message(f"routine {self.name!r}")
            return forked_status(RoutineStatus(self.name, "stopped"), why)
        return self._record.status(self.name, state)

    def __repr__(self) -> str:
        return f"<PeriodicRoutine {self.name!r}>"

    # -- the loops ------------------------------------------------------------------------

    def _run_loops(self) -> None:
        stop = self._lifecycle.flag
        if self._concurrency_function is None and self._concurrency == 1:
            # The usual case: one loop, on this thread, with no other loop to wait for or stop.
            self._loop(stop, self._initial_delay)
            return
        # A loop that raises a BaseException ends the routine: the others finish their run.
        with ThreadGroup(f"routine {self.name!r}", on_error=lambda error: stop.set()) as group:
            if self._concurrency_function is None:
                for number in range(1, self._concurrency):
                    self._spawn(group, number, stop, self._initial_delay)
                self._loop(stop, self._initial_delay)
            else:
                self._control(group, stop)

    def _control(self, group: ThreadGroup, stop: Flag) -> None:
        """Keep as many loops as the concurrency function says, re-reading it every 30 s."""
        loops: list[Flag] = []  # one retire flag per live loop, oldest first
        spawned = 0
        size = self._read_concurrency(1)
        delay = self._initial_delay
        while True:
            while len(loops) < size:
                spawned += 1
                loops.append(self._spawn(group, spawned, Flag(), delay, follow_stop=True))
            while len(loops) > size:
                loops.pop().set()  # it finishes the run it is in, then ends
            delay = 0.0  # loops added later run at once
            if self._clock.wait(stop, CONCURRENCY_REFRESH):
                return
            size = self._read_concurrency(len(loops))

    def _spawn(
        self,
        group: ThreadGroup,
        number: int,
        flag: Flag,
        initial_delay: float,
        *,
        follow_stop: bool = False,
    ) -> Flag:
        group.start(
            self._loop_thread,
            flag,
            initial_delay,
            follow_stop,
            name=f"routine:{self.name}:{number}",
        )
        return flag

    def _loop_thread(self, flag: Flag, initial_delay: float, follow_stop: bool) -> None:
        stop = self._lifecycle.flag
        if follow_stop:
            # A stop of the routine ends this loop's waits at once, as a retirement does.
            stop.subscribe(flag.set)
            if stop.is_set():
                flag.set()
        try:
            with running_as(stop):
                self._loop(flag, initial_delay)
        finally:
            if follow_stop:
                stop.unsubscribe(flag.set)

    def _loop(self, flag: Flag, initial_delay: float) -> None:
        """Run the handler, wait, run again, until `flag` is set."""
        clock = self._clock
        started = clock.now()
        if initial_delay > 0 and clock.wait(flag, initial_delay):
            return
        if flag.is_set():  # stopped before this loop's first run: no run starts after a stop
            return
        schedule: Schedule = (
            FixedRate(started + initial_delay, self._jitter, self._uniform)
            if self._fixed_rate
            else FixedDelay(self._jitter, self._uniform)
        )
        while True:
            for _ in range(self._max_reinvocations):
                if not self._run_handler() or flag.is_set():
                    break
            if flag.is_set():
                return
            interval = self._read_interval()
            timeout, missed = schedule.next_wait(clock.now(), interval)
            if missed:
                self._record.missed(missed)
            self._record.scheduled(time.time() + timeout)
            if clock.wait(flag, timeout):
                return

    # -- one run of the handler -------------------------------------------------------------

    def _run_handler(self) -> bool:
        """Call the handler once; True if it asked to be run again at once."""
        clock = self._clock
        began = clock.now()
        try:
            result = self._handler()
        except Exception as exc:  # noqa: BLE001 - reported; the loop goes on
            reported = not self._stop_asked()
            self._count_run(clock.now() - began, exc, counted=reported)
            if reported:
                self._handle_error(exc, "the handler")
            else:
                self._log_after_stop(exc, "the handler")
            return False
        except BaseException as exc:
            self._count_run(clock.now() - began, exc, counted=False)
            self._record.ended_by(exc)
            raise
        self._count_run(clock.now() - began)
        return result is REINVOKE_IMMEDIATELY

    def _count_run(
        self, duration: float, failure: BaseException | None = None, *, counted: bool = True
    ) -> None:
        overdue = self._run_timeout is not None and duration > self._run_timeout
        self._record.ran(duration, failure=failure, counted=counted, overdue=overdue)
        if overdue:
            logger.warning(
                "routine %r: a run took %.3fs, longer than its run_timeout of %.3fs",
                self.name,
                duration,
                self._run_timeout,
                extra=fields(self.name, "overdue", duration=duration),
            )

    def _stop_asked(self) -> bool:
        # stopping(): a Monitor marks the thread stopping a moment before its stop() arrives.
        return self._lifecycle.stopping or stopping()

    def _report(self, exc: Exception, source: str) -> None:
        """A function of the routine's (its interval or concurrency) raised: count and handle
        it, unless stop was already asked."""
        if self._stop_asked():
            self._log_after_stop(exc, source)
            return
        self._record.failed(exc)
        self._handle_error(exc, source)

    def _handle_error(self, exc: Exception, source: str) -> None:
        """Hand an error to on_error / handle_error, or else to the log."""
        if self._on_error is None:
            self._failures.log(
                logger,
                exc,
                self._clock.now(),
                f"routine {self.name!r}: {source} raised",
                routine=self.name,
                event="handler_failed",
                text=error_text(exc),
            )
            return
        try:
            self._on_error(exc)
        except Exception:  # noqa: BLE001 - logged with its traceback by log_error
            what = f"the error callback raised while handling {error_text(exc)}"
            log_error(logger, self.name, "on_error_raised", what)

    def _log_after_stop(self, exc: Exception, source: str) -> None:
        logger.debug(
            "routine %r: %s raised after stop was asked: %s",
            self.name,
            source,
            describe_error(exc),
            extra=fields(self.name, "failed_after_stop"),
        )

    # -- what the functions say -----------------------------------------------------------

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

    def _shut_down(self) -> None:
        if self._on_shutdown is None:
            return
        try:
            self._on_shutdown()
        except Exception:  # noqa: BLE001 - logged with its traceback by log_error
            log_error(logger, self.name, "on_shutdown_raised", "on_shutdown raised")


def _method(obj: object, name: str) -> Callable[..., object] | None:
    """`obj.<name>` if it is callable; plain functions have no such hooks."""
    method = getattr(obj, name, None)
    return method if callable(method) else None
