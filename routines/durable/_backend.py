"""The seam between the durable tier and a database: what the tier asks of a store, by role.

A `Backend` opens and closes, reads the database's clock and says what a driver error means;
it serves some or all of four roles, each a protocol of its own (as APScheduler 4 keeps its
data store apart from its event broker):

- `JobStore`: queues and their workers (enqueue, claim, heartbeat, outcomes, the stalled sweep);
- `LeaseStore`: leases, for `Lease`, `Singleton` and the migration runner;
- `TickStore`: the ticks and runs of fleet-wide schedules;
- `MigrationStore`: the progress and errors of out-of-band migrations.

`SQLStore` (`_sqlstore.py`) serves all four on every SQL engine; a backend that serves only
leases (Redis, say) returns None for the other roles, and the store then refuses the calls that
need them. A backend's arguments are already checked (the public classes check them); its
driver's errors go up unchanged and `StoreAccess` turns them into `StoreError` /
`StoreUnavailable` as `classify` says.

Every time a backend stores or compares comes from the database's clock. Every write about a
claimed job is conditional on the claim's token: a write whose token is gone (the job was reset
by the stalled sweep, handed to another worker, or deleted) changes nothing and returns False.
The token stays on the row a worker's own outcome write ends, so the same write retried after a
connection broke mid-commit finds its own earlier success and returns True.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol, TypeAlias

if TYPE_CHECKING:
    from .._flag import Flag
    from ._model import (
        Backlog,
        Claim,
        Claimer,
        Heartbeat,
        Job,
        JobState,
        LeaseInfo,
        MigrationStatus,
        NewJob,
        Outcome,
        QueueInfo,
        QueueLimits,
        Reset,
        ScheduleInfo,
        ScheduleRun,
        TickClaim,
    )

__all__ = [
    "Backend",
    "ErrorKind",
    "JobStore",
    "LeaseStore",
    "Listener",
    "Mark",
    "MigrationStore",
    "TickStore",
]

# "unavailable": the database did not answer, or a lock was not granted, in time (retry later);
# "error": any other failure of the database; None: not the driver's error at all.
ErrorKind: TypeAlias = Literal["unavailable", "error"]


class Backend(Protocol):
    """A database the durable tier keeps its state in. Seconds are floats; times aware UTC."""

    def open(self) -> None:
        """Connect, and create or upgrade the schema (raise `StoreError` if it is newer)."""
        ...

    def close(self) -> None:
        """Close every connection; calls after this fail. Never raises."""
        ...

    def classify(self, error: Exception) -> ErrorKind | None:
        """What a driver error raised by one of its methods means (see `ErrorKind`)."""
        ...

    def now(self) -> datetime:
        """The database's clock."""
        ...

    @property
    def jobs(self) -> JobStore | None:
        """Its queues and their workers, or None if it keeps no jobs."""
        ...

    @property
    def leases(self) -> LeaseStore | None: ...

    @property
    def ticks(self) -> TickStore | None: ...

    @property
    def migration_log(self) -> MigrationStore | None: ...


