"""`QueueWorker`: works the jobs of one durable queue (Sourcegraph's `worker.NewWorker`).

One `start()` runs, each on its own thread:
- the claim loop (on `start()`'s thread): claims jobs only for handler threads that are free,
  claims again at once while some are, and otherwise waits `poll_interval`, woken early by an
  enqueue to the queue in this process (the store) or, on PostgreSQL, in any (LISTEN/NOTIFY);
- `concurrency` handler threads, `routine:<name>:handler-<n>`: each runs one claimed job at a
  time and writes how its attempt ended, conditional on the claim's token, claiming its next
  job in the same write while the queue has work (one write per job, not two);
- the heartbeat thread: one heartbeat for all running jobs every `heartbeat_interval`, the
  stalled sweep about every `stalled_after / 2`, the liveness sweep about every second (the
  jobs of workers whose process's liveness mark is free: their process is gone), and
  `max_runtime`; it keeps going after a stop until the last handler has returned, so a job
  finishing after the stop is not taken for dead;
- the listener thread: on PostgreSQL LISTEN, on a connection of its own; on SQLite the
  worker's doorbell, which other processes' enqueues to its queue ring.

With `liveness` (the default) the worker holds its process's liveness mark while it runs (one
per process and store, shared by its workers) and claims under the mark's id while the mark is
held; a claim made while it is not carries the worker's own id, and its job is judged by its
heartbeats alone.

A handler sees `routines.stopping()` turn True when the worker is stopped, when its job's cancel
was asked, when it ran past `max_runtime`, and when its claim was lost.

The data flow (the store's side is drawn in `_sqlstore.py`):

    store ──claim(free)──▶ claim loop ──jobs──▶ handler threads ──handle(job)──▶ outcome
      ▲                      ▲   ▲                  │                             │
      │   wake: enqueue here │   └─ a handler free ─┘                             │
      │   (store), NOTIFY    │                                                    │
      │   (listener), sweep  │      finish_and_claim: the outcome, and the next job
      ├──────────────────────┴───────────────────────◀───────────────────────────┘
      └── heartbeat thread: heartbeat(running claims) → gone / cancel asked → stopping();
          sweep_stalled(), sweep_dead() → jobs of dead workers back to queued; max_runtime
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from typing_extensions import final

from .._context import running_as
from .._flag import Flag, wait_any
from .._lifecycle import StatefulLifecycle
from .._logs import fields, get_logger
from .._record import RunRecord
from .._status import RoutineStatus, describe_error, describe_value, error_text
from .._threads import ThreadGroup
from .._validate import (
    check_bool,
    check_callable,
    check_int,
    check_name,
    check_optional_seconds,
    check_seconds,
)
from ._backend import Listener, Mark
from ._errors import Fail, Retry, StoreUnavailable, error_report
from ._model import (
    Claim,
    Claimer,
    Job,
    Outcome,
    check_int32,
    holder_id,
    new_claim_id,
    to_json,
)
from ._outage import Backoff, retried
from ._queue import Queue
from ._store import store_access

__all__ = ["QueueWorker"]

logger = get_logger("durable.worker")

_LISTEN_SLICE: Final = 0.25  # a listener's longest wait: it notices a stop at least this often
_LIVENESS_EVERY: Final = 1.0  # how often the marks of the workers holding jobs are tested


@final
class QueueWorker:
    """Works the jobs of `queue`: `handle(job)` for each, on `concurrency` threads.

    It is a routine: `start()` runs it until `stop()`, under a `Monitor`, a restart policy or a
    `CombinedRoutine` like any other. What `handle` does decides how the attempt ends: it
    returns (`completed`, the return value stored as `result`), raises `durable.Retry(after)`
    (`errored`, due again after `after` seconds or the backoff), raises `durable.Fail(message)`
    (`failed`, not retried), or raises another `Exception` (`errored` with the backoff, and its
    traceback as `last_error`). An errored attempt that was the job's last is `failed`. A
    handler that raises anything but `Fail` after the stop was asked hands its job back to
    `queued`, its attempt given back: a stop never spends an attempt. Handlers are at least
    once: use `job.id` and `job.attempts` to make their effects idempotent.

    A `BaseException` from a handler (not an `Exception`) ends the worker: its job is handed
    back, the other handlers finish their job, and `start()` re-raises it.

    `liveness=True` (the default): the worker holds its process's liveness mark and tests the
    marks of the workers holding its queue's jobs about once a second, so that the jobs of a
    process that died run again within about a second, not after `stalled_after`. Heartbeats
    and `stalled_after` still cover what a mark can't see (a hung or frozen process, a network
    partition). Pass False behind a pooler in transaction mode (pgbouncer), where session locks
    do not hold: its jobs are then judged by their heartbeats alone, and it tests no marks.
    """

    def __init__(
        self,
        queue: Queue,
        handle: Callable[[Job], object],
        *,
        name: str | None = None,
        concurrency: int = 1,
        poll_interval: float | timedelta = 1.0,
        heartbeat_interval: float | timedelta = 5.0,
        stalled_after: float | timedelta = 30.0,
        max_resets: int = 3,
        max_runtime: float | timedelta | None = None,
        retry_backoff: float | timedelta = 10.0,
        max_retry_backoff: float | timedelta = 3600.0,
        liveness: bool = True,
    ) -> None:
        if not isinstance(queue, Queue):
            msg = f"queue must be a durable queue (store.queue(name)), got {queue!r}"
            raise TypeError(msg)
        self.queue = queue
        handle = check_callable("handle", handle, takes=1)
        self.name: str = check_name(name) or queue.name
        concurrency = check_int("concurrency", concurrency, minimum=1)
        poll_seconds = check_seconds("poll_interval", poll_interval, allow_zero=False)
        heartbeat_seconds = check_seconds(
            "heartbeat_interval", heartbeat_interval, allow_zero=False
        )
        stalled_seconds = check_seconds("stalled_after", stalled_after, allow_zero=False)
        least = 2 * heartbeat_seconds + queue.store.timeout
        if stalled_seconds < least:
            msg = (
                "stalled_after must be at least 2 * heartbeat_interval + the store's timeout "
                f"({least:g}s), or a live job could be taken for dead; got {stalled_after!r}"
            )
            raise ValueError(msg)
        resets = check_int32("max_resets", max_resets, minimum=0)
        runtime = check_optional_seconds("max_runtime", max_runtime, allow_zero=False)
        backoff_seconds = check_seconds("retry_backoff", retry_backoff)
        max_backoff_seconds = check_seconds("max_retry_backoff", max_retry_backoff)
        if max_backoff_seconds < backoff_seconds:
            msg = (
                f"max_retry_backoff must be >= retry_backoff ({backoff_seconds:g}), "
                f"got {max_retry_backoff!r}"
            )
            raise ValueError(msg)
        liveness = check_bool("liveness", liveness)
        self._settings = _Settings(
            handle=handle,
            concurrency=concurrency,
            poll_interval=poll_seconds,
            heartbeat_interval=heartbeat_seconds,
            stalled_after=stalled_seconds,
            max_resets=resets,
            max_runtime=runtime,
            retry_backoff=backoff_seconds,
            max_retry_backoff=max_backoff_seconds,
            liveness=liveness,
        )
        self._lifecycle = StatefulLifecycle()
        self._tally = _Tally()

    def start(self) -> None:
        """Work the queue until `stop()`; return at once if `stop()` was already called."""
        self._lifecycle.run_through(self.name, self._work)

    def stop(self) -> None:
        """Claim nothing more; handlers see `routines.stopping()`. Quick, and never waits."""
        self._lifecycle.stop()

    def status(self) -> RoutineStatus:
        """Attempts that ended here (`runs`: completed, errored, failed or canceled; hand-backs
        are not runs), those that errored or failed (`failures`), and the ready jobs of the
        queue as last read (`queued`)."""
        tally = self._tally
        return tally.record.status(self.name, self._lifecycle.state, queued=tally.queued)

    def outcome_counts(self) -> dict[str, int]:
        """How the attempts of this worker ended, over all its starts: `completed`, `errored`,
        `failed`, `canceled` (as written; the store may have turned one into `canceled` or
        `failed`), `handed_back`, and `lost` (its claim was gone), and how many jobs of dead
        workers its sweeps put back (`stalled_resets`: no heartbeat, or their process gone)."""
        return self._tally.outcome_counts()

    def __repr__(self) -> str:
        return f"<QueueWorker {self.name!r} on {self.queue!r}>"

    def _work(self) -> None:
        _Run(self.name, self.queue, self._settings, self._lifecycle.flag, self._tally).run()


@dataclass(frozen=True)
class _Settings:
    """A QueueWorker's arguments, checked, as each of its runs reads them."""

    handle: Callable[[Job], object]
    concurrency: int
    poll_interval: float
    heartbeat_interval: float
    stalled_after: float
    max_resets: int
    max_runtime: float | None
    retry_backoff: float
    max_retry_backoff: float
    liveness: bool

    def retry_delay(self, attempts: int) -> float:
        """The wait before the retry that follows the `attempts`-th attempt."""
        return min(self.retry_backoff * 2.0 ** min(attempts - 1, 64), self.max_retry_backoff)


