"""Durable queues: `Queue`, the handle to enqueue and inspect the jobs of one queue.

A queue needs no declaring: it is the set of jobs stored under its name. Every argument is
checked before anything is written (spec/DURABLE.md, section 7). An enqueue may be written in the
app's own transaction (`connection=`, spec/OPERATIONS.md section 4): the job then exists when
the app commits, and never if it rolls back.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from typing_extensions import final

from .._status import describe_error, describe_value
from .._validate import check_int, check_optional_seconds, check_seconds
from ._model import (
    FINAL_STATES,
    INT32_MAX,
    JOB_STATES,
    LIVE_STATES,
    RETRYABLE_STATES,
    Job,
    JobState,
    NewJob,
    QueueLimits,
    check_int32,
    check_job_id,
    check_text,
    task_of,
    to_json,
)

if TYPE_CHECKING:
    import sqlite3
    from typing import TypeAlias

    import psycopg

    from ._access import StoreAccess
    from ._store import Store

    # An app's own connection to the store's database, to enqueue in its transaction.
    AppConnection: TypeAlias = "psycopg.Connection[Any] | sqlite3.Connection"

__all__ = ["MAX_PAGE", "Queue"]

MAX_PAGE: Final = 1000  # the most jobs one call of `Queue.jobs` lists: page on with `before`


@final
class Queue:
    """A cheap handle on the jobs of one queue of a store; get one with `store.queue(name)`.

    Every method may raise `StoreUnavailable` (the database did not answer within the store's
    `timeout`) or `StoreError`.
    """

    __slots__ = ("_access", "name", "store")

    def __init__(self, store: Store, access: StoreAccess, name: str) -> None:
        self.store = store
        self.name = name
        self._access = access

    def __repr__(self) -> str:
        return f"Queue({self.name!r}, store={self.store!r})"

    def enqueue(
        self,
        payload: object,
        *,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        priority: int = 0,
        max_attempts: int = 5,
        key: str | None = None,
        group: str | None = None,
        connection: AppConnection | None = None,
    ) -> int:
        """Store a job for `payload` (any JSON value) and return its id.

        It is due at once, `delay` seconds from the database's now, or at `run_at` (an aware
        datetime); higher `priority` runs first. While a job with the same `key` is queued,
        errored or processing in this queue, nothing is written and that job's id is returned:
        a key de-duplicates, it does not update a job that is already running. `group` (say
        `"customer:42"`) puts the job in a group, which the queue's `group_running` limits.

        With `connection`, the app's own connection to the store's database (a psycopg 3
        `Connection`, or a `sqlite3.Connection` to the store's file), the job is written in
        that connection's current transaction, which stays the app's: the store never commits,
        rolls back or closes it. The job exists, and wakes the workers of other processes, when
        the app commits; if it rolls back, the job never existed. A connection in autocommit
        mode commits the job at once. A connection of another kind, closed, in a failed
        transaction or to another database is a `TypeError`/`ValueError`, and nothing is
        written. See docs/durable.md for Django and SQLAlchemy.

        An enqueue that raised `StoreUnavailable` may have been written before the connection
        broke; retrying it with a `key` is safe, without one it may store the job twice.
        """
        options = _options(delay, run_at, priority, max_attempts, key, group)
        [job] = options.jobs([payload])
        with self._access.jobs("enqueue") as backend:
            job_id = backend.enqueue(self.name, [job], connection=connection)[0]
        self._wake_workers()
        return job_id

    def enqueue_many(
        self,
        payloads: Iterable[object],
        *,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        priority: int = 0,
        max_attempts: int = 5,
        key: str | None = None,
        group: str | None = None,
        connection: AppConnection | None = None,
    ) -> list[int]:
        """`enqueue` each payload with the same options, in one transaction: all or none.

        Returns the ids in the order of `payloads`. With a `key`, the first payload makes the
        job and the others return its id. With `connection`, in that connection's transaction
        (see `enqueue`).
        """
        if isinstance(payloads, (str, bytes, dict)) or not isinstance(payloads, Iterable):
            msg = f"payloads must be an iterable of payloads (a list, say), got {payloads!r}"
            raise TypeError(msg)
        options = _options(delay, run_at, priority, max_attempts, key, group)
        jobs = options.jobs(payloads)
        if not jobs and connection is None:
            return []
        with self._access.jobs("enqueue_many") as backend:  # a connection is checked, even so
            job_ids = backend.enqueue(self.name, jobs, connection=connection)
        if job_ids:
            self._wake_workers()
        return job_ids

    def _wake_workers(self) -> None:
        """Wake this process's workers of the queue. After an enqueue in the app's transaction
        too, though the job may not be committed yet: a wake-up that finds nothing costs one
        claim, one that is missed costs a whole `poll_interval`, and the store can't know when
        the app commits. On PostgreSQL the NOTIFY wakes them again at the commit; on SQLite
        their claim waits for the app's write lock, so it sees the job once the app commits
        (within the store's timeout; past it, the next poll does)."""
        self._access.enqueued(self.name)

    def get(self, job_id: int) -> Job | None:
        """The job `job_id` of this queue, or None if there is none (or it was purged)."""
        job_id = check_job_id(job_id)
        with self._access.jobs("get") as backend:
            return backend.get(self.name, job_id)

    def cancel(self, job_id: int) -> bool:
        """Cancel a job; False if it is already final (or not in this queue).

        A queued or errored job is `canceled` at once. For a processing job this asks its
        handler to stop (its `routines.stopping()` turns True at the next heartbeat); the job
        ends `canceled` when the handler ends, whatever it returns.
        """
        job_id = check_job_id(job_id)
        with self._access.jobs("cancel") as backend:
            return backend.cancel(self.name, job_id)

    def retry(self, job_id: int) -> bool:
        """Put a failed or canceled job back to `queued`, due now, with its attempts from 0.

        False if the job is not failed or canceled, or if another job with its key is live.
        """
        job_id = check_job_id(job_id)
        with self._access.jobs("retry") as backend:
            retried = backend.retry(self.name, job_id)
        if retried:
            self._access.wake(self.name)
        return retried

    def jobs(
        self,
        *,
        state: JobState | Iterable[JobState] | None = None,
        task: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> list[Job]:
        """Up to `limit` (at most 1,000) jobs of this queue, newest first (highest id first).

        `state`: one job state or several (None: every state); `task`: only jobs whose payload
        calls that task (`{"task": name, "args": [...], "kwargs": {...}}`); `before`: only jobs
        with a lower id, for the next page (pass the id of the last job of this one). A page
        costs the same deep in a queue of millions as at its top: it is read from an index.
        Pages are stable while jobs are added: new jobs have higher ids, so no job is seen
        twice or skipped, though one that changes state between two pages may be.
        """
        states = JOB_STATES if state is None else _check_states("state", state, JOB_STATES)
        task = None if task is None else check_text("task", task)
        limit = check_int("limit", limit, minimum=1)
        if limit > MAX_PAGE:
            msg = f"limit must be at most {MAX_PAGE}, got {limit!r}: page on with before="
            raise ValueError(msg)
        before = None if before is None else check_job_id(before, "before")
        with self._access.jobs("jobs") as backend:
            return backend.list_jobs(self.name, states, task, limit, before)

    def retry_all(self, *, state: JobState | Iterable[JobState] = "failed") -> int:
        """`retry` every job of this queue in `state` (`"failed"`, `"canceled"` or both), in
        batches of a few hundred, each its own short write; returns how many went back to
        `queued`. A job whose key a live job holds stays as it is (as `retry` leaves it); of
        several failed jobs of one key, the newest is put back."""
        states = _check_states(
            "state", state, RETRYABLE_STATES, doing="retry_all puts back failed or canceled jobs"
        )
        with self._access.jobs("retry_all") as backend:
            retried = backend.retry_all(self.name, states)
        if retried:
            self._access.wake(self.name)
        return retried

    def cancel_all(self, *, state: JobState | Iterable[JobState] = ("queued", "errored")) -> int:
        """`cancel` every job of this queue in `state` (`"queued"`, `"errored"`,
        `"processing"`: states of jobs that have not ended), in batches, each its own short
        write; returns how many were canceled, or asked to stop (processing jobs)."""
        states = _check_states(
            "state", state, LIVE_STATES, doing="cancel_all cancels jobs that have not ended"
        )
        with self._access.jobs("cancel_all") as backend:
            return backend.cancel_all(self.name, states)

    def run_now(self, job_id: int) -> bool:
        """Make a queued or errored job (one waiting for its retry, say) due at once, its
        attempts as they are; a job that is due already keeps its place. False if the job is
        not waiting (or not in this queue). Workers still take jobs by priority first."""
        job_id = check_job_id(job_id)
        with self._access.jobs("run_now") as backend:
            made_due = backend.run_now(self.name, job_id)
        if made_due:
            self._access.wake(self.name)
        return made_due

    def pause(self) -> None:
        """Stop every worker of the fleet from claiming jobs of this queue, from their next
        claim on (PostgreSQL: at once, announced; SQLite: within their `poll_interval`).
        Running jobs finish; `enqueue` still stores jobs. Stored: it holds until `resume()`,
        across restarts. Pausing a paused queue does nothing more."""
        with self._access.jobs("pause") as backend:
            backend.pause(self.name)
        self._access.wake(self.name)  # so that its workers here see it and say so

    def resume(self) -> None:
        """Undo `pause()`: the workers claim again, woken at once (SQLite, other processes:
        within their `poll_interval`). Resuming a queue that is not paused does nothing."""
        with self._access.jobs("resume") as backend:
            backend.resume(self.name)
        self._access.wake(self.name)

    @property
    def paused(self) -> bool:
        """Whether the queue is paused (read from the store)."""
        with self._access.jobs("paused") as backend:
            return backend.paused(self.name)

    def set_limits(
        self,
        *,
        max_running: int | None = None,
        group_running: int | None = None,
        rate: tuple[int, float | timedelta] | None = None,
    ) -> None:
        """Set the queue's flow control, fleet-wide: every limit at once, an omitted one (None)
        removed. `max_running`: at most this many of its jobs processing at once, across every
        worker of every process; `group_running`: at most this many of the jobs of one `group`
        (jobs without a group are not counted); `rate=(count, per_seconds)`: at most `count`
        jobs started in any window of `per_seconds`, by the database's clock.

        Enforced in the claim, on the database: a job a limit holds back stays `queued` and is
        claimed as soon as the limit allows. Stored with the queue: it holds until changed,
        across restarts. Workers claim under the new limits from their next claim on. A worker
        of a limited queue claims only for its free handlers (no `prefetch`). See
        docs/durable.md, "Flow control", for what a limit costs per claim."""
        limits = QueueLimits(
            max_running=_check_limit("max_running", max_running),
            group_running=_check_limit("group_running", group_running),
            rate=_check_rate(rate),
        )
        with self._access.jobs("set_limits") as backend:
            backend.set_limits(self.name, limits)
        self._access.wake(self.name)

    @property
    def limits(self) -> QueueLimits:
        """The queue's limits (read from the store); `QueueLimits()` when it has none."""
        with self._access.jobs("limits") as backend:
            return backend.limits(self.name)

    def counts(self) -> dict[JobState, int]:
        """How many jobs of this queue are in each state, every state included."""
        with self._access.jobs("counts") as backend:
            return backend.counts(self.name)

    def oldest_ready_age(self) -> float | None:
        """Seconds since the longest-waiting ready job (queued or errored, due) became due, on
        the database's clock; None when no job is ready. How far behind the workers are."""
        with self._access.jobs("oldest_ready_age") as backend:
            return backend.oldest_ready_age(self.name)

    def purge(
        self,
        *,
        older_than: float | timedelta,
        states: Iterable[JobState] = FINAL_STATES,
    ) -> int:
        """Delete the jobs in `states` (final states only) finished more than `older_than`
        seconds ago by the database's clock; return how many were deleted."""
        seconds = check_seconds("older_than", older_than)
        chosen = _check_purge_states(states)
        with self._access.jobs("purge") as backend:
            return backend.purge(self.name, older_than=seconds, states=chosen)


class _Options(NamedTuple):
    """The checked options of an enqueue, shared by every payload of an `enqueue_many`."""

    delay: float
    run_at: datetime | None
    priority: int
    max_attempts: int
    key: str | None
    group: str | None

    def jobs(self, payloads: Iterable[object]) -> list[NewJob]:
        """A job of these options for each payload. One comprehension, its fields positional:
        a call and eight keywords a job made building 10,000 of them 12 ms instead of 9.8."""
        priority, max_attempts, key, run_at, delay, group = (
            self.priority,
            self.max_attempts,
            self.key,
            self.run_at,
            self.delay,
            self.group,
        )
        return [
            # NewJob(payload, priority, max_attempts, key, run_at, delay, task, group)
            NewJob(
                _encode_payload(payload),
                priority,
                max_attempts,
                key,
                run_at,
                delay,
                task_of(payload),
                group,
            )
            for payload in payloads
        ]


def _options(
    delay: object,
    run_at: object,
    priority: object,
    max_attempts: object,
    key: object,
    group: object,
) -> _Options:
    seconds = check_optional_seconds("delay", delay)
    if run_at is not None:
        if not isinstance(run_at, datetime):
            msg = f"run_at must be an aware datetime or None, got {run_at!r}"
            raise TypeError(msg)
        if run_at.utcoffset() is None:
            msg = f"run_at must be an aware datetime (with a tzinfo such as UTC), got {run_at!r}"
            raise ValueError(msg)
        if seconds is not None:
            msg = f"pass delay or run_at, not both: got delay={delay!r} and run_at={run_at!r}"
            raise ValueError(msg)
        try:
            run_at.astimezone(timezone.utc)
        except OverflowError:
            msg = f"run_at must be within the years 1 to 9999 in UTC, got {run_at!r}"
            raise ValueError(msg) from None
    priority = check_int32("priority", priority, minimum=-INT32_MAX - 1)
    max_attempts = check_int32("max_attempts", max_attempts, minimum=1)
    return _Options(
        delay=seconds or 0.0,
        run_at=run_at,
        priority=priority,
        max_attempts=max_attempts,
        key=None if key is None else check_text("key", key),
        group=None if group is None else check_text("group", group),
    )


def _check_limit(arg: str, value: object) -> int | None:
    if value is None:
        return None
    return check_int32(arg, value, minimum=1)


def _check_rate(rate: object) -> tuple[int, float] | None:
    if rate is None:
        return None
    if not isinstance(rate, tuple) or len(rate) != 2:
        msg = f"rate must be a (count, per_seconds) tuple or None, got {describe_value(rate)}"
        raise TypeError(msg)
    count = check_int32("rate count", rate[0], minimum=1)
    per = check_seconds("rate per_seconds", rate[1], allow_zero=False)
    return count, per


def _encode_payload(payload: object) -> str:
    try:
        return to_json(payload)
    except (TypeError, ValueError, RecursionError) as error:
        msg = (
            "payload must be a JSON value (dicts with str keys, lists, str, int, finite float, "
            f"bool, None), got {describe_value(payload)}: {describe_error(error)}"
        )
        raise TypeError(msg) from None


def _check_purge_states(states: object) -> tuple[JobState, ...]:
    if isinstance(states, str):
        msg = f"states must be a tuple of final job states, got {states!r}"
        raise TypeError(msg)
    return _check_states("states", states, FINAL_STATES, doing="purge deletes only final jobs")


def _check_states(
    arg: str, value: object, allowed: tuple[JobState, ...], *, doing: str = ""
) -> tuple[JobState, ...]:
    """One job state of `allowed`, or an iterable of at least one (duplicates dropped)."""
    if isinstance(value, str):
        chosen: tuple[object, ...] = (value,)
    elif isinstance(value, (bytes, dict)) or not isinstance(value, Iterable):
        msg = f"{arg} must be a job state or an iterable of job states, got {value!r}"
        raise TypeError(msg)
    else:
        chosen = tuple(value)
    if not chosen:
        msg = f"{arg} must name at least one state, got {value!r}"
        raise ValueError(msg)
    for state in chosen:
        if not isinstance(state, str):
            msg = f"{arg} must hold job states (str), got {state!r} in {value!r}"
            raise TypeError(msg)
        if state not in allowed:
            names = ", ".join(repr(name) for name in allowed)
            known = "not one of those" if state in JOB_STATES else "not a job state"
            why = f"{doing}: " if doing else ""
            msg = f"{why}{arg} may hold {names}, got {state!r} ({known}) in {value!r}"
            raise ValueError(msg)
    return tuple(state for state in allowed if state in chosen)
