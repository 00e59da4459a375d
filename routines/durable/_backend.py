"""The one interface between the durable tier and a database, and the data that crosses it.

The store, its queues and the queue worker speak only to `Backend`; each backend module
(`_sqlite.py`, `_postgres.py`) holds its SQL, but for the rules both dialects spell alike, in
`_sql.py`. A backend's arguments are already checked (the public classes check them);
its driver's errors go up unchanged and `StoreAccess` turns them into
`StoreError`/`StoreUnavailable` as `classify` says.

Every time a backend stores or compares comes from the database's clock. Every write about a
claimed job is conditional on the claim's token: a write whose token is gone (the job was reset
by the stalled sweep, handed to another worker, or deleted) changes nothing and returns False.
The token stays on the row a worker's own outcome write ends, so the same write retried after a
connection broke mid-commit finds its own earlier success and returns True.

A job whose cancel was asked while it was processing ends `canceled` whichever outcome its
worker writes: the decision is taken in the same statement, so a cancel that arrives after the
worker's last heartbeat is not lost. The result or error the worker wrote is kept on the row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias

from typing_extensions import final

from ._errors import StoreError, storable

if TYPE_CHECKING:
    from ._queue import Job, JobState

__all__ = [
    "Backend",
    "Claim",
    "Claimer",
    "Listener",
    "MigrationError",
    "MigrationStatus",
    "ScheduleRun",
    "TickClaim",
    "ErrorKind",
    "Heartbeat",
    "NewJob",
    "Outcome",
    "OutcomeKind",
    "migration_statuses",
    "newer_schema_error",
    "schedule_runs",
]

# "unavailable": the database did not answer, or a lock was not granted, in time (retry later);
# "error": any other failure of the database; None: not the driver's error at all.
ErrorKind: TypeAlias = Literal["unavailable", "error"]
OutcomeKind: TypeAlias = Literal["completed", "errored", "failed", "canceled", "handed_back"]
# How a claim of a schedule's tick went: this process runs it; a run of the schedule was still
# going, so the tick is recorded skipped; or another process claimed (or skipped) it first.
TickClaim: TypeAlias = Literal["claimed", "skipped", "taken"]
RunState: TypeAlias = Literal["running", "completed", "failed", "skipped"]


@final
@dataclass(frozen=True)
class NewJob:
    """A job to store: its payload already JSON text, due at `run_at` or `delay` seconds after
    the database's now."""

    payload: str
    priority: int
    max_attempts: int
    key: str | None
    run_at: datetime | None
    delay: float


@final
@dataclass(frozen=True)
class Claim:
    """A job a worker claimed, as it was right after the claim, and the token of this attempt."""

    job: Job
    token: str

    @property
    def id(self) -> int:
        return self.job.id


@final
@dataclass(frozen=True)
class Claimer:
    """Who claims jobs, and the rules its claims carry on the row: the worker's id, after how
    many seconds without a heartbeat its job counts as stalled, and how many such deaths a job
    survives (the stalled sweep reads both from the row, not from the sweeping worker)."""

    worker_id: str
    stalled_after: float
    max_resets: int


@final
@dataclass(frozen=True)
class Heartbeat:
    """What one heartbeat found: the claims that are gone (their token no longer holds the job)
    and the claimed jobs whose cancel was asked. Both hold job ids."""

    gone: frozenset[int]
    cancel_requested: frozenset[int]

    @classmethod
    def of(cls, claims: Sequence[Claim], alive: Iterable[tuple[int, object]]) -> Heartbeat:
        """From the (job id, cancel_requested) of each claimed job whose token held."""
        alive = list(alive)
        return cls(
            gone=frozenset(claim.id for claim in claims) - {job_id for job_id, _ in alive},
            cancel_requested=frozenset(job_id for job_id, asked in alive if asked),
        )


@final
@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, for `Backend.finish`: build one with the class methods."""

    kind: OutcomeKind
    result: str | None = None  # completed: the handler's return value, as JSON text
    error: str | None = None  # errored, failed: the job's new `last_error`
    delay: float = 0.0  # errored: seconds from now until the job is due again

    @classmethod
    def completed(cls, result: str) -> Outcome:
        """`completed`, with `result` (JSON text)."""
        return cls("completed", result=result)

    @classmethod
    def errored(cls, error: str, delay: float) -> Outcome:
        """`errored`, due `delay` seconds from now, with `last_error`; `failed` instead once
        the job has had `max_attempts` attempts."""
        return cls("errored", error=storable(error), delay=delay)

    @classmethod
    def failed(cls, error: str) -> Outcome:
        """`failed`, with `last_error`: not retried."""
        return cls("failed", error=storable(error))

    @classmethod
    def canceled(cls) -> Outcome:
        return cls("canceled")

    @classmethod
    def handed_back(cls) -> Outcome:
        """Back to `queued` with the attempt given back (`attempts` - 1): a stop, not a
        failure."""
        return cls("handed_back")


@final
@dataclass(frozen=True)
class ScheduleRun:
    """One tick of a fleet-wide schedule, as the store holds it: which process ran it, when,
    and how it ended. Times are aware UTC datetimes from the database's clock."""

    name: str
    tick: datetime
    state: RunState
    worker: str
    started_at: datetime
    finished_at: datetime | None
    error: str | None


