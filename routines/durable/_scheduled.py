"""`Scheduled`: a job that every replica schedules and exactly one runs, tick by tick.

Every process running the same schedule reckons its ticks on the database's clock, sleeps
locally (on monotonic time, re-reading the database's clock at least once a minute, so a clock
step or a suspended laptop can't strand it) until the next tick, then claims `(name, tick)`.
Claims of one schedule are serialised in the database: the first claim of a tick runs it; the
others find it taken; a tick that comes due while a run is still going is recorded `skipped`,
so runs never overlap anywhere in the fleet.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING, Any, Final

from typing_extensions import final

from .._context import running_as
from .._flag import Flag
from .._lifecycle import StatefulLifecycle
from .._logs import RepeatedFailures, fields, get_logger
from .._record import RunRecord
from .._status import RoutineStatus, describe_error
from .._threads import ThreadGroup
from .._validate import check_bool, check_callable, check_name, check_seconds, describe_callable
from ._errors import StoreUnavailable, error_report
from ._model import check_text, holder_id
from ._outage import Backoff, retried, warn_unavailable
from ._store import Store, store_access

if TYPE_CHECKING:
    from ._access import StoreAccess

__all__ = ["Scheduled"]

logger = get_logger("durable.scheduled")

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)
_REREAD_CLOCK: Final = 60.0  # the longest local wait before the database's clock is read again


@final
class Scheduled:
    """Run `handler` at each tick of a schedule, once across the fleet (a `Routine`).

    Exactly one of `every` (seconds or a timedelta: ticks aligned to the Unix epoch, so
    `every=300` ticks at :00, :05, ...) and `cron` (a five-field cron expression, in `timezone`;
    needs the extra `routines[cron]`). `name` is the schedule's identity across the fleet
    (default: the handler's qualified name). With `catch_up=True`, a process that starts when
    the latest tick has no run (every replica was down) runs that tick once; missed ticks
    coalesce into one. A run heartbeats; one whose process died is marked `failed` once its
    heartbeat is older than `stalled_after` (at least 3 times the store's timeout), and the
    next tick runs normally. `store.schedule_runs(name)` gives the fleet-wide history.

    The handler's `Exception` is logged and its run recorded `failed`; the schedule goes on. A
    `BaseException` records the run `failed` and ends the routine: `start()` re-raises it.
    """

    def __init__(
        self,
        handler: Callable[[], object],
        store: Store,
        *,
        every: float | timedelta | None = None,
        cron: str | None = None,
        timezone: str = "UTC",
        name: str | None = None,
        catch_up: bool = False,
        stalled_after: float | timedelta = 60.0,
    ) -> None:
        self._handler = check_callable("handler", handler, takes=0)
        if not isinstance(store, Store):
            msg = f"store must be a durable store (durable.open_store()), got {store!r}"
            raise TypeError(msg)
        self._store = store
        self._access = store_access(store)
        if (every is None) == (cron is None):
            msg = f"pass exactly one of every and cron, got every={every!r} and cron={cron!r}"
            raise ValueError(msg)
        zone = _zone(timezone)
        self._ticks: _Ticks = (
            _Every(check_seconds("every", every, allow_zero=False))
            if every is not None
            else _Cron(cron, zone)
        )
        self.name: str = check_text("name", check_name(name) or describe_callable(handler))
        self._catch_up = check_bool("catch_up", catch_up)
        self._stalled_after = check_seconds("stalled_after", stalled_after, allow_zero=False)
        if self._stalled_after < 3 * store.timeout:
            msg = (
                "stalled_after must be at least 3 times the store's timeout "
                f"({3 * store.timeout:g}s): two heartbeats and a call that waits out the timeout "
                f"must fit in it; got {stalled_after!r}"
            )
            raise ValueError(msg)
        self._lifecycle = StatefulLifecycle()
        self._record = RunRecord()
        self._failures = RepeatedFailures(self._stalled_after)

    def start(self) -> None:
        """Take part in the schedule until `stop()`; a run going on finishes first."""
        self._lifecycle.run_through(self.name, self._take_part)

    def stop(self) -> None:
        self._lifecycle.stop()

    @property
    def store(self) -> Store:
        """The store the schedule's ticks are claimed in."""
        return self._store

    def status(self) -> RoutineStatus:
        """Runs of this process (`runs`, `failures`, `last_run_duration`, when it last ran and
        last succeeded) and when the next tick is (`next_run_at`)."""
        return self._record.status(self.name, self._lifecycle.state)

    def __repr__(self) -> str:
        return f"<Scheduled {self.name!r} {self._ticks}>"

    def _take_part(self) -> None:
        _Schedule(
            self.name,
            self._access,
            self._lifecycle.flag,
            self._handler,
            self._ticks,
            catch_up=self._catch_up,
            stalled_after=self._stalled_after,
            record=self._record,
            failures=self._failures,
        ).run()


class _Ticks:
    """A schedule's ticks: aware UTC datetimes."""

    def after(self, moment: datetime) -> datetime:
        """The first tick strictly after `moment`."""
        raise NotImplementedError

    def latest(self, moment: datetime) -> datetime:
        """The last tick at or before `moment`."""
        raise NotImplementedError


@final
class _Every(_Ticks):
    def __init__(self, every: float) -> None:
        self._every = max(1, round(every * 1_000_000))  # microseconds

    def after(self, moment: datetime) -> datetime:
        since = (moment - _EPOCH) // timedelta(microseconds=1)
        return _EPOCH + timedelta(microseconds=(since // self._every + 1) * self._every)

    def latest(self, moment: datetime) -> datetime:
        since = (moment - _EPOCH) // timedelta(microseconds=1)
        return _EPOCH + timedelta(microseconds=since // self._every * self._every)

    def __repr__(self) -> str:
        return f"every {self._every / 1_000_000:g}s"


@final
class _Cron(_Ticks):
    def __init__(self, expression: object, zone: tzinfo) -> None:
        if not isinstance(expression, str):
            msg = f"cron must be a str such as '*/5 * * * *', got {expression!r}"
            raise TypeError(msg)
        try:
            from croniter import croniter
        except ImportError as error:
            msg = (
                "cron schedules need croniter: pip install 'routines[cron]' "
                f"({describe_error(error)})"
            )
            raise ImportError(msg) from error
        if len(expression.split()) != 5 or not croniter.is_valid(expression):
            msg = f"cron must be a valid five-field cron expression, got {expression!r}"
            raise ValueError(msg)
        self._zone = zone
        self._expression = expression
        self._croniter: Any = croniter

    def after(self, moment: datetime) -> datetime:
        found: datetime = self._croniter(self._expression, moment.astimezone(self._zone)).get_next(
            datetime
        )
        return found.astimezone(timezone.utc)

    def latest(self, moment: datetime) -> datetime:
        # croniter's get_prev is strictly before: nudge the moment so a tick at it counts.
        nudged = moment.astimezone(self._zone) + timedelta(microseconds=1)
        found: datetime = self._croniter(self._expression, nudged).get_prev(datetime)
        return found.astimezone(timezone.utc)

    def __repr__(self) -> str:
        return f"cron {self._expression!r} in {self._zone}"


def _zone(name: object) -> tzinfo:
    """The time zone `name` (IANA), for cron schedules."""
    import zoneinfo

    if not isinstance(name, str):
        msg = f"timezone must be a str such as 'Europe/Paris', got {name!r}"
        raise TypeError(msg)
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
        msg = f"timezone must be an IANA time zone such as 'Europe/Paris', got {name!r}"
        raise ValueError(msg) from error


class _Schedule:
    """One `start()` of a Scheduled: the tick loop on start()'s thread, a thread per run."""

    def __init__(
        self,
        name: str,
        access: StoreAccess,
        stop: Flag,
        handler: Callable[[], object],
        ticks: _Ticks,
        *,
        catch_up: bool,
        stalled_after: float,
        record: RunRecord,
        failures: RepeatedFailures,
    ) -> None:
        self.name = name
        self.access = access
        self.stop = stop
        self.handler = handler
        self.ticks = ticks
        self.catch_up = catch_up
        self.stalled_after = stalled_after
        self.record = record
        self.failures = failures
        self.worker = holder_id()
        self.lock = threading.Lock()
        self.running: datetime | None = None  # the tick of this process's run going on
        self.run_ended = Flag()
        self.next_beat = 0.0  # monotonic, when the run going on is due its next heartbeat
        self.clock_read_at = -float("inf")  # monotonic, when the database's clock was read
        self.clock_offset = timedelta(0)  # database's now - this host's wall clock, then
        self.backoff = Backoff(logger, f"schedule {name!r}", name)

    def run(self) -> None:
        with ThreadGroup(
            f"schedule {self.name!r}", on_error=lambda error: self.stop.set()
        ) as group:
            now = self._database_now()
            if now is None:
                return
            last: datetime | None = now
            if self.catch_up:
                claimed = self._claim(group, self.ticks.latest(now))
                last = None if claimed is None else max(now, claimed)
            while last is not None and not self.stop.is_set():
                tick = self.ticks.after(last)
                self.record.scheduled(tick.timestamp())
                now = self._wait_for(tick)
                if now is None:
                    break
                # Ticks that passed while this process was paused coalesce into the latest.
                last = self._claim(group, max(tick, self.ticks.latest(now)))
            self.record.scheduled(None)
            # A run going on after the stop finishes first: keep it alive meanwhile, or another
            # replica would take it for dead.
            while self._running_tick() is not None:
                self._heartbeat_if_due()
                self.run_ended.wait(min(self._until_heartbeat(), self.stalled_after / 3))

    # -- time ---------------------------------------------------------------------------------

    def _database_now(self) -> datetime | None:
        """The database's clock, read now (retried while unavailable); None once stopping."""
        while not self.stop.is_set():
            try:
                with self.access.using("now") as backend:
                    now = backend.now()
            except StoreUnavailable as error:
                self._unavailable(error, "reading the database's clock")
                continue
            self.backoff.succeeded()
            self.clock_read_at = time.monotonic()
            self.clock_offset = now - datetime.now(timezone.utc)
            return now
        return None

    def _estimated_now(self) -> datetime:
        return datetime.now(timezone.utc) + self.clock_offset

    def _wait_for(self, tick: datetime) -> datetime | None:
        """Wait until the database's clock reaches `tick`, heartbeating a run meanwhile; the
        database's now then, or None once stopping."""
        while not self.stop.is_set():
            self._heartbeat_if_due()
            stale = time.monotonic() - self.clock_read_at >= _REREAD_CLOCK
            if stale and self._database_now() is None:
                return None
            left = (tick - self._estimated_now()).total_seconds()
            if left <= 0:
                now = self._database_now()  # due by the estimate: ask the database
                if now is None:
                    return None
                if now >= tick:
                    return now
                left = (tick - now).total_seconds()
            self.stop.wait(max(0.0, min(left, _REREAD_CLOCK, self._until_heartbeat())))
        return None

    def _unavailable(self, error: StoreUnavailable, what: str) -> None:
        self.stop.wait(self.backoff.failed(error, what))

    # -- runs -----------------------------------------------------------------------------------

    def _running_tick(self) -> datetime | None:
        with self.lock:
            return self.running

    def _claim(self, group: ThreadGroup, tick: datetime) -> datetime | None:
        """Claim `tick` and start its run if the claim succeeds; the tick claimed (a later one
        if the store was unavailable past it), or None once stopping."""
        while not self.stop.is_set():
            try:
                with self.access.ticks("claim_tick") as ticks:
                    claimed = ticks.claim_tick(self.name, tick, self.worker, self.stalled_after)
                break
            except StoreUnavailable as error:
                self._unavailable(error, f"claiming the tick {tick:%Y-%m-%d %H:%M:%S}")
                tick = max(tick, self.ticks.latest(self._estimated_now()))
        else:
            return None
        self.backoff.succeeded()
        if claimed == "skipped":
            logger.info(
                "schedule %r: tick %s skipped: the previous run is still going",
                self.name,
                tick.isoformat(),
                extra=fields(self.name, "tick_skipped"),
            )
        if claimed == "claimed":
            with self.lock:
                self.running = tick
            self.run_ended.clear()
            self.next_beat = time.monotonic() + self.stalled_after / 3
            group.start(self._run, tick, name=f"routine:{self.name}:run")
        return tick

    def _run(self, tick: datetime) -> None:
        began = time.monotonic()
        error: BaseException | None = None
        try:
            with running_as(self.stop):
                self.handler()
        except BaseException as exc:  # noqa: BLE001 - recorded; a BaseException is re-raised below
            error = exc
        finally:
            with self.lock:
                self.running = None
            self.run_ended.set()
        duration = time.monotonic() - began
        if error is None:
            self.record.ran(duration)
        else:
            self.record.ran(duration, failure=error)
            self.failures.log(
                logger,
                error,
                time.monotonic(),
                f"schedule {self.name!r}: the run of {tick.isoformat()} failed",
                routine=self.name,
                event="run_failed",
            )
        self._finish(tick, None if error is None else error_report(error))
        if error is not None and not isinstance(error, Exception):
            raise error

    def _heartbeat_if_due(self) -> None:
        """Heartbeat the run going on, if any, every stalled_after / 3 (on the tick loop)."""
        if self._running_tick() is not None and time.monotonic() >= self.next_beat:
            self._heartbeat()
            self.next_beat = time.monotonic() + self.stalled_after / 3

    def _until_heartbeat(self) -> float:
        """Seconds until the run going on is due a heartbeat (infinite without one)."""
        if self._running_tick() is None:
            return float("inf")
        return max(0.0, self.next_beat - time.monotonic())

    def _heartbeat(self) -> None:
        tick = self._running_tick()
        if tick is None:
            return
        try:
            with self.access.ticks("heartbeat_run") as ticks:
                ticks.heartbeat_run(self.name, tick, self.worker)
        except StoreUnavailable as error:
            warn_unavailable(
                logger, f"schedule {self.name!r}", "sending a heartbeat", error, routine=self.name
            )

    def _finish(self, tick: datetime, error: str | None) -> None:
        """Record how the run ended, retried while the store is unavailable for up to
        stalled_after (then the run is marked failed by the next claim, as a dead one)."""

        def finish() -> None:
            with self.access.ticks("finish_run") as ticks:
                ticks.finish_run(self.name, tick, self.worker, error)

        # A backoff of its own: this runs on the run's thread, beside the tick loop's.
        backoff = Backoff(logger, f"schedule {self.name!r}", self.name)
        doing = f"recording the end of the run of {tick.isoformat()}"
        unavailable = retried(finish, backoff, doing, within=self.stalled_after)
        if isinstance(unavailable, StoreUnavailable):
            logger.error(
                "schedule %r: could not record the end of the run of %s: %s",
                self.name,
                tick.isoformat(),
                describe_error(unavailable),
                extra=fields(self.name, "run_unrecorded"),
            )
