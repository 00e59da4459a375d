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
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
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
from ._errors import Fail, Retry, Snooze, StoreUnavailable, error_report
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
from ._outage import Backoff
from ._queue import Queue
from ._store import store_access

__all__ = ["QueueWorker"]

logger = get_logger("durable.worker")

_LISTEN_SLICE: Final = 0.25  # a listener's longest wait: it notices a stop at least this often
# Without `prefetch`, a worker claims ahead what its handlers finish during one round (measured,
# so long jobs are not held back from other workers), at most this many per handler.
_PREFETCH_PER_HANDLER: Final = 8
_SMOOTHING: Final = 0.2  # the weight of the latest in the running means of durations
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
        prefetch: int | None = None,
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
        adaptive = prefetch is None
        prefetch = (
            _PREFETCH_PER_HANDLER * concurrency
            if prefetch is None
            else check_int32("prefetch", prefetch, minimum=0)
        )
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
            prefetch=prefetch,
            adaptive=adaptive,
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
        and snoozes are not runs), those that errored or failed (`failures`), the ready jobs of
        the queue as last read (`queued`), and whether the queue was paused then (`paused`; the
        state stays `"running"`) or had limits (`limited`)."""
        tally = self._tally
        status = tally.record.status(self.name, self._lifecycle.state, queued=tally.queued)
        return replace(status, paused=tally.paused, limited=tally.limited)

    def outcome_counts(self) -> dict[str, int]:
        """How the attempts of this worker ended, over all its starts: `completed`, `errored`,
        `failed`, `canceled` (as written; the store may have turned one into `canceled` or
        `failed`), `snoozed`, `handed_back`, and `lost` (its claim was gone), and how many jobs
        of dead workers its sweeps put back (`stalled_resets`: no heartbeat, or their process
        gone)."""
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
    prefetch: int
    adaptive: bool  # prefetch not given: claim ahead what the handlers reach within a round
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
        self.paused = False  # whether the queue was paused, as last read
        self.limited = False  # whether the queue had limits, as last read
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


class _Done:
    """An attempt that ended, or a claimed job given back unstarted, waiting for the exchange
    loop to write its outcome."""

    __slots__ = ("began", "claim", "error", "lost", "outcome", "since", "tried")

    def __init__(
        self,
        claim: Claim,
        outcome: Outcome,
        *,
        error: BaseException | None = None,
        began: float | None = None,
        lost: bool = False,
    ) -> None:
        self.claim = claim
        self.outcome = outcome
        self.error = error
        self.began = began  # monotonic, when its handler started it; None: it never ran
        self.lost = lost  # a heartbeat found its claim gone while it ran
        self.since = time.monotonic()  # when it ended: it is written within stalled_after
        self.tried = False  # a write of it was tried and may have committed


class _Run:
    """One `start()` of a QueueWorker: its threads and what they share.

    The exchange loop (on start()'s thread) is the only one that writes claims and outcomes:
    each round it writes, in one batch, the starts and the outcomes of everything that began or
    ended since its last round, and claims ahead for every free handler plus `prefetch`. A
    handler never waits for a round trip of its own: it takes its next job from `ready` the
    moment it has handed its outcome to the loop.
    """

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
        self.ready: deque[Claim] = deque()  # claimed ahead, for the next free handler
        self.started: list[Claim] = []  # started by a handler since the last round
        self.done: list[_Done] = []  # outcomes to write
        self.unsure: list[str] = []  # claims whose reply was lost (see _unsure)
        self.handlers = settings.concurrency  # handler threads not yet ended
        # The attempts going on. A set, not by job id: after an outage longer than
        # stalled_after, the sweep may put a job back that this worker is still running, and
        # another of its handlers may claim it again beside the first.
        self.running: set[_Attempt] = set()
        # Running means of how long a round of the exchange loop and a job take (None: none
        # measured yet): how many jobs to claim ahead.
        self.round_seconds: float | None = None
        self.job_seconds: float | None = None
        self.wake = Flag()  # the exchange loop looks again: work to write, a handler free
        self.poke = Flag()  # ...and the queue may have jobs: an enqueue, a resume, a sweep
        self.beat = Flag()  # the heartbeat thread looks again: an attempt with a deadline began
        self.handlers_done = Flag()  # every handler thread has ended

    def run(self) -> None:
        self.access.watch(self.queue.name, self.poke)
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
                self._exchange_loop()
        finally:
            if self.mark is not None:  # every handler has written its job: none is left to it
                self.mark.release()
            self.stop.unsubscribe(self._notify)
            self.access.unwatch(self.queue.name, self.poke)

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
        self.wake.set()

    def _backoff(self) -> Backoff:
        return Backoff(logger, f"worker {self.name!r}", self.name)

    # -- the exchange loop ----------------------------------------------------------------------

    def _exchange_loop(self) -> None:
        settings = self.settings
        backoff = self._backoff()
        if self.mark is not None:  # its first claims under the mark, unless it takes too long
            self.mark.wait(self.access.timeout, self.stop)
        more = True  # the last claim was full: the queue may have more at once
        next_poll = 0.0  # monotonic, when an idle queue is looked at again
        while True:
            self.wake.clear()  # before the round: anything after it wakes the next wait
            poked = self.poke.is_set()  # the queue changed (an enqueue, a pause, a resume)
            if poked:
                self.poke.clear()
                more = True
            stopping = self.stop.is_set()
            with self.cond:
                if stopping:  # claimed ahead, never started: given back unspent
                    self.done += [_Done(claim, Outcome.handed_back()) for claim in self.ready]
                    self.ready.clear()
                started, self.started = self.started, []
                done, self.done = self.done, []
                free = settings.concurrency + self._ahead() - len(self.ready) - len(self.running)
            due = more or time.monotonic() >= next_poll
            limit = free if free > 0 and due and not stopping else 0
            limited = self.tally.limited
            # A round when there is something to write or to claim, or when the queue changed
            # while jobs wait claimed ahead (was it paused?).
            with self.cond:
                holding = bool(self.ready)
            if not (started or done or limit or (poked and holding and not stopping)):
                if stopping and self.handlers_done.is_set():
                    break
                self._settle_unsure()
                # Until something is to be written or a handler is free (the wake), or an idle
                # queue is due to be looked at again.
                idle = not more and not stopping and free > 0
                until = next_poll - time.monotonic() if idle else settings.poll_interval
                wait_any((self.wake, self.poke), max(0.0, until))
                continue
            claim_id = new_claim_id() if limit else None
            began = time.monotonic()
            try:
                with self.access.jobs("exchange") as jobs:
                    written, claims, paused = jobs.exchange(
                        self.queue.name,
                        self._claimer(),
                        started=started,
                        outcomes=[(d.claim, d.outcome, d.tried) for d in done],
                        limit=limit,
                        claim_id=claim_id,
                        check_paused=holding and not limit,
                        limited=limited,
                    )
            except StoreUnavailable as error:
                self._not_written(started, done, claim_id)
                self.stop.wait(backoff.failed(error, "writing outcomes and claiming"))
                continue
            backoff.succeeded()
            self.round_seconds = _mean(self.round_seconds, time.monotonic() - began)
            for each, on_row in zip(done, written, strict=True):
                self._written(each, on_row)
            if limited and any(written):  # a job that ended may let one held back start
                self._announce(backoff)
            if paused:
                if not self.tally.paused:  # it just learned: how many wait, for its status
                    self._read_backlog(backoff, found=0)
                self._give_back_ahead()
            if limit:
                # Full: there may be more at once. Limited and not empty: the next claim may
                # find more room (a group that just got busy is skipped then).
                more = len(claims) == limit or (limited and bool(claims))
                if not more:
                    next_poll = time.monotonic() + settings.poll_interval
                    opens_in = self._read_backlog(backoff, found=len(claims))
                    if self.tally.paused:  # the claim took nothing: paused, it said
                        self._give_back_ahead()
                    elif self.tally.limited != limited:  # limits set or gone: claim as they say
                        more = True
                    elif opens_in is not None:  # the rate's window opens before the next poll
                        next_poll = min(next_poll, time.monotonic() + opens_in)
                if claims:
                    self.tally.paused = False
                    with self.cond:
                        self.ready.extend(claims)
                        self.cond.notify_all()
            if self.unsure:
                self._settle_unsure()
        self._settle_unsure()

    def _ahead(self) -> int:
        """How many jobs to hold claimed ahead of the handlers: `prefetch` if it was given;
        else about as many as they finish during one round (so that none waits for a round to
        end), at most `prefetch`, and as many as there are handlers until both durations are
        measured."""
        settings = self.settings
        if self.tally.limited:  # a limit counts jobs claimed ahead: claim for free handlers only
            return 0
        if not settings.adaptive:
            return settings.prefetch
        round_seconds, job_seconds = self.round_seconds, self.job_seconds
        if round_seconds is None or job_seconds is None:
            return min(settings.prefetch, settings.concurrency)
        finished = settings.concurrency * round_seconds / max(job_seconds, 1e-6)
        return min(settings.prefetch, math.ceil(finished))

    def _give_back_ahead(self) -> None:
        """The queue is paused: the jobs claimed ahead go back unstarted, for after the resume
        (running ones finish)."""
        self.tally.paused = True
        with self.cond:
            ahead = list(self.ready)
            self.ready.clear()
            self.done += [_Done(claim, Outcome.handed_back()) for claim in ahead]
        if ahead:
            self.wake.set()

    def _read_backlog(self, backoff: Backoff, *, found: int) -> float | None:
        """The queue's ready jobs, pause and limits, read when a claim found fewer than it
        asked for (and found none, or the queue is limited); the seconds until its rate allows
        a start, if it allows none now."""
        if found and not self.tally.limited:
            self.tally.queued = 0
            return None
        try:
            with self.access.jobs("backlog") as jobs:
                backlog = jobs.backlog(self.queue.name)
        except StoreUnavailable as error:
            backoff.failed(error, "reading the backlog")
            return None
        tally = self.tally
        tally.queued, tally.paused, tally.limited = backlog.ready, backlog.paused, backlog.limited
        return backlog.opens_in

    def _announce(self, backoff: Backoff) -> None:
        """Jobs of this limited queue ended: wake its workers, here and in other processes, so
        that a job a limit held back starts now, not at their next poll."""
        self.access.wake(self.queue.name)
        try:
            with self.access.jobs("announce") as jobs:
                jobs.announce(self.queue.name)
        except StoreUnavailable as error:
            backoff.failed(error, "announcing ended jobs")

    def _not_written(self, started: list[Claim], done: list[_Done], claim_id: str | None) -> None:
        """A round the store did not answer: its starts and outcomes go in the next one (an
        outcome not written within stalled_after is given up: the stalled sweep puts its job
        back), and its claim, which may have committed, is looked for once the store answers."""
        if claim_id is not None:
            self._unsure(claim_id)
        kept = []
        now = time.monotonic()
        for each in done:
            each.tried = True
            if now - each.since < self.settings.stalled_after:
                kept.append(each)
                continue
            logger.error(
                "worker %r: job %d: could not write its outcome (%s) within "
                "stalled_after; the stalled sweep will put it back",
                self.name,
                each.claim.id,
                each.outcome.kind,
                extra=fields(
                    self.name, "outcome_lost", queue=each.claim.job.queue, job_id=each.claim.id
                ),
            )
        with self.cond:
            self.started[:0] = started
            self.done[:0] = kept

    def _unsure(self, claim_id: str) -> None:
        """A claim whose reply never came: it may have committed, so this worker may hold jobs
        it does not know of. The next round that the store answers finds them (their tokens
        carry `claim_id`) and hands them back, so that neither an attempt nor a reset is spent
        on them."""
        with self.cond:
            self.unsure.append(claim_id)

    def _settle_unsure(self) -> None:
        """Find the jobs that claims whose reply was lost took, if any, to hand them back."""
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
            with self.cond:
                self.done += [_Done(claim, Outcome.handed_back()) for claim in found]
            if found:
                self.wake.set()

    def _written(self, done: _Done, on_row: bool) -> None:
        """Count, and log, an outcome the store answered about."""
        outcome, claim, tally = done.outcome, done.claim, self.tally
        tally.count(outcome.kind if on_row else "lost")
        if not on_row:
            if done.began is not None:  # one that ran: its claim was lost meanwhile
                self._log_lost(claim, outcome)
            return
        if done.lost:
            logger.info(
                "worker %r: job %d: written after all", self.name, claim.id, extra=fields(self.name)
            )
        if done.began is not None and outcome.kind not in ("handed_back", "snoozed"):
            tally.record.ran(time.monotonic() - done.began, failure=done.error)  # no hand-back
        if outcome.kind == "snoozed":
            logger.debug(
                "worker %r: job %d snoozed for %gs",
                self.name,
                claim.id,
                outcome.delay,
                extra=fields(self.name, "snoozed", queue=claim.job.queue, job_id=claim.id),
            )
        if outcome.kind in ("errored", "failed"):
            self._log_failed_attempt(claim.job, outcome, done.error)

    # -- the handlers ---------------------------------------------------------------------------

    def _handler_thread(self) -> None:
        try:
            with running_as(self.stop):
                while (claim := self._next_job()) is not None:
                    self._attempt(claim)
        finally:
            with self.cond:
                self.handlers -= 1
                if not self.handlers:
                    self.handlers_done.set()
            self.wake.set()

    def _next_job(self) -> Claim | None:
        """The next claimed job, or None once the worker stops."""
        with self.cond:
            while not self.ready and not self.stop.is_set():
                self.cond.wait()
            if self.stop.is_set():  # what is left is given back by the exchange loop
                return None
            claim = self.ready.popleft()
            job = claim.job
            if job.started_at is None:  # claimed ahead: this is where its attempt starts
                job = replace(job, attempts=job.attempts + 1, started_at=job.heartbeat_at)
                claim = replace(claim, job=job)
                self.started.append(claim)  # its start is written in the next round
            self.wake.set()  # a start to write, and room to claim ahead again
            return claim

    def _attempt(self, claim: Claim) -> None:
        """Run the job and hand its outcome to the exchange loop."""
        settings = self.settings
        began = time.monotonic()
        deadline = None if settings.max_runtime is None else began + settings.max_runtime
        job = claim.job
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
        if attempt.overran and fatal is None:
            error = TimeoutError(
                f"max_runtime of {settings.max_runtime:g}s passed: the handler was asked to stop"
            )
            outcome = Outcome.errored(error_text(error), settings.retry_delay(job.attempts))
        self.job_seconds = _mean(self.job_seconds, time.monotonic() - began)
        with self.cond:
            self.running.discard(attempt)
            self.done.append(_Done(claim, outcome, error=error, began=began, lost=attempt.lost))
        self.wake.set()
        if fatal is not None:
            raise fatal

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
        except Snooze as snooze:  # back to queued, the attempt given back: not a failure
            return Outcome.snoozed(snooze.after), None
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

    def _log_lost(self, claim: Claim, outcome: Outcome) -> None:
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
        """Keep alive every job this worker holds: running, claimed ahead, and ended with its
        outcome not yet written."""
        with self.cond:
            attempts = list(self.running)
            ahead = list(self.ready)
            held = [a.claim for a in attempts] + ahead + [d.claim for d in self.done]
        if not held:
            return
        try:
            with self.access.jobs("heartbeat") as jobs:
                found = jobs.heartbeat(held)
        except StoreUnavailable as error:
            backoff.failed(error, "heartbeats")
            return
        backoff.succeeded()
        self._drop_ahead(ahead, found.gone, found.cancel_requested)
        with self.cond:  # an attempt that ended meanwhile wrote its outcome: not lost
            attempts = [attempt for attempt in attempts if attempt in self.running]
        for attempt in attempts:
            if attempt.claim.id in found.gone and not attempt.lost:
                attempt.lost = True
                self._ask_to_stop(attempt, "the claim is gone (reset or deleted)", "claim_lost")
            elif attempt.claim.id in found.cancel_requested and not attempt.flag.is_set():
                self._ask_to_stop(attempt, "cancel asked", "cancel_asked", logging.INFO)

    def _drop_ahead(
        self, ahead: list[Claim], gone: frozenset[int], canceled: frozenset[int]
    ) -> None:
        """Jobs claimed ahead that must not start: their claim is gone (nothing to write), or
        their cancel was asked (they end canceled, never started)."""
        dropped = {claim.token for claim in ahead if claim.id in gone or claim.id in canceled}
        if not dropped:
            return
        with self.cond:
            kept = [claim for claim in self.ready if claim.token not in dropped]
            if len(kept) == len(self.ready):
                return
            taken = [claim for claim in self.ready if claim.token in dropped]
            self.ready = deque(kept)
            self.done += [
                _Done(claim, Outcome.canceled()) for claim in taken if claim.id in canceled
            ]
        self.wake.set()

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
            self.poke.set()
            self.access.enqueued(self.queue.name)  # idle workers here too: a job or a slot

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
                    self.poke.set()
        finally:
            listener.close()


def _task_label(task: str | None) -> str:
    return "" if task is None else f" (task {task!r})"


def _attempt_fields(routine: str, event: str, **attempt: object) -> dict[str, object]:
    """The `extra` of a line about one attempt: queue, job_id, task (None if the job is not a
    task call), attempt and error, each always there, for a log pipeline to rely on."""
    return {**fields(routine, event), **attempt}


def _mean(mean: float | None, value: float) -> float:
    """The running mean `mean` (None: no value yet) with `value` added."""
    return value if mean is None else mean + _SMOOTHING * (value - mean)