class _Tally:
    """What a QueueWorker's runs count, over all its starts: runs, outcomes, the queue's size."""

    def __init__(self) -> None:
        self.record = RunRecord()
        self.queued = 0  # ready jobs, as last read
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()

    def count(self, what: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[what] += amount

    def outcome_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class _Attempt:
    """One claimed job being worked: its flag (what its handler sees as stopping) and why."""

    __slots__ = ("claim", "deadline", "flag", "lost", "overran")

    def __init__(self, claim: Claim, deadline: float | None) -> None:
        self.claim = claim
        self.deadline = deadline  # monotonic; past it, max_runtime has passed
        self.flag = Flag()
        self.lost = False  # a heartbeat found the claim's token gone
        self.overran = False  # it ran past max_runtime


class _Run:
    """One `start()` of a QueueWorker: its threads and what they share."""

    def __init__(
        self, name: str, queue: Queue, settings: _Settings, stop: Flag, tally: _Tally
    ) -> None:
        self.name = name
        self.queue = queue
        self.access = store_access(queue.store)
        self.settings = settings
        self.stop = stop
        self.tally = tally
        self.claimer = Claimer(holder_id(), settings.stalled_after, settings.max_resets)
        self.mark: Mark | None = None  # this process's liveness mark, held while this runs
        self.marked: Claimer | None = None  # the claimer under the mark's id
        self.cond = threading.Condition(threading.Lock())
        self.jobs: deque[Claim] = deque()  # claimed, for the next free handler
        self.unsure: list[str] = []  # claims whose reply was lost (see _unsure)
        self.idle = 0  # handler threads waiting for a job
        self.handlers = settings.concurrency  # handler threads not yet ended
        # The attempts going on. A set, not by job id: after an outage longer than
        # stalled_after, the sweep may put a job back that this worker is still running, and
        # another of its handlers may claim it again beside the first.
        self.running: set[_Attempt] = set()
        self.wake = Flag()  # the claim loop looks again: an enqueue, a free handler, a sweep
        self.beat = Flag()  # the heartbeat thread looks again: an attempt with a deadline began
        self.handlers_done = Flag()  # every handler thread has ended

    def run(self) -> None:
        self.access.watch(self.queue.name, self.wake)
        self.stop.subscribe(self._notify)
        try:
            if self.settings.liveness:
                self.mark = self.access.mark()
            with ThreadGroup(
                f"worker {self.name!r}", on_error=lambda error: self.stop.set()
            ) as group:
                for number in range(1, self.settings.concurrency + 1):
                    group.start(self._handler_thread, name=f"routine:{self.name}:handler-{number}")
                group.start(self._heartbeat_thread, name=f"routine:{self.name}:heartbeat")
                # Bound before the first claim: an enqueue after that claim rings it.
                listener = self.access.listener() or self.access.doorbell(self.queue.name)
                if listener is not None:
                    group.start(self._listen_thread, listener, name=f"routine:{self.name}:listen")
                self._claim_loop()
        finally:
            if self.mark is not None:  # every handler has written its job: none is left to it
                self.mark.release()
            self.stop.unsubscribe(self._notify)
            self.access.unwatch(self.queue.name, self.wake)

    def _claimer(self) -> Claimer:
        """Who claims now: the process's mark's id while the mark is held, else this run's."""
        mark = self.mark
        if mark is None or not mark.held():
            return self.claimer
        if self.marked is None or self.marked.worker_id != mark.worker_id:
            settings = self.settings
            self.marked = Claimer(mark.worker_id, settings.stalled_after, settings.max_resets)
        return self.marked

    def _notify(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def _backoff(self) -> Backoff:
        return Backoff(logger, f"worker {self.name!r}", self.name)

    # -- the claim loop ---------------------------------------------------------------------

    def _claim_loop(self) -> None:
        settings = self.settings
        backoff = self._backoff()
        if self.mark is not None:  # its first claims under the mark, unless it takes too long
            self.mark.wait(self.access.timeout, self.stop)
        while not self.stop.is_set():
            with self.cond:
                free = self.idle - len(self.jobs)
            if free <= 0:
                wait_any((self.stop, self.wake), settings.poll_interval)
                self.wake.clear()
                continue
            self.wake.clear()  # before the claim: an enqueue after it wakes the next wait
            claim_id = new_claim_id()
            try:
                with self.access.jobs("claim") as jobs:
                    claims = jobs.claim(self.queue.name, self._claimer(), free, claim_id=claim_id)
            except StoreUnavailable as error:
                self._unsure(claim_id)
                self.stop.wait(backoff.failed(error, "claiming"))
                continue
            backoff.succeeded()
            self._settle_unsure()
            if not claims:
                try:
                    with self.access.jobs("count_ready") as jobs:
                        self.tally.queued = jobs.count_ready(self.queue.name)
                except StoreUnavailable as error:
                    backoff.failed(error, "counting the ready jobs")
            if claims:
                with self.cond:
                    # Checked under the lock a handler checks it under before it ends: while
                    # the stop is not asked, some handler will take these.
                    if not self.stop.is_set():
                        self.jobs.extend(claims)
                        self.cond.notify_all()
                        continue  # claim again at once while handlers are free
                for claim in claims:  # claimed as the stop came: they never started
                    self._hand_back(claim)
                break
            wait_any((self.stop, self.wake), settings.poll_interval)
        self._settle_unsure()

    def _unsure(self, claim_id: str) -> None:
        """A claim (or a finish-and-claim) whose reply never came: it may have committed, so
        this worker may hold jobs it does not know of. The next call that the store answers
        finds them (their tokens carry `claim_id`) and hands them back, so that neither an
        attempt nor a reset is spent on them."""
        with self.cond:
            self.unsure.append(claim_id)

    def _settle_unsure(self) -> None:
        """Hand back the jobs that claims whose reply was lost took, if any."""
        with self.cond:
            unsure, self.unsure = self.unsure, []
        for index, claim_id in enumerate(unsure):
            try:
                with self.access.jobs("claimed") as jobs:
                    found = jobs.claimed(self.queue.name, claim_id)
            except StoreUnavailable:
                with self.cond:
                    self.unsure.extend(unsure[index:])
                return
            for claim in found:
                logger.info(
                    "worker %r: job %d was claimed by a claim whose reply was lost: handing "
                    "it back",
                    self.name,
                    claim.id,
                    extra=fields(
                        self.name, "claim_recovered", queue=claim.job.queue, job_id=claim.id
                    ),
                )
                self._hand_back(claim)

    # -- the handlers ---------------------------------------------------------------------------

    def _handler_thread(self) -> None:
        try:
            with running_as(self.stop):
                claim = self._next_job()
                while claim is not None:
                    claim = self._attempt(claim) or self._next_job()
        finally:
            with self.cond:
                self.handlers -= 1
                if not self.handlers:
                    self.handlers_done.set()

    def _next_job(self) -> Claim | None:
        """The next claimed job, or None once the worker stops with no job left for it."""
        with self.cond:
            self.idle += 1
            self.wake.set()  # a handler is free: claim for it
            try:
                while not self.jobs and not self.stop.is_set():
                    self.cond.wait()
                return self.jobs.popleft() if self.jobs else None
            finally:
                self.idle -= 1

    def _attempt(self, claim: Claim) -> Claim | None:
        """Run the job and write how its attempt ended; the job this handler claimed next in
        the same write, if it did."""
        settings, tally = self.settings, self.tally
        if self.stop.is_set():  # claimed, but the stop came first: it never started
            self._hand_back(claim)
            return None
        began = time.monotonic()
        deadline = None if settings.max_runtime is None else began + settings.max_runtime
        attempt = _Attempt(claim, deadline)
        with self.cond:
            self.running.add(attempt)
        if deadline is not None:
            self.beat.set()
        fatal: BaseException | None = None
        try:
            with running_as(attempt.flag):
                outcome, error = self._outcome(claim, settings.handle)
        except BaseException as exception:  # noqa: BLE001 - re-raised below: it ends the worker
            outcome, error, fatal = Outcome.handed_back(), None, exception
        finally:
            with self.cond:
                self.running.discard(attempt)
        if attempt.overran and fatal is None:
            error = TimeoutError(
                f"max_runtime of {settings.max_runtime:g}s passed: the handler was asked to stop"
            )
            outcome = Outcome.errored(error_text(error), settings.retry_delay(claim.job.attempts))
        written, following = self._write(claim, outcome, lost=attempt.lost, claim_next=not fatal)
        tally.count(outcome.kind if written else "lost")
        if written and outcome.kind != "handed_back":  # a hand-back is not a run
            tally.record.ran(time.monotonic() - began, failure=error)
        if written and outcome.kind in ("errored", "failed"):
            self._log_failed_attempt(claim.job, outcome, error)
        if fatal is not None:
            raise fatal
        return following

    def _log_failed_attempt(self, job: Job, outcome: Outcome, error: BaseException | None) -> None:
        """One WARNING for an attempt that ended errored or failed."""
        last = outcome.kind == "failed" or job.attempts >= job.max_attempts
        shown = describe_error(error) if error is not None else outcome.error
        first_line = (shown or outcome.kind).strip().splitlines()[0] if shown else outcome.kind
        then = "failed, not retried" if last else f"retried in {outcome.delay:g}s"
        task = job.task
        logger.warning(
            "worker %r: job %d%s, attempt %d of %d: %s; %s",
            self.name,
            job.id,
            _task_label(task),
            job.attempts,
            job.max_attempts,
            first_line,
            then,
            extra=_attempt_fields(
                self.name,
                "attempt_failed" if last else "attempt_errored",
                queue=job.queue,
                job_id=job.id,
                task=task,
                attempt=job.attempts,
                error=first_line,
            ),
        )

    def _hand_back(self, claim: Claim) -> None:
        """Give back a job claimed but never started (a stop came first): its attempt unspent."""
        if self._write(claim, Outcome.handed_back(), lost=False)[0]:
            self.tally.count("handed_back")

    def _outcome(
        self, claim: Claim, handle: Callable[[Job], object]
    ) -> tuple[Outcome, BaseException | None]:
        """Run the handler: how its attempt ends, and its error if it failed (a BaseException
        goes on)."""
        job = claim.job
        try:
            result = handle(job)
        except Fail as failure:
            return Outcome.failed(failure.message), failure
        except Exception as error:  # noqa: BLE001 - how the attempt ends
            if self.stop.is_set():  # after the stop was asked: give the attempt back
                return Outcome.handed_back(), None
            after = error.after if isinstance(error, Retry) else None
            delay = self.settings.retry_delay(job.attempts) if after is None else after
            return Outcome.errored(error_report(error), delay), error
        try:
            return Outcome.completed(to_json(result)), None
        except Exception as error:  # noqa: BLE001 - any failure to encode it fails the job
            # Not only TypeError/ValueError: a dict another thread mutates raises RuntimeError.
            problem = TypeError(f"the handler's result is not JSON: {describe_value(result)}")
            logger.error(  # noqa: TRY400 - the handler is fine; its result is not
                "worker %r: job %d: %s (%s)",
                self.name,
                job.id,
                describe_error(problem),
                describe_error(error),
                extra=fields(self.name, "result_not_json", queue=job.queue, job_id=job.id),
            )
            return Outcome.failed(describe_error(problem) or ""), problem

    def _write(
        self, claim: Claim, outcome: Outcome, *, lost: bool, claim_next: bool = False
    ) -> tuple[bool, Claim | None]:
        """Write the outcome, retried while the store is unavailable, for up to stalled_after
        (then the stalled sweep puts the job back): whether it is on the row, and, with
        `claim_next` and no stop asked, the next job claimed in the same write (one write per
        job while the queue has work, instead of a finish and a claim)."""
        settings = self.settings
        if claim_next and not self.stop.is_set():
            claim_id = new_claim_id()
            try:
                with self.access.jobs("finish") as jobs:
                    written, following = jobs.finish_and_claim(
                        claim, outcome, self._claimer(), claim_id=claim_id
                    )
            except StoreUnavailable:
                # The outcome alone is retried below; the claim that went with it may have
                # taken a job: the claim loop finds it and hands it back.
                self._unsure(claim_id)
            else:
                return self._written(claim, outcome, written, lost=lost), following

        def finish() -> bool:
            with self.access.jobs("finish") as jobs:
                return jobs.finish(claim, outcome)

        doing = f"writing the outcome of job {claim.id}"
        found = retried(finish, self._backoff(), doing, within=settings.stalled_after)
        if isinstance(found, StoreUnavailable):
            logger.error(
                "worker %r: job %d: could not write its outcome (%s) within "
                "stalled_after; the stalled sweep will put it back",
                self.name,
                claim.id,
                outcome.kind,
                extra=fields(self.name, "outcome_lost", queue=claim.job.queue, job_id=claim.id),
            )
            return False, None
        return self._written(claim, outcome, found, lost=lost), None

    def _written(self, claim: Claim, outcome: Outcome, written: bool, *, lost: bool) -> bool:
        """Log a write that found the claim gone, or one that came through after all."""
        if not written:
            job = claim.job
            logger.warning(
                "worker %r: job %d%s, attempt %d: its claim was lost (reset by a stalled sweep, "
                "or deleted): its outcome (%s) was not written",
                self.name,
                job.id,
                _task_label(job.task),
                job.attempts,
                outcome.kind,
                extra=_attempt_fields(
                    self.name,
                    "claim_lost",
                    queue=job.queue,
                    job_id=job.id,
                    task=job.task,
                    attempt=job.attempts,
                    error="the claim was lost",
                ),
            )
        elif lost:
            logger.info(
                "worker %r: job %d: written after all", self.name, claim.id, extra=fields(self.name)
            )
        return written

    # -- heartbeats, the stalled sweep, max_runtime ----------------------------------------------

    def _heartbeat_thread(self) -> None:
        settings = self.settings
        next_beat = time.monotonic() + settings.heartbeat_interval
        next_sweep = time.monotonic()  # at once: jobs of a dead worker need not wait
        next_liveness = time.monotonic() if settings.liveness else float("inf")
        beats = self._backoff()
        sweeps = self._backoff()
        while not self.handlers_done.is_set():
            now = time.monotonic()
            if now >= next_liveness:
                self._sweep(sweeps, dead=True)
                next_liveness = now + _LIVENESS_EVERY
            if now >= next_sweep:
                self._sweep(sweeps)
                next_sweep = now + settings.stalled_after / 2
            if now >= next_beat:
                self._heartbeat(beats)
                next_beat = now + settings.heartbeat_interval
            wake_at = min(
                next_beat, next_sweep, next_liveness, self._check_runtimes(time.monotonic())
            )
            self.beat.clear()
            wait_any((self.handlers_done, self.beat), max(0.0, wake_at - time.monotonic()))

    def _heartbeat(self, backoff: Backoff) -> None:
        with self.cond:
            attempts = list(self.running)
        if not attempts:
            return
        try:
            with self.access.jobs("heartbeat") as jobs:
                found = jobs.heartbeat([attempt.claim for attempt in attempts])
        except StoreUnavailable as error:
            backoff.failed(error, "heartbeats")
            return
        backoff.succeeded()
        with self.cond:  # an attempt that ended meanwhile wrote its outcome: not lost
            attempts = [attempt for attempt in attempts if attempt in self.running]
        for attempt in attempts:
            if attempt.claim.id in found.gone and not attempt.lost:
                attempt.lost = True
                self._ask_to_stop(attempt, "the claim is gone (reset or deleted)", "claim_lost")
            elif attempt.claim.id in found.cancel_requested and not attempt.flag.is_set():
                self._ask_to_stop(attempt, "cancel asked", "cancel_asked", logging.INFO)

    def _ask_to_stop(
        self, attempt: _Attempt, why: str, event: str, level: int = logging.WARNING
    ) -> None:
        """Set the flag its handler sees as stopping, and log why."""
        attempt.flag.set()
        logger.log(
            level,
            "worker %r: job %d: %s: asking its handler to stop",
            self.name,
            attempt.claim.id,
            why,
            extra=fields(self.name, event, queue=self.queue.name, job_id=attempt.claim.id),
        )

    def _check_runtimes(self, now: float) -> float:
        """Ask handlers past max_runtime to stop; when the next deadline falls (or inf)."""
        earliest = float("inf")
        with self.cond:
            attempts = list(self.running)
        for attempt in attempts:
            if attempt.deadline is None or attempt.overran:
                continue
            if now >= attempt.deadline:
                attempt.overran = True
                self._ask_to_stop(attempt, "past max_runtime", "max_runtime")
            else:
                earliest = min(earliest, attempt.deadline)
        return earliest

    def _sweep(self, backoff: Backoff, *, dead: bool = False) -> None:
        """The stalled sweep, or with `dead` the liveness sweep (which writes only when some
        worker holding jobs of the queue has its mark free, and then sweeps the stalled too)."""
        try:
            with self.access.jobs("sweep") as jobs:
                name = self.queue.name
                changed = jobs.sweep_dead(name) if dead else jobs.sweep_stalled(name)
        except StoreUnavailable as error:
            backoff.failed(error, "the stalled sweep")
            return
        backoff.succeeded()
        for reset in changed:
            became = {"queued": "queued again", "failed": "failed: it died too often"}
            why = (
                "whose worker's process is gone (its liveness mark was free)"
                if reset.worker_gone
                else "whose worker died (no heartbeat within its stalled_after)"
            )
            logger.warning(
                "worker %r: the stalled sweep put back job %d%s, attempt %d, %s: %s",
                self.name,
                reset.id,
                _task_label(reset.task),
                reset.attempt,
                why,
                became.get(reset.state, "canceled, as was asked"),
                extra=_attempt_fields(
                    self.name,
                    "stalled_reset",
                    queue=reset.queue,
                    job_id=reset.id,
                    task=reset.task,
                    attempt=reset.attempt,
                    error=(
                        f"the worker's process is gone ({reset.resets} of its workers so far)"
                        if reset.worker_gone
                        else f"the worker died ({reset.resets} of its workers so far)"
                    ),
                ),
            )
        if changed:
            self.tally.count("stalled_resets", len(changed))
            self.wake.set()
            if any(reset.state == "queued" for reset in changed):  # idle workers here too
                self.access.enqueued(self.queue.name)

    # -- LISTEN/NOTIFY --------------------------------------------------------------------------

    def _listen_thread(self, listener: Listener) -> None:
        backoff = self._backoff()
        try:
            while not self.stop.is_set():
                try:
                    with self.access.using("listen") as _:
                        queues = listener.wait(_LISTEN_SLICE)
                except StoreUnavailable as error:
                    listener.close()
                    self.stop.wait(backoff.failed(error, "listening for enqueues"))
                    continue
                backoff.succeeded()
                if self.queue.name in queues:
                    self.wake.set()
        finally:
            listener.close()


def _task_label(task: str | None) -> str:
    return "" if task is None else f" (task {task!r})"


def _attempt_fields(routine: str, event: str, **attempt: object) -> dict[str, object]:
    """The `extra` of a line about one attempt: queue, job_id, task (None if the job is not a
    task call), attempt and error, each always there, for a log pipeline to rely on."""
    return {**fields(routine, event), **attempt}