@final
@dataclass(frozen=True)
class MigrationError:
    """An exception a batch of an out-of-band migration raised: when, and its text."""

    at: datetime
    error: str


@final
@dataclass(frozen=True)
class MigrationStatus:
    """An out-of-band migration as the store holds it: its progress (0.0 to 1.0) as last
    computed from its data, its direction, when either last changed, and its latest errors
    (the last 100, newest first)."""

    id: str
    progress: float
    reverse: bool
    updated_at: datetime
    errors: tuple[MigrationError, ...]

    @property
    def complete(self) -> bool:
        """Done in its direction: 1.0 forward, 0.0 in reverse."""
        return self.progress <= 0.0 if self.reverse else self.progress >= 1.0


class Backend(Protocol):
    """What the durable tier asks of a database. Seconds are floats; times aware UTC datetimes."""

    def open(self) -> None:
        """Connect, and create or upgrade the schema (raise `StoreError` if it is newer)."""
        ...

    def close(self) -> None:
        """Close every connection; calls after this fail. Never raises."""
        ...

    def classify(self, error: Exception) -> ErrorKind | None:
        """What a driver error raised by one of these methods means (see `ErrorKind`)."""
        ...

    def now(self) -> datetime:
        """The database's clock."""
        ...

    # -- queues ---------------------------------------------------------------------------------

    def enqueue(self, queue: str, jobs: Sequence[NewJob]) -> list[int]:
        """Store `jobs` in one transaction and return their ids, in order. A job with the key of
        a live (queued, errored, processing) job of the queue stores nothing and gets its id."""
        ...

    def get(self, queue: str, job_id: int) -> Job | None:
        """The job, or None if `queue` holds no job `job_id`."""
        ...

    def cancel(self, queue: str, job_id: int) -> bool:
        """Queued or errored: `canceled` now. Processing: set `cancel_requested`. Else False."""
        ...

    def retry(self, queue: str, job_id: int) -> bool:
        """A failed or canceled job back to queued, due now, attempts and resets from 0; False
        if it is in another state or another job with its key is live."""
        ...

    def counts(self, queue: str) -> dict[JobState, int]:
        """The number of jobs in each state, every state included."""
        ...

    def count_ready(self, queue: str) -> int:
        """The queued and errored jobs that are due now."""
        ...

    def oldest_ready_age(self, queue: str) -> float | None:
        """Seconds since the longest-waiting ready job became due (None: no job is ready)."""
        ...

    def purge(self, queue: str, *, older_than: float, states: Sequence[JobState]) -> int:
        """Delete the jobs in `states` finished more than `older_than` seconds ago."""
        ...

    # -- workers --------------------------------------------------------------------------------

    def claim(self, queue: str, claimer: Claimer, limit: int) -> list[Claim]:
        """Claim up to `limit` due queued/errored jobs in one short write: highest priority,
        then earliest `run_after`, then lowest id, returned in that order. Each becomes
        `processing` with `started_at` and `heartbeat_at` now, `worker` = the claimer's id, one
        more attempt, a fresh random token, and the claimer's `stalled_after` and `max_resets`."""
        ...

    def heartbeat(self, claims: Sequence[Claim]) -> Heartbeat:
        """Set `heartbeat_at` to now on every job that its claim's token still holds, in one
        write (PostgreSQL: one statement; SQLite: one transaction, a statement per 400)."""
        ...

    def finish(self, claim: Claim, outcome: Outcome) -> bool:
        """Write how the claimed attempt ended, if the claim's token still holds the job. True
        if this claim's outcome is on the row: written now, or by an earlier try of the same
        write (the token stays on the row); False, changing nothing, if the token is gone."""
        ...

    def finish_and_claim(
        self, claim: Claim, outcome: Outcome, claimer: Claimer
    ) -> tuple[bool, Claim | None]:
        """`finish(claim, outcome)` and `claim()` of one more job of the same queue, in one
        write (one transaction, one round trip): what `finish` returns, and the claim or
        None. The handler that ran a job takes its next one without waking the claim loop."""
        ...

    # -- leases ---------------------------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, ttl: float) -> int | None:
        """Take the lease `name` for `ttl` seconds if it is free, expired or already `holder`'s;
        its token (a new, larger one for a new holder; the same on renewal), or None."""
        ...

    def renew_lease(self, name: str, holder: str, token: int, ttl: float) -> bool:
        """Extend `holder`'s unexpired lease by `ttl` seconds from now; False once lost."""
        ...

    def release_lease(self, name: str, holder: str, token: int) -> None:
        """Free the lease if `holder` still holds it under `token` (its token is kept)."""
        ...

    # -- fleet-wide schedules -----------------------------------------------------------------

    def claim_tick(self, name: str, tick: datetime, worker: str, stalled_after: float) -> TickClaim:
        """Claim the run of `name` at `tick`, serialised with every other claim of `name` (a
        row of the schedule locked for it). First, runs whose heartbeat is older than their
        `stalled_after` are marked failed ("worker died"). A tick that already has a record is
        "taken"; while a run is going, the tick is recorded skipped; else it is `worker`'s,
        running. Keeps the latest 1,000 runs of `name`."""
        ...

    def heartbeat_run(self, name: str, tick: datetime, worker: str) -> bool:
        """Keep `worker`'s run of `name` at `tick` alive; False if it is no longer running."""
        ...

    def finish_run(self, name: str, tick: datetime, worker: str, error: str | None) -> bool:
        """End `worker`'s run: completed, or failed with `error`. True if that is on the row
        (written now, or by an earlier try of the same write)."""
        ...

    def schedule_runs(self, name: str, limit: int) -> list[ScheduleRun]:
        """The latest `limit` runs of `name`, newest tick first."""
        ...

    # -- out-of-band migrations ---------------------------------------------------------------

    def register_migrations(self, ids: Sequence[str]) -> None:
        """Record the migrations `ids` that the store has not seen: progress 0, forward."""
        ...

    def set_migration_direction(self, migration_id: str, reverse: bool) -> None:
        """Run `migration_id` forward or in reverse from now on (recorded if it was not)."""
        ...

    def store_migration_progress(self, migration_id: str, progress: float) -> None:
        """The progress last computed from the migration's data."""
        ...

    def record_migration_error(self, migration_id: str, error: str) -> None:
        """An error of a batch, at the database's now; keeps the last 100 per migration."""
        ...

    def migrations(self, ids: Sequence[str] | None = None) -> list[MigrationStatus]:
        """The migrations the store has seen (only `ids`, if given), by id."""
        ...

    def listener(self) -> Listener | None:
        """A listener for enqueues from other processes, or None if the database has none
        (SQLite: the worker polls, and in-process enqueues wake it through the store)."""
        ...

    def sweep_stalled(self, queue: str) -> int:
        """Processing jobs of `queue` whose heartbeat is older than the `stalled_after` stored on
        their row: back to `queued` (`resets` + 1, token cleared, the attempt spent),
        `canceled` if a cancel was asked, or `failed` ("the worker died N times") at the
        `max_resets` + 1-th death. Returns how many jobs it changed."""
        ...