class JobStore(Protocol):
    """Queues, their jobs, and what their workers write about the jobs they claimed.

    A job whose cancel was asked while it was processing ends `canceled` whichever outcome its
    worker writes: the decision is taken in the same statement, so a cancel that arrives after
    the worker's last heartbeat is not lost. The result or error the worker wrote is kept.
    """

    def enqueue(
        self, queue: str, jobs: Sequence[NewJob], *, connection: object | None = None
    ) -> list[int]:
        """Store `jobs` in one transaction and return their ids, in order. A job with the key of
        a live (queued, errored, processing) job of the queue stores nothing and gets its id.
        With `connection` (an app's own connection to the store's database), in that
        connection's transaction, never committed nor rolled back by the store; a connection
        the store can't write through is a `TypeError`/`ValueError` naming `connection`, raised
        before anything is written (by a store that keeps jobs elsewhere: always)."""
        ...

    def get(self, queue: str, job_id: int) -> Job | None:
        """The job, or None if `queue` holds no job `job_id`."""
        ...

    def find(self, job_id: int) -> Job | None:
        """The job `job_id` of whichever queue holds it (ids are unique in the store), or
        None."""
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

    def backlog(self, queue: str) -> Backlog:
        """The queued and errored jobs that are due now, whether the queue is paused or
        limited, and when its rate next allows a start: one cheap read, for a worker whose
        claim found nothing."""
        ...

    def oldest_ready_age(self, queue: str) -> float | None:
        """Seconds since the longest-waiting ready job became due (None: no job is ready)."""
        ...

    def purge(self, queue: str, *, older_than: float, states: Sequence[JobState]) -> int:
        """Delete the jobs in `states` finished more than `older_than` seconds ago."""
        ...

    def list_jobs(
        self,
        queue: str,
        states: Sequence[JobState],
        task: str | None,
        limit: int,
        before: int | None,
    ) -> list[Job]:
        """Up to `limit` jobs of `queue` in `states` (of the task `task`, if given), with ids
        below `before` (if given), highest id first; each page read from an index."""
        ...

    def retry_all(self, queue: str, states: Sequence[JobState]) -> int:
        """`retry` every job of `queue` in `states` (failed, canceled), in batches, each its own
        short write; how many went back to queued. Of the jobs of one key, the newest is put
        back and the others stay as they are (as `retry` leaves a job whose key is live)."""
        ...

    def cancel_all(self, queue: str, states: Sequence[JobState]) -> int:
        """`cancel` every job of `queue` in `states` (live states), in batches, each its own
        short write; how many were canceled or asked to cancel."""
        ...

    def run_now(self, queue: str, job_id: int) -> bool:
        """A queued or errored job due now (one due already keeps its place), its attempts as
        they are; False if the job is not waiting."""
        ...

    def pause(self, queue: str) -> None:
        """From the next claim on, no claim takes a job of `queue`; announced to listeners."""
        ...

    def resume(self, queue: str) -> None:
        """Undo `pause`; announced to listeners, whose workers claim again."""
        ...

    def paused(self, queue: str) -> bool: ...

    def set_limits(self, queue: str, limits: QueueLimits) -> None:
        """Store `queue`'s limits (every one of them: None removes it); announced to listeners,
        whose workers claim with the limits from their next claim on."""
        ...

    def limits(self, queue: str) -> QueueLimits: ...

    def announce(self, queue: str) -> None:
        """Tell the workers of `queue` in other processes to claim again (a job of a limited
        queue ended: one held back may start)."""
        ...

    def list_queues(self) -> list[QueueInfo]:
        """Every queue with a job or a row of its own (a pause), by name."""
        ...

    def claim(
        self,
        queue: str,
        claimer: Claimer,
        limit: int,
        *,
        claim_id: str | None = None,
        limited: bool = False,
    ) -> list[Claim]:
        """Claim up to `limit` due queued/errored jobs in one short write: highest priority,
        then earliest `run_after`, then lowest id, returned in that order. Each becomes
        `processing` with `started_at` and `heartbeat_at` now, `worker` = the claimer's id, one
        more attempt, a fresh token, and the claimer's `stalled_after` and `max_resets`.
        `claim_id` (random, new for each claim; made here if not given) is the part of the
        tokens that `claimed` finds them by. A claim takes nothing from a paused queue, nor,
        unless `limited`, from a queue with limits; a `limited` claim takes only what the
        queue's limits allow (and nothing from a queue that has no row of limits)."""
        ...

    def claimed(self, queue: str, claim_id: str) -> list[Claim]:
        """The jobs a claim of `claim_id` took that it still holds (processing): for a claim
        whose reply was lost, which may or may not have committed."""
        ...

    def heartbeat(self, claims: Sequence[Claim]) -> Heartbeat:
        """Set `heartbeat_at` to now on every job that its claim's token still holds, in one
        write."""
        ...

    def finish(self, claim: Claim, outcome: Outcome) -> bool:
        """Write how the claimed attempt ended, if the claim's token still holds the job. True
        if this claim's outcome is on the row: written now, or by an earlier try of the same
        write (the token stays on the row); False, changing nothing, if the token is gone."""
        ...

    def finish_and_claim(
        self, claim: Claim, outcome: Outcome, claimer: Claimer, *, claim_id: str | None = None
    ) -> tuple[bool, Claim | None]:
        """`finish(claim, outcome)` and `claim()` of one more job of the same queue, in one
        write (one transaction, one round trip): what `finish` returns, and the claim or
        None. The handler that ran a job takes its next one without waking the claim loop."""
        ...

    def exchange(
        self,
        queue: str,
        claimer: Claimer,
        *,
        started: Sequence[Claim] = (),
        outcomes: Sequence[tuple[Claim, Outcome, bool]] = (),
        limit: int = 0,
        claim_id: str | None = None,
        check_paused: bool = False,
        limited: bool = False,
    ) -> tuple[list[bool], list[Claim], bool]:
        """A worker's writes since its last, and its next claim, in one batch (one transaction;
        on PostgreSQL one round trip): the claims of `started` that handlers started (their
        attempt counted, `started_at` now); each outcome (claim, outcome, tried before: then an
        earlier try may have written it, as `finish` finds); then a claim ahead of up to
        `limit` jobs, which no handler has started (attempts as they were, `started_at` None).
        Whether each outcome is on its row, in order; the claims; with `check_paused`, whether
        the queue is paused (then the worker gives back what it claimed ahead; a claim of a
        paused queue takes nothing, so a worker that claims needs no check). The claim is
        `limited` as `claim` says."""
        ...

    def sweep_stalled(self, queue: str) -> list[Reset]:
        """Processing jobs of `queue` whose heartbeat is older than the `stalled_after` stored on
        their row: back to `queued` (`resets` + 1, token cleared, the attempt spent),
        `canceled` if a cancel was asked, or `failed` ("the worker died N times") at the
        `max_resets` + 1-th death. Returns the jobs it changed, as it left them."""
        ...

    def listener(self) -> Listener | None:
        """A listener for enqueues from other processes, or None if the database has none
        (SQLite: the worker polls, and in-process enqueues wake it through the store)."""
        ...

    def hold_mark(self) -> Mark | None:
        """This process's liveness mark on the store, for a worker to hold while it runs (and
        release once its handlers have all returned), or None if the backend has none. Made
        without waiting for the database: it is taken as soon as it can be."""
        ...

    def sweep_dead(self, queue: str) -> list[Reset]:
        """The processing jobs of `queue` whose worker claimed them under a liveness mark that
        no process holds now (its process is gone), and the stalled ones with them: as
        `sweep_stalled` leaves them, marked `worker_gone`. Writes nothing while every such mark
        is held, so it is cheap to call about once a second."""
        ...

    def doorbell(self, queue: str) -> Listener | None:
        """Where the database can't announce enqueues itself (SQLite): a listener that the
        enqueues to `queue` of other processes of this host ring after they commit; bound
        before it is returned, so that nothing committed after this call goes unheard. None
        where `listener()` serves, or nothing can."""
        ...


