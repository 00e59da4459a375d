"""`WorkerPool`: N workers on a bounded queue, the Go "background job" pattern, nothing lost.

Every accepted item either starts (its future gets the result or the exception) or is handed
back by `unprocessed()` with its future cancelled. An item starts when a worker takes it off the
queue: that happens under the pool's lock, in the same step that checks whether the pool may
still start items, so "started" and "handed back" never overlap.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from datetime import timedelta
from typing import Generic, Literal, TypeAlias, TypeVar

from typing_extensions import final

from ._context import running_as
from ._errors import PoolClosed, PoolFull
from ._flag import Flag
from ._logs import RepeatedFailures, fields, get_logger
from ._process import StartedIn
from ._record import RunRecord
from ._status import (
    RoutineState,
    RoutineStatus,
    describe_error,
    describe_value,
    error_text,
    forked_status,
)
from ._threads import ThreadGroup
from ._validate import (
    check_bool,
    check_callable,
    check_int,
    check_name,
    check_optional_seconds,
    check_seconds,
    describe_callable,
)

__all__ = ["WorkerPool"]

logger = get_logger("pool")

T = TypeVar("T")
# A failure that repeats after a quiet spell this long is a new incident, logged in full.
_QUIET_WINDOW = 60.0
R = TypeVar("R")

# idle -> running -> stopping (stop() asked: the workers drain, or finish their item) -> stopped;
# running or stopping -> ending (a BaseException: the others finish their item) -> failed, or
# stopped if stop() was asked; failed -> running (a restart keeps the queue) or stopped.
PoolState: TypeAlias = Literal["idle", "running", "stopping", "ending", "failed", "stopped"]
_STATUS_STATE: dict[PoolState, RoutineState] = {
    "idle": "idle",
    "running": "running",
    "stopping": "stopping",
    "ending": "stopping",
    "failed": "failed",
    "stopped": "stopped",
}


class _ItemFuture(Future[R], Generic[T, R]):
    """The future of a submitted item, carrying the item until a worker takes it. One object,
    appended to the queue in one step: nothing (a KeyboardInterrupt, say) can come between an
    item and its future and pair it with another item's. A tuple of the two cost a tenth of the
    pool's throughput (benchmarks, figure 4): one more object a job for the garbage collector
    to count and traverse while the futures pile up."""

    __slots__ = ("item",)
    item: T


class _Run:
    """One `start()`: its worker threads, and the flag its handlers see when it is ending."""

    __slots__ = ("ending", "group")

    def __init__(self, group: ThreadGroup) -> None:
        self.group = group
        self.ending = Flag()


@final
class WorkerPool(Generic[T, R]):
    """`workers` threads run `handler(item)` for each submitted item, from a queue of `buffer`.

    It is a routine: `start()` runs the pool on the calling thread (the workers on threads named
    `routine:<name>:worker-<n>`) and returns once every worker thread is gone; `stop()` closes
    the pool for good and only asks. With `drain_on_stop`, the workers go on starting queued items
    for up to `drain_timeout` seconds after `stop()` (None: until the queue is empty); whatever
    is left is handed back by `unprocessed()` with its future cancelled.

    A handler's `Exception` goes to the item's future, and to `on_error(item, exc)` (or the log)
    first. A `BaseException` that is not an `Exception` ends the pool: the other workers finish
    their current item, `start()` re-raises it, and the queue is kept for a restart.
    """

    def __init__(
        self,
        handler: Callable[[T], R],
        *,
        workers: int = 5,
        buffer: int = 100,
        name: str | None = None,
        on_error: Callable[[T, Exception], object] | None = None,
        drain_on_stop: bool = True,
        drain_timeout: float | timedelta | None = 5.0,
    ) -> None:
        self._handler = check_callable("handler", handler, takes=1)
        self._workers = check_int("workers", workers, minimum=1)
        self._buffer = check_int("buffer", buffer, minimum=1)
        self.name: str = check_name(name) or describe_callable(handler)
        self._named_after = None if name is not None else handler  # for fleet_name()
        self._on_error = check_callable("on_error", on_error, allow_none=True, takes=2)
        drain = check_bool("drain_on_stop", drain_on_stop)
        seconds = check_optional_seconds("drain_timeout", drain_timeout)
        # drain_timeout=0 is documented as the same as no drain.
        self._drain = drain and seconds != 0
        self._drain_timeout = seconds

        self._lock = threading.Lock()
        self._has_items = threading.Condition(self._lock)  # workers wait here
        self._has_space = threading.Condition(self._lock)  # blocked submitters wait here
        self._changed = threading.Condition(self._lock)  # start() waits here
        # Each accepted item in its future: see _ItemFuture.
        self._queue: deque[_ItemFuture[T, R]] = deque()
        self._idle_workers = 0
        # Idle workers already notified but not yet awake, so that submit() doesn't notify them
        # again: a notify per submit, with most of them landing on a worker that was already
        # being woken, cost a fifth of the pool's throughput (benchmarks, figure 4). It may fall
        # short after a notify_all() (a woken worker consumes a count that was not its own),
        # which only costs a spare notify, never a missed one.
        self._waking_workers = 0
        self._blocked_submitters = 0

        # Guarded by the lock: the state, and two facts the state can't hold.
        self._state: PoolState = "idle"
        self._closed = False  # stop() was called: no more items accepted, ever
        self._taken_back = False  # the queue was handed back: no more items start, ever
        # Taken back, or the run is ending: the one attribute the workers' hot path reads.
        self._halted = False
        self._drain_deadline: float | None = None  # monotonic; set by stop() when draining
        self._run: _Run | None = None
        self._stop_flag = Flag()  # what handlers see as routines.stopping()
        # Serialises take-backs, so a caller of unprocessed() sees every future cancelled.
        self._take_back_lock = threading.RLock()
        self._handed_back: list[T] = []
        self._record = RunRecord()
        # One per worker, kept across starts: a worker counts its successes without a lock.
        self._tallies = [self._record.tally() for _ in range(self._workers)]
        # A handler that keeps failing the same way: its traceback once, then one line a time.
        self._failures = RepeatedFailures(_QUIET_WINDOW)
        self._started_in = StartedIn()

    # -- intake ---------------------------------------------------------------------------------

    def submit(self, item: T, *, block: bool = True, timeout: float | None = None) -> Future[R]:
        """Queue `item`; the returned future gets the handler's result or exception.

        While the queue is full it waits (up to `timeout` seconds, if given); with `block=False`
        or when the timeout runs out it raises `PoolFull`. After `stop()` it raises `PoolClosed`;
        in a process forked after the pool started, `RuntimeError` (no worker would run it).
        """
        if block is not True and block is not False:
            check_bool("block", block)
        if timeout is not None:
            timeout = check_seconds("timeout", timeout, allow_none=True)
            if not block:
                msg = f"timeout must be None when block is False, got {timeout!r}"
                raise ValueError(msg)
        if self._closed:
            raise self._closed_error()
        if self._started_in.forked():  # checked before the lock, which a fork may have left held
            raise RuntimeError(self._started_in.message(f"pool {self.name!r}"))
        future: _ItemFuture[T, R] = _ItemFuture()
        future.item = item
        with self._lock:
            if self._closed:  # checked again: a stop() may have taken the queue back meanwhile
                raise self._closed_error()
            if len(self._queue) >= self._buffer:
                self._wait_for_space(block, timeout)
            self._queue.append(future)
            if self._idle_workers > self._waking_workers:
                self._waking_workers += 1
                self._has_items.notify()
        return future

    def _wait_for_space(self, block: bool, timeout: float | None) -> None:
        """With the lock held and the queue full: return once there is room, or raise."""
        if self._closed:
            raise self._closed_error()
        if not block:
            msg = f"pool {self.name!r} is full: {self._buffer} items are queued"
            raise PoolFull(msg)
        deadline = None if timeout is None else time.monotonic() + timeout
        self._blocked_submitters += 1
        try:
            while len(self._queue) >= self._buffer:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    msg = f"pool {self.name!r} is still full after waiting {timeout}s"
                    raise PoolFull(msg)
                self._has_space.wait(remaining)
                if self._closed:
                    raise self._closed_error()
        finally:
            self._blocked_submitters -= 1

    def _closed_error(self) -> PoolClosed:
        return PoolClosed(f"pool {self.name!r} was stopped; it accepts no more items")

    # -- the routine ----------------------------------------------------------------------------

    def start(self) -> None:
        """Run the workers until the pool is stopped and drained, or a handler ends it.

        Returns at once if `stop()` was already called. Raises the `BaseException` that ended
        the pool, if one did; the queue is then kept, and the pool can be started again.
        """
        run = _Run(ThreadGroup(f"pool {self.name!r}", on_error=self._end_run, cond=self._changed))
        with self._lock:
            if self._state in ("running", "stopping", "ending"):
                msg = (
                    f"pool {self.name!r} is already running ({self._state}); "
                    "start() it from one thread at a time"
                )
                raise RuntimeError(msg)
            if self._closed:
                return
            self._state = "running"
            self._started_in.mark()
            self._run = run
            self._halted = False
        try:
            with run.group:
                for index in range(self._workers):
                    run.group.start(
                        self._work, run, index, name=f"routine:{self.name}:worker-{index + 1}"
                    )
                self._wait_for_workers(run)
        finally:
            with self._lock:
                self._run = None
                closed = self._closed
                self._state = "stopped" if closed else "failed" if run.group.error else "idle"
            if closed:
                self._take_back()  # after a failure while closed: nothing else will start them

    def stop(self) -> None:
        """Close the pool for good: no more items are accepted. Quick, and never waits.

        With `drain_on_stop`, a running pool goes on starting queued items for up to
        `drain_timeout` seconds; otherwise (and when the pool is not running) the queue is
        handed back at once, to `unprocessed()`. In a process forked after the pool started,
        it does nothing: the pool and its queue are the parent's.
        """
        if self._started_in.forked():  # before the lock, which the fork may have left held
            return
        with self._lock:
            if self._closed:
                return
            self._closed = True
            running = self._run is not None
            if self._state == "running":
                self._state = "stopping"
            elif not running:
                self._state = "stopped"
            draining = running and self._drain
            if draining and self._drain_timeout is not None:
                self._drain_deadline = time.monotonic() + self._drain_timeout
            self._has_items.notify_all()
            self._has_space.notify_all()
            self._changed.notify_all()
        self._stop_flag.set()
        if not draining:
            self._take_back()

    def unprocessed(self) -> list[T]:
        """The accepted items that never started, in submission order; their futures are cancelled.

        After `stop()` it first takes back every queued item that has not started (ending any
        drain still going), so none of them can start later; it is safe to call at any moment,
        also while the pool is still finishing its running items. Each call returns everything
        handed back so far. Before `stop()` it returns an empty list: the queue still belongs to
        the pool. In a process forked after the pool started, it is empty too.
        """
        if not self._closed or self._started_in.forked():
            return []
        self._take_back()
        with self._lock:
            return list(self._handed_back)

    def status(self) -> RoutineStatus:
        """Runs, failures and queued items now; thread-safe and never blocks.

        In a process forked after the pool started, it says the pool is not running there.
        """
        if self._started_in.forked():  # before the record's lock, which the fork may have left held
            why = self._started_in.message(f"pool {self.name!r}")
            return forked_status(RoutineStatus(self.name, "stopped"), why)
        return self._record.status(self.name, _STATUS_STATE[self._state], queued=len(self._queue))

    def __repr__(self) -> str:
        return f"<WorkerPool {self.name!r} {self._state}>"

    # -- the pool's own thread ------------------------------------------------------------------

    def _wait_for_workers(self, run: _Run) -> None:
        """Wait for every worker to leave, taking the queue back when the drain time is up."""
        while True:
            with self._lock:
                while run.group.running:
                    deadline = self._drain_deadline
                    if deadline is None or self._taken_back:
                        self._changed.wait()
                        continue
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._changed.wait(remaining)
                else:
                    return
            self._take_back()  # outside the lock: cancelling runs the futures' callbacks

    def _end_run(self, failure: BaseException) -> None:
        """A worker (or start() itself) failed: the other workers finish their item and leave."""
        with self._lock:
            if self._state in ("running", "stopping"):
                self._state = "ending"
            self._halted = True
            self._has_items.notify_all()
            run = self._run
        if run is not None:
            run.ending.set()

    def _take_back(self) -> None:
        """Hand back every queued item (the pool is closed): none of them will ever start."""
        with self._take_back_lock:
            with self._lock:
                self._taken_back = True
                self._halted = True
                jobs = list(self._queue)
                self._queue.clear()
                self._handed_back.extend(job.item for job in jobs)
                self._has_items.notify_all()
                self._changed.notify_all()
            for future in jobs:
                del future.item  # the caller of unprocessed() has it now
                future.cancel()
                # Only this moves it to CANCELLED_AND_NOTIFIED, which is what wakes
                # concurrent.futures.wait() and as_completed(); it returns False.
                future.set_running_or_notify_cancel()

    # -- the workers ----------------------------------------------------------------------------

    def _work(self, run: _Run, index: int) -> None:
        # The hot path: one lock round-trip per item, and nothing allocated but the future's
        # own state. Items are taken one at a time, not in batches, so a slow item never holds
        # up items behind it while another worker is idle, and so an item taken is an item
        # started: the drain deadline and unprocessed() apply to everything still queued.
        lock = self._lock
        queue = self._queue
        handler = self._handler
        record = self._record
        tally = self._tallies[index]
        monotonic = time.monotonic
        with running_as(self._stop_flag), running_as(run.ending):
            while True:
                with lock:
                    while not queue or self._halted:
                        if self._halted or self._closed:
                            return  # taken back, failed, or stopped and drained
                        self._idle_workers += 1
                        self._has_items.wait()
                        self._idle_workers -= 1
                        if self._waking_workers:
                            self._waking_workers -= 1
                    deadline = self._drain_deadline
                    if deadline is not None and monotonic() >= deadline:
                        self._changed.notify_all()  # the pool thread takes the rest back
                        return
                    if self._blocked_submitters:
                        self._has_space.notify()
                    future = queue.popleft()
                    item = future.item
                    del future.item  # its holder needs only the result, not the item as well
                if not future.set_running_or_notify_cancel():
                    continue  # its submitter cancelled it
                began = monotonic()
                try:
                    result = handler(item)
                except Exception as exc:  # noqa: BLE001 - the loop goes on; the future gets it
                    record.ran(monotonic() - began, failure=exc)
                    try:
                        self._report(item, exc, began)
                    except BaseException as fatal:  # noqa: BLE001 - on_error ends the pool
                        run.group.fail(fatal)
                        return
                    finally:
                        future.set_exception(exc)
                except BaseException as exc:  # noqa: BLE001 - handed on: start() re-raises it
                    record.ran(monotonic() - began, failure=exc)
                    run.group.fail(exc)
                    future.set_exception(exc)
                    return
                else:
                    # Counted before the future resolves: its waiter may read status().
                    tally.succeeded(monotonic() - began)
                    future.set_result(result)

    def _report(self, item: T, exc: Exception, now: float) -> None:
        if self._on_error is None:
            self._failures.log(
                logger,
                exc,
                now,
                f"pool {self.name!r}: the handler raised on item {describe_value(item)}",
                routine=self.name,
                event="job_failed",
                text=error_text(exc),
            )
            return
        try:
            self._on_error(item, exc)
        except Exception:
            logger.exception(
                "pool %r: on_error raised while handling %s",
                self.name,
                describe_error(exc),
                extra=fields(self.name, "on_error_raised"),
            )