class Listener(Protocol):
    """Enqueues from any process, as the database announces them (PostgreSQL LISTEN/NOTIFY) on
    a connection of its own. Notifications sent while it was disconnected are lost: polling
    stays the floor."""

    def wait(self, timeout: float) -> set[str]:
        """The queues enqueued to within `timeout` seconds (empty if none); connects (and
        LISTENs) first if it is not connected. Raises the driver's errors when the connection
        breaks; the next call connects again."""
        ...

    def close(self) -> None:
        """Close its connection; never raises."""
        ...


def schedule_runs(
    rows: Iterable[Sequence[Any]], moment: Callable[[Any], datetime]
) -> list[ScheduleRun]:
    """Runs from rows of (name, tick, state, worker, started_at, finished_at, error), each
    time read with `moment`."""
    return [
        ScheduleRun(
            name=row[0],
            tick=moment(row[1]),
            state=row[2],
            worker=row[3],
            started_at=moment(row[4]),
            finished_at=None if row[5] is None else moment(row[5]),
            error=row[6],
        )
        for row in rows
    ]


def migration_statuses(
    rows: Sequence[Sequence[Any]], moment: Callable[[Any], datetime]
) -> list[MigrationStatus]:
    """Statuses from rows of (id, progress, reverse, updated_at, error's at, error), ordered by
    id then newest error first, an error's columns None where a migration has none."""
    statuses: list[MigrationStatus] = []
    for row in rows:
        if not statuses or statuses[-1].id != row[0]:
            statuses.append(
                MigrationStatus(
                    id=row[0],
                    progress=float(row[1]),
                    reverse=bool(row[2]),
                    updated_at=moment(row[3]),
                    errors=(),
                )
            )
        if row[4] is not None:
            last = statuses[-1]
            error = MigrationError(at=moment(row[4]), error=row[5])
            statuses[-1] = MigrationStatus(
                last.id, last.progress, last.reverse, last.updated_at, (*last.errors, error)
            )
    return statuses


def newer_schema_error(store: str, found: int, known: int) -> StoreError:
    """The error for a store whose schema a newer version of routines wrote."""
    msg = (
        f"{store} has schema version {found}, written by a newer version of routines; this one "
        f"knows versions up to {known}: upgrade routines in this program"
    )
    return StoreError(msg)
