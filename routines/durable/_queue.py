"""Durable queues: `Queue`, the handle to enqueue and inspect the jobs of one queue.

A queue needs no declaring: it is the set of jobs stored under its name. Every argument is
checked before anything is written (spec/DURABLE.md, section 7).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, NamedTuple

from typing_extensions import final

from .._status import describe_error, describe_value
from .._validate import check_optional_seconds, check_seconds
from ._model import (
    FINAL_STATES,
    INT32_MAX,
    JOB_STATES,
    Job,
    JobState,
    NewJob,
    check_int32,
    check_job_id,
    check_text,
    to_json,
)

if TYPE_CHECKING:
    from ._access import StoreAccess
    from ._store import Store

__all__ = ["Queue"]


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
    ) -> int:
        """Store a job for `payload` (any JSON value) and return its id.

        It is due at once, `delay` seconds from the database's now, or at `run_at` (an aware
        datetime); higher `priority` runs first. While a job with the same `key` is queued,
        errored or processing in this queue, nothing is written and that job's id is returned:
        a key de-duplicates, it does not update a job that is already running.

        An enqueue that raised `StoreUnavailable` may have been written before the connection
        broke; retrying it with a `key` is safe, without one it may store the job twice.
        """
        options = _options(delay, run_at, priority, max_attempts, key)
        job = options.job(_encode_payload(payload))
        with self._access.jobs("enqueue") as backend:
            job_id = backend.enqueue(self.name, [job])[0]
        self._access.enqueued(self.name)
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
    ) -> list[int]:
        """`enqueue` each payload with the same options, in one transaction: all or none.

        Returns the ids in the order of `payloads`. With a `key`, the first payload makes the
        job and the others return its id.
        """
        if isinstance(payloads, (str, bytes, dict)) or not isinstance(payloads, Iterable):
            msg = f"payloads must be an iterable of payloads (a list, say), got {payloads!r}"
            raise TypeError(msg)
        options = _options(delay, run_at, priority, max_attempts, key)
        jobs = [options.job(_encode_payload(payload)) for payload in payloads]
        if not jobs:
            return []
        with self._access.jobs("enqueue_many") as backend:
            job_ids = backend.enqueue(self.name, jobs)
        self._access.enqueued(self.name)
        return job_ids

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
        if retried:  # due now, as an enqueued job: wake the idle workers here
            self._access.enqueued(self.name)
        return retried

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

    def job(self, payload: str) -> NewJob:
        return NewJob(
            payload=payload,
            priority=self.priority,
            max_attempts=self.max_attempts,
            key=self.key,
            run_at=self.run_at,
            delay=self.delay,
        )


def _options(
    delay: object, run_at: object, priority: object, max_attempts: object, key: object
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
    )


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
    if isinstance(states, (str, bytes)) or not isinstance(states, Iterable):
        msg = f"states must be a tuple of final job states, got {states!r}"
        raise TypeError(msg)
    chosen: tuple[JobState, ...] = tuple(states)
    if not chosen:
        msg = f"states must name at least one final state, got {states!r}"
        raise ValueError(msg)
    for state in chosen:
        if not isinstance(state, str):
            msg = f"states must hold job states (str), got {state!r} in {states!r}"
            raise TypeError(msg)
        if state not in FINAL_STATES:
            known = "a state that is not final" if state in JOB_STATES else "not a job state"
            msg = (
                "purge deletes only final jobs: states may hold 'completed', 'failed' and "
                f"'canceled', got {state!r} ({known}) in {states!r}"
            )
            raise ValueError(msg)
    return chosen