class LeaseStore(Protocol):
    """Leases: one holder at a time per name, decided by the database's clock."""

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

    def list_leases(self) -> list[LeaseInfo]:
        """Every lease the store has seen (rows are never deleted), by name."""
        ...


class TickStore(Protocol):
    """The ticks of fleet-wide schedules: which process runs each, and how each run ended."""

    def claim_tick(self, name: str, tick: datetime, worker: str, stalled_after: float) -> TickClaim:
        """Claim the run of `name` at `tick`, serialised with every other claim of `name`.
        First, runs whose heartbeat is older than their `stalled_after` are marked failed
        ("worker died"). A tick that already has a record is "taken"; while a run is going, the
        tick is recorded skipped; else it is `worker`'s, running. Keeps the latest 1,000 runs
        of `name`."""
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

    def list_schedules(self) -> list[ScheduleInfo]:
        """Every schedule with a run kept, by name."""
        ...


class MigrationStore(Protocol):
    """The recorded state of out-of-band migrations."""

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


class Mark(Protocol):
    """A process's liveness mark on a store: held while the process lives, and released by the
    system when it dies (PostgreSQL: a session-level advisory lock on a connection of its own;
    SQLite: an `flock` on a file beside the database). A worker claims as `worker_id` while
    `held()`, so that sweepers may put its jobs back as soon as the mark is free; heartbeats
    cover what a mark can't see (a hung or frozen process, a network partition)."""

    @property
    def worker_id(self) -> str:
        """The id the claims made under this mark carry (see `has_mark`)."""
        ...

    def held(self) -> bool:
        """Whether the mark is held now, as last checked (about once a second); never blocks.
        A mark lost while the process lives is logged and taken again."""
        ...

    def wait(self, timeout: float, stop: Flag) -> bool:
        """Wait until the mark is held, `stop` is set or `timeout` passes: whether it is held."""
        ...

    def release(self) -> None:
        """This holder is done with it (its jobs are all written); the last one frees it."""
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
