"""`SQLStore`: the durable tier's backend on every SQL engine, its statements written once.

It serves all four roles of `_backend.py` (jobs, leases, ticks, migrations) with the neutral
statements of `_statements.py`; a `Driver` (`_sqlite.py`, `_postgres.py`) runs them on its
engine. A job's way through the store:

    enqueue ──INSERT_JOB──▶ queued ──CLAIM──▶ processing ──FINISH──▶ completed | errored |
       (keyed: LIVE_JOB_OF_KEY)        ▲          │   │                failed | canceled
                                       │          │   └─HEARTBEAT (every heartbeat_interval,
                                       │          │     STILL_HELD says what is gone/canceled)
                errored, due again ────┘          └─SWEEP (no heartbeat for stalled_after, or
                                                    the worker's liveness mark free: back to
                                                    queued, or failed, or canceled)

A worker's handler writes its outcome and claims its next job in one batch (FINISH, FINISHED,
CLAIM, CLAIMED): one transaction and, on PostgreSQL, one round trip. Every write about a claimed
job names its claim's token.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

from typing_extensions import final

from .._status import describe_error
from . import _statements as sql
from ._backend import (
    ErrorKind,
    JobStore,
    LeaseStore,
    Listener,
    Mark,
    MigrationStore,
    TickStore,
)
from ._errors import StoreError
from ._model import (
    ID_MAX,
    JOB_STATES,
    LIVE_STATES,
    RETRYABLE_STATES,
    Backlog,
    Claim,
    Claimer,
    Heartbeat,
    Job,
    JobState,
    LeaseInfo,
    MigrationError,
    MigrationStatus,
    NewJob,
    Outcome,
    OutcomeKind,
    QueueInfo,
    QueueLimits,
    Reset,
    ScheduleInfo,
    ScheduleRun,
    TickClaim,
    has_mark,
    new_claim_id,
    storable,
    task_of,
)
from ._sql import Driver, Params, Session

__all__ = ["SQLStore", "newer_schema_error"]

logger = logging.getLogger("routines.durable")

T = TypeVar("T")

_PURGE_BATCH: Final = 500  # rows per purge statement, so other writers get their turn
_BULK_BATCH: Final = 500  # jobs per write of retry_all and cancel_all, for the same reason
_KEEP_RUNS: Final = 1000  # the runs of a schedule kept, newest first, and one still going
_KEEP_MIGRATION_ERRORS: Final = 100  # the errors of a migration kept, newest first
_HEARTBEAT_BATCH: Final = 400  # (id, token) pairs per statement: 800 of SQLite's 999 variables
_KEY_RACE_ROUNDS: Final = 10  # insert-or-find rounds for a key whose live job keeps changing
# A limited claim looks at up to this many ready jobs (whose group has room) per job it may
# take: enough for the first of each group among them (see LIMITED_CLAIM).
_SCAN_PER_SLOT: Final = 8
# The statements of a claim whose rows are the claimed jobs.
_READ_BACK: Final = frozenset({sql.CLAIMED, sql.CLAIM_RETURNING, sql.LIMITED_CLAIM_RETURNING})


@final
class SQLStore:
    """A `Backend` of every role on the SQL engine `driver` speaks."""

    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self._dialect = driver.dialect
        self._returning = driver.dialect.returning
        self._connected = False
        self._steps = tuple(
            (*step, *driver.schema_additions.get(number, ()))
            for number, step in enumerate(sql.SCHEMA)
        )

    def __repr__(self) -> str:
        return f"SQLStore({self._driver!r})"

    @property
    def driver(self) -> Driver:
        return self._driver

    @property
    def jobs(self) -> JobStore:
        return self

    @property
    def leases(self) -> LeaseStore:
        return self

    @property
    def ticks(self) -> TickStore:
        return self

    @property
    def migration_log(self) -> MigrationStore:
        return self

    # -- connections and the schema ---------------------------------------------------------------

    def open(self) -> None:
        # Tried again by the next call if it fails: connect once, then the schema.
        if not self._connected:
            self._driver.connect()
            self._connected = True
        if self._driver.run(self._version, transaction=False) != len(self._steps):
            self._driver.run(self._upgrade, transaction=True)

    def close(self) -> None:
        self._driver.close()

    def classify(self, error: Exception) -> ErrorKind | None:
        return self._driver.classify(error)

    def _version(self, session: Session) -> int:
        if not self._driver.table_exists(session, "schema_version"):
            return 0
        row = session.first(sql.VERSION)
        version = int(row[0]) if row else 0
        if version > len(self._steps):
            raise newer_schema_error(self._driver.described, version, len(self._steps))
        return version

    def _upgrade(self, session: Session) -> None:
        """Create or upgrade the schema, in one transaction that other processes opening the
        store wait for (so one of them does it)."""
        self._driver.lock_schema(session)
        version = self._version(session)
        known = len(self._steps)
        if version == known:
            return  # another process did it while this one waited for the lock
        session.count(sql.VERSION_TABLE)
        if session.first(sql.VERSION) is None:
            session.count(sql.VERSION_ROW)
        for step in self._steps[version:]:
            for statement in step:
                session.count(statement)
        session.count(sql.SET_VERSION, {"version": known})
        logger.info("%s: schema now at version %d (was %d)", self._driver.described, known, version)

    def now(self) -> datetime:
        return self._driver.run(
            lambda session: self._dialect.read_moment(_first(session, sql.NOW)[0]),
            transaction=False,
        )

    # -- queues ---------------------------------------------------------------------------------

    def enqueue(
        self, queue: str, jobs: Sequence[NewJob], *, connection: object | None = None
    ) -> list[int]:
        keyless = all(job.key is None for job in jobs)
        # One job without a key is one statement, atomic by itself.
        transaction = len(jobs) > 1 or not keyless
        if connection is not None:
            # The app's transaction, through the statements: the driver's fast path commits
            # on a connection of its own.
            return self._driver.run_on(
                connection,
                lambda session: self._insert(session, queue, jobs),
                transaction=transaction,
            )
        if not jobs:
            return []
        if keyless and len(jobs) > 1:
            fast = self._driver.enqueue_keyless(queue, jobs)
            if fast is not None:
                return fast
        return self._driver.run(
            lambda session: self._insert(session, queue, jobs), transaction=transaction
        )

    def _insert(self, session: Session, queue: str, jobs: Sequence[NewJob]) -> list[int]:
        rows = [_job_row(queue, job) for job in jobs]
        if len(jobs) > 1 and all(job.key is None for job in jobs):  # none can conflict
            ids = session.insert_many(sql.INSERT_JOB, rows)
            self._driver.notify(session, queue)
            return ids
        ids = []
        inserted = False
        # One job: its insert announces itself where the engine can (one statement).
        announce = queue if len(jobs) == 1 else None
        for params in rows:
            job_id, new = self._insert_or_find(session, params, announce)
            ids.append(job_id)
            inserted = inserted or new
        if inserted and announce is None:  # in the same transaction: announced on commit
            self._driver.notify(session, queue)
        return ids

    def _insert_or_find(
        self, session: Session, params: Params, announce: str | None
    ) -> tuple[int, bool]:
        """The id of a new job, or of the live job holding its key (and whether it is new);
        with `announce`, the insert announces the new job to that queue's listeners."""
        for _ in range(_KEY_RACE_ROUNDS):
            if announce is None:
                job_id = session.insert(sql.INSERT_JOB, params)
            else:
                job_id = self._driver.insert_announced(session, sql.INSERT_JOB, params, announce)
            if job_id is not None:
                return job_id, True
            row = session.first(sql.LIVE_JOB_OF_KEY, params)
            if row is not None:
                return int(row[0]), False
        msg = f"the live job of key {params['key']!r} kept changing while it was enqueued"
        raise StoreError(msg)

    def get(self, queue: str, job_id: int) -> Job | None:
        row = self._driver.run(
            lambda session: session.first(sql.JOB, {"id": job_id, "queue": queue}),
            transaction=False,
        )
        return None if row is None else self.job(row)

    def find(self, job_id: int) -> Job | None:
        row = self._driver.run(
            lambda session: session.first(sql.JOB_OF_ANY_QUEUE, {"id": job_id}),
            transaction=False,
        )
        return None if row is None else self.job(row)

    def cancel(self, queue: str, job_id: int) -> bool:
        return self._count(sql.CANCEL, _one(queue, job_id, LIVE_STATES)) == 1

    def retry(self, queue: str, job_id: int) -> bool:
        try:
            return self._announced(queue, sql.RETRY, _one(queue, job_id, RETRYABLE_STATES)) == 1
        except Exception as error:
            if self._driver.unique_violation(error):
                return False  # a job with its key was enqueued at the same moment
            raise

    def retry_all(self, queue: str, states: Sequence[JobState]) -> int:
        def retry_batch(state: JobState, ids: list[int]) -> int:
            params = _batch(queue, state, ids)
            try:
                return self._announced(queue, sql.RETRY, params)
            except Exception as error:
                if not self._driver.unique_violation(error):
                    raise
            # Two jobs of the batch have one key (a key is unique among live jobs only), or a
            # job with a key of the batch was enqueued meanwhile: one at a time, newest first.
            return sum(self.retry(queue, job_id) for job_id in ids)

        return self._in_batches(queue, states, retry_batch)

    def cancel_all(self, queue: str, states: Sequence[JobState]) -> int:
        return self._in_batches(
            queue, states, lambda state, ids: self._count(sql.CANCEL, _batch(queue, state, ids))
        )

    def _in_batches(
        self,
        queue: str,
        states: Sequence[JobState],
        change: Callable[[JobState, list[int]], int],
    ) -> int:
        """`change` each batch of the jobs of `queue` in `states`, one state at a time, each
        batch read from the index from where the last one ended (a job the change left in its
        state, such as a processing job asked to cancel, is not read again)."""
        changed = 0
        for state in states:
            through = ID_MAX
            while True:
                params = {"queue": queue, "state": state, "through": through}
                rows = self._rows(sql.BATCH, {**params, "batch": _BULK_BATCH})
                ids = [int(row[0]) for row in rows]
                if ids:
                    changed += change(state, ids)
                if len(ids) < _BULK_BATCH:
                    break
                through = ids[-1] - 1
        return changed

    def run_now(self, queue: str, job_id: int) -> bool:
        return self._announced(queue, sql.RUN_NOW, {"queue": queue, "id": job_id}) == 1

    def pause(self, queue: str) -> None:
        self._announced(queue, sql.PAUSE, {"queue": queue})

    def resume(self, queue: str) -> None:
        self._announced(queue, sql.RESUME, {"queue": queue})

    def paused(self, queue: str) -> bool:
        return bool(self._first(sql.PAUSED, {"queue": queue})[0])

    def set_limits(self, queue: str, limits: QueueLimits) -> None:
        rate = limits.rate
        self._announced(
            queue,
            sql.SET_LIMITS,
            {
                "queue": queue,
                "max_running": limits.max_running,
                "group_running": limits.group_running,
                "rate_count": None if rate is None else rate[0],
                "rate_per": None if rate is None else timedelta(seconds=rate[1]),
            },
        )

    def limits(self, queue: str) -> QueueLimits:
        row = self._driver.run(
            lambda session: session.first(sql.LIMITS, {"queue": queue}), transaction=False
        )
        return QueueLimits() if row is None else self._limits(row[2:])

    def _limits(self, row: Sequence[Any]) -> QueueLimits:
        """The limits of a row of (max_running, group_running, rate_count, rate_per)."""
        max_running, group_running, rate_count, rate_per = row
        return QueueLimits(
            max_running=max_running,
            group_running=group_running,
            rate=None
            if rate_count is None
            else (int(rate_count), self._dialect.read_interval(rate_per)),
        )

    def announce(self, queue: str) -> None:
        self._driver.run(lambda session: self._driver.notify(session, queue), transaction=False)

    def _announced(self, queue: str, template: str, params: Params) -> int:
        """A write that may give the workers of `queue` something to do (or tell them it is
        paused): announced to other processes on commit if it changed a row."""

        def work(session: Session) -> int:
            changed = session.count(template, params)
            if changed:
                self._driver.notify(session, queue)
            return changed

        return self._driver.run(work, transaction=True)

    def list_jobs(
        self,
        queue: str,
        states: Sequence[JobState],
        task: str | None,
        limit: int,
        before: int | None,
    ) -> list[Job]:
        params: dict[str, object] = {
            "queue": queue,
            "limit": limit,
            "through": ID_MAX if before is None else before - 1,
            "task": task,
        }
        params.update((f"state_{n}", state) for n, state in enumerate(states))
        rows = self._rows(sql.job_page(len(states), task=task is not None), params)
        return [self.job(row) for row in rows]

    def list_queues(self) -> list[QueueInfo]:
        def work(session: Session) -> tuple[list[tuple[Any, ...]], ...]:
            return (
                session.rows(sql.ALL_COUNTS),
                session.rows(sql.ALL_OLDEST_READY_AGES),
                session.rows(sql.QUEUE_ROWS),
            )

        counts, ages, rows = self._driver.run(work, transaction=False)
        paused = {row[0]: bool(row[1]) for row in rows}
        limits = {row[0]: self._limits(row[2:]) for row in rows}
        found: dict[str, dict[JobState, int]] = {name: {} for name in paused}
        for name, state, count in counts:
            found.setdefault(name, {})[state] = int(count)
        oldest = {name: self._dialect.read_interval(age) for name, age in ages}
        return [
            QueueInfo(
                name=name,
                counts={state: found[name].get(state, 0) for state in JOB_STATES},
                paused=paused.get(name, False),
                oldest_ready_age=oldest.get(name),
                limits=limits.get(name, QueueLimits()),
            )
            for name in sorted(found)
        ]

    def counts(self, queue: str) -> dict[JobState, int]:
        found = {
            state: int(count)
            for state, count in self._driver.run(
                lambda session: session.rows(sql.COUNTS, {"queue": queue}), transaction=False
            )
        }
        return {state: found.get(state, 0) for state in JOB_STATES}

    def backlog(self, queue: str) -> Backlog:
        ready, paused, limited, opens_in = self._first(sql.BACKLOG, {"queue": queue})
        return Backlog(
            ready=int(ready),
            paused=bool(paused),
            limited=bool(limited),
            opens_in=None if opens_in is None else max(0.0, self._dialect.read_interval(opens_in)),
        )

    def oldest_ready_age(self, queue: str) -> float | None:
        age = self._first(sql.OLDEST_READY_AGE, {"queue": queue})[0]
        return None if age is None else self._dialect.read_interval(age)

    def purge(self, queue: str, *, older_than: float, states: Sequence[JobState]) -> int:
        params = {
            "queue": queue,
            "states": list(states),
            "cutoff": self.now() - timedelta(seconds=older_than),
            "batch": _PURGE_BATCH,
        }
        deleted = 0
        while True:
            count = self._count(sql.PURGE, params)
            deleted += count
            if count < _PURGE_BATCH:
                return deleted

    # -- claims ---------------------------------------------------------------------------------

    def claim(
        self,
        queue: str,
        claimer: Claimer,
        limit: int,
        *,
        claim_id: str | None = None,
        limited: bool = False,
    ) -> list[Claim]:
        statements = self._claim(queue, claimer, limit, claim_id, ahead=False, limited=limited)
        results = self._driver.batch(statements)
        return _in_order(self._claims(results[_read_back(statements)].rows))

    def claimed(self, queue: str, claim_id: str) -> list[Claim]:
        rows = self._rows(sql.CLAIMED, {"queue": queue, **_claim_of(claim_id)})
        return self._claims(rows)

    def heartbeat(self, claims: Sequence[Claim]) -> Heartbeat:
        if not claims:
            return Heartbeat(gone=frozenset(), cancel_requested=frozenset())
        statements = []
        for start in range(0, len(claims), _HEARTBEAT_BATCH):
            chunk = {"claims": [(c.id, c.token) for c in claims[start : start + _HEARTBEAT_BATCH]]}
            statements += [(sql.HEARTBEAT, chunk), (sql.STILL_HELD, chunk)]
        results = self._driver.batch(statements)
        return Heartbeat.of(claims, (row for result in results[1::2] for row in result.rows))

    def finish(self, claim: Claim, outcome: Outcome) -> bool:
        return bool(self._driver.batch(_finish(claim, outcome))[1].rows)

    def finish_and_claim(
        self, claim: Claim, outcome: Outcome, claimer: Claimer, *, claim_id: str | None = None
    ) -> tuple[bool, Claim | None]:
        claiming = self._claim(claim.job.queue, claimer, 1, claim_id, ahead=False, limited=False)
        results = self._driver.batch([*_finish(claim, outcome), *claiming])
        claims = self._claims(results[2 + _read_back(claiming)].rows)
        return bool(results[1].rows), claims[0] if claims else None

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
        statements: list[tuple[str, Params]] = []
        # A job that started and ended since the last round: its outcome counts its start.
        ending = {claim.token for claim, _, _ in outcomes}
        started = [claim for claim in started if claim.token not in ending]
        for start in range(0, len(started), _HEARTBEAT_BATCH):
            chunk = started[start : start + _HEARTBEAT_BATCH]
            statements.append((sql.START, {"claims": [(c.id, c.token) for c in chunk]}))
        first = len(statements)
        many: dict[OutcomeKind, list[tuple[Claim, Outcome]]] = {}
        for claim, outcome, again in outcomes:
            if self._dialect.update_from and not again:
                many.setdefault(outcome.kind, []).append((claim, outcome))
                continue
            finish = _finish(claim, outcome)
            statements += finish if again else finish[:1]
        together = len(statements)
        for kind, ended in many.items():
            statements.append((sql.FINISH_MANY[kind], {"done": _done_rows(kind, ended)}))
        claiming = len(statements)
        claimed_at = claiming
        if limit > 0:
            taking = self._claim(queue, claimer, limit, claim_id, ahead=True, limited=limited)
            claimed_at += _read_back(taking)
            statements += taking
        if check_paused:
            statements.append((sql.PAUSED, {"queue": queue}))
        results = self._driver.batch(statements)
        on_rows = {
            (int(job_id), token)
            for result in results[together:claiming]
            for job_id, token in result.rows
        }
        written, position = [], first
        for claim, _, again in outcomes:
            if again:  # tried before: an earlier try may have written it
                written.append(bool(results[position + 1].rows))
                position += 2
            elif self._dialect.update_from:  # written with the others of its kind
                written.append((claim.id, claim.token) in on_rows)
            else:  # a first try wrote it, or found its token gone
                written.append(results[position].rowcount == 1)
                position += 1
        claims = []
        if limit > 0:
            claims = _in_order(self._claims(results[claimed_at].rows))
        return written, claims, check_paused and bool(results[-1].rows[0][0])

    def _claim(
        self,
        queue: str,
        claimer: Claimer,
        limit: int,
        claim_id: str | None,
        *,
        ahead: bool,
        limited: bool,
    ) -> list[tuple[str, Params]]:
        """The statements of a claim: take the jobs (`ahead`: for handlers that will start them
        later; `limited`: as the queue's limits allow, see LIMITED_CLAIM), then read back what
        was taken (or take it with RETURNING where the engine has it), then, if `limited`,
        record the starts a rate counts."""
        params = {
            "queue": queue,
            "limit": limit,
            "scan": limit * _SCAN_PER_SLOT,
            "ahead": ahead,
            "worker": claimer.worker_id,
            **_claim_of(claim_id or new_claim_id()),
            "stalled_after": timedelta(seconds=claimer.stalled_after),
            "max_resets": claimer.max_resets,
        }
        if limited:
            take = sql.LIMITED_CLAIM_RETURNING if self._returning else sql.LIMITED_CLAIM
            statements: list[tuple[str, Params]] = [(sql.LOCK_QUEUE, params), (take, params)]
        else:
            statements = [(sql.CLAIM_RETURNING if self._returning else sql.CLAIM, params)]
        if not self._returning:
            statements.append((sql.CLAIMED, params))
        if limited:
            statements += [(sql.RECORD_STARTS, params), (sql.PRUNE_STARTS, params)]
        return statements

    def sweep_stalled(self, queue: str) -> list[Reset]:
        return self._driver.run(lambda session: self._sweep(session, queue, []), transaction=True)

    def sweep_dead(self, queue: str) -> list[Reset]:
        # Read first, outside a transaction (SQLite's would take the write lock every second):
        # the workers under a mark, then whether any mark is free; only then the sweep, which
        # finds the free marks again in its own transaction (PostgreSQL holds them there, so
        # that a worker taking its mark back waits for the sweep's end).
        working = self._rows(sql.WORKING, {"queue": queue})
        marked = [row[0] for row in working if row[0] is not None and has_mark(row[0])]
        if not marked or not self._driver.run(
            lambda session: self._driver.free_marks(session, marked), transaction=False
        ):
            return []

        def work(session: Session) -> list[Reset]:
            dead = self._driver.free_marks(session, marked)
            return self._sweep(session, queue, dead) if dead else []

        return self._driver.run(work, transaction=True)

    def _sweep(self, session: Session, queue: str, dead: list[str]) -> list[Reset]:
        """Put back the processing jobs of `queue` that are stalled or whose worker is `dead`,
        in the caller's transaction; announced to idle workers, as a job queued again or a
        slot of a limited queue freed may let them claim."""
        ids = [int(row[0]) for row in session.rows(sql.STALLED, {"queue": queue, "dead": dead})]
        if not ids or not session.count(sql.SWEEP, {"ids": ids, "dead": dead}):
            return []
        resets = [
            Reset(
                id=row[0],
                queue=row[1],
                task=_task_of(row[2]),
                attempt=row[3],
                resets=row[4],
                state=row[5],
                worker_gone=row[6] in dead,
            )
            for row in session.rows(sql.SWEPT, {"ids": ids})
        ]
        if resets:
            self._driver.notify(session, queue)
        return resets

    def hold_mark(self) -> Mark | None:
        return self._driver.hold_mark()

    def doorbell(self, queue: str) -> Listener | None:
        return self._driver.doorbell(queue)

    def listener(self) -> Listener | None:
        return self._driver.listener()

    # -- leases ---------------------------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, ttl: float) -> int | None:
        params = {"name": name, "holder": holder, "ttl": timedelta(seconds=ttl)}
        rows = self._driver.batch([(sql.TAKE_LEASE, params), (sql.HELD_LEASE, params)])[1].rows
        return int(rows[0][0]) if rows else None

    def renew_lease(self, name: str, holder: str, token: int, ttl: float) -> bool:
        params = {"name": name, "holder": holder, "token": token, "ttl": timedelta(seconds=ttl)}
        return self._count(sql.RENEW_LEASE, params) == 1

    def release_lease(self, name: str, holder: str, token: int) -> None:
        self._count(sql.RELEASE_LEASE, {"name": name, "holder": holder, "token": token})

    def list_leases(self) -> list[LeaseInfo]:
        moment = self._dialect.read_moment
        return [
            LeaseInfo(name, holder, int(token), None if expires is None else moment(expires))
            for name, holder, token, expires in self._rows(sql.LEASES, {})
        ]

    # -- fleet-wide schedules -------------------------------------------------------------------

    def claim_tick(self, name: str, tick: datetime, worker: str, stalled_after: float) -> TickClaim:
        key = {
            "name": name,
            "tick": tick,
            "worker": worker,
            "stalled_after": timedelta(seconds=stalled_after),
        }

        def work(session: Session) -> TickClaim:
            self._driver.lock_schedule(session, name)
            for dead, stalled in session.rows(sql.DEAD_RUNS, key):
                seconds = self._dialect.read_interval(stalled)
                error = f"worker died: no heartbeat for {seconds:g}s"
                session.count(sql.END_DEAD_RUN, {"name": name, "tick": dead, "error": error})
            if session.first(sql.TICK_TAKEN, key) is not None:
                return "taken"
            going = session.first(sql.RUN_GOING, key) is not None
            session.count(sql.RECORD_TICK, {**key, "state": "skipped" if going else "running"})
            session.count(sql.KEEP_LATEST_RUNS, {"name": name, "keep": _KEEP_RUNS - 1})
            return "skipped" if going else "claimed"

        return self._driver.run(work, transaction=True)

    def heartbeat_run(self, name: str, tick: datetime, worker: str) -> bool:
        return self._count(sql.HEARTBEAT_RUN, {"name": name, "tick": tick, "worker": worker}) == 1

    def finish_run(self, name: str, tick: datetime, worker: str, error: str | None) -> bool:
        params = {
            "name": name,
            "tick": tick,
            "worker": worker,
            "state": "completed" if error is None else "failed",
            "error": error,
        }
        results = self._driver.batch([(sql.FINISH_RUN, params), (sql.RUN_FINISHED, params)])
        return bool(results[1].rows)

    def schedule_runs(self, name: str, limit: int) -> list[ScheduleRun]:
        rows = self._rows(sql.SCHEDULE_RUNS, {"name": name, "limit": limit})
        return [self._schedule_run(row) for row in rows]

    def list_schedules(self) -> list[ScheduleInfo]:
        return [
            ScheduleInfo(row[0], self._schedule_run(row[:7]), int(row[7]), int(row[8]))
            for row in self._rows(sql.SCHEDULES, {})
        ]

    def _schedule_run(self, row: Sequence[Any]) -> ScheduleRun:
        """A `ScheduleRun` from a row of name, tick, state, worker, started_at, finished_at and
        error."""
        moment = self._dialect.read_moment
        return ScheduleRun(
            name=row[0],
            tick=moment(row[1]),
            state=row[2],
            worker=row[3],
            started_at=moment(row[4]),
            finished_at=None if row[5] is None else moment(row[5]),
            error=row[6],
        )

    # -- out-of-band migrations -----------------------------------------------------------------

    def register_migrations(self, ids: Sequence[str]) -> None:
        def work(session: Session) -> None:
            for migration_id in ids:
                session.count(sql.REGISTER_MIGRATION, {"id": migration_id})

        self._driver.run(work, transaction=True)

    def set_migration_direction(self, migration_id: str, reverse: bool) -> None:
        self._count(sql.SET_MIGRATION_DIRECTION, {"id": migration_id, "reverse": reverse})

    def store_migration_progress(self, migration_id: str, progress: float) -> None:
        self._count(sql.STORE_MIGRATION_PROGRESS, {"id": migration_id, "progress": progress})

    def record_migration_error(self, migration_id: str, error: str) -> None:
        params = {"id": migration_id, "error": error, "keep": _KEEP_MIGRATION_ERRORS - 1}
        self._driver.batch(
            [(sql.RECORD_MIGRATION_ERROR, params), (sql.KEEP_LATEST_MIGRATION_ERRORS, params)]
        )

    def migrations(self, ids: Sequence[str] | None = None) -> list[MigrationStatus]:
        if ids is None:
            rows = self._rows(sql.MIGRATIONS, {})
        elif not ids:
            return []
        else:
            rows = self._rows(sql.MIGRATIONS_OF, {"ids": list(ids)})
        return _migration_statuses(rows, self._dialect.read_moment)

    # -- rows -----------------------------------------------------------------------------------

    def job(self, row: Sequence[Any], *, strict: bool = False) -> Job:
        """A `Job` from a row of `JOB_FIELDS`, its JSON read as text. JSON that can't be decoded
        (nested too deep for this stack) raises `_Unreadable` if `strict`, else reads as None:
        a listing shows such a job (failed, saying why) instead of failing."""
        moment = self._dialect.read_moment
        return Job(
            id=row[0],
            queue=row[1],
            payload=_decoded(row[2], row[0], "payload", strict=strict),
            state=row[3],
            priority=row[4],
            attempts=row[5],
            max_attempts=row[6],
            resets=row[7],
            key=row[8],
            enqueued_at=moment(row[9]),
            run_after=moment(row[10]),
            started_at=None if row[11] is None else moment(row[11]),
            finished_at=None if row[12] is None else moment(row[12]),
            heartbeat_at=None if row[13] is None else moment(row[13]),
            worker=row[14],
            cancel_requested=bool(row[15]),
            last_error=row[16],
            result=None if row[17] is None else _decoded(row[17], row[0], "result", strict=strict),
            group=row[18],
            snoozes=row[19],
        )

    def _claims(self, rows: Iterable[Sequence[Any]]) -> list[Claim]:
        """The claims of claimed rows; a row that can't be read (its payload does not decode)
        ends its job failed, saying why, instead of reaching (and killing) a worker."""
        claims, unreadable = [], []
        for row in rows:
            try:
                claims.append(Claim(job=self.job(row, strict=True), token=row[-1]))
            except _Unreadable as error:
                unreadable.append((int(row[0]), str(row[-1]), error.reason))
        if unreadable:
            self._driver.batch(
                [
                    (sql.FINISH["failed"], {"id": job_id, "token": token, "error": reason})
                    for job_id, token, reason in unreadable
                ]
            )
            logger.error(
                "jobs %s could not be read and are failed: %s",
                ", ".join(str(job_id) for job_id, _, _ in unreadable),
                unreadable[0][2],
            )
        return claims

    def _count(self, template: str, params: Params) -> int:
        return self._driver.run(lambda session: session.count(template, params), transaction=False)

    def _rows(self, template: str, params: Params) -> list[tuple[Any, ...]]:
        return self._driver.run(lambda session: session.rows(template, params), transaction=False)

    def _first(self, template: str, params: Params) -> tuple[Any, ...]:
        return self._driver.run(
            lambda session: _first(session, template, params), transaction=False
        )


class _Unreadable(StoreError):
    """A row the store holds but can't turn into a job."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _decoded(text: str, job_id: int, what: str, *, strict: bool) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        if not strict:
            return None
        reason = storable(f"job {job_id}: its {what} can't be decoded: {describe_error(error)}")
        raise _Unreadable(reason) from None


def _task_of(payload: str) -> str | None:
    try:
        return task_of(json.loads(payload))
    except (ValueError, RecursionError):
        return None


def _first(session: Session, template: str, params: Params | None = None) -> tuple[Any, ...]:
    row = session.first(template, params or {})
    if row is None:  # pragma: no cover - an aggregate always gives a row
        msg = "the database gave no row for an aggregate"
        raise StoreError(msg)
    return row


def _one(queue: str, job_id: int, states: Sequence[JobState]) -> Params:
    """The parameters of a cancel or a retry of one job, in one of `states`."""
    return {"queue": queue, "states": list(states), "low": job_id, "high": job_id}


def _batch(queue: str, state: JobState, ids: Sequence[int]) -> Params:
    """The parameters of a cancel or a retry of a batch: the range of its ids (highest first),
    the jobs there still in `state`."""
    return {"queue": queue, "states": [state], "low": ids[-1], "high": ids[0]}


def _claim_of(claim_id: str) -> dict[str, object]:
    return {"claim": claim_id, "claim_length": len(claim_id)}


def _job_row(queue: str, job: NewJob) -> Params:
    """The parameters of INSERT_JOB for `job`."""
    return {
        "queue": queue,
        "payload": job.payload,
        "priority": job.priority,
        "max_attempts": job.max_attempts,
        "key": job.key,
        "task": job.task,
        "group": job.group,
        "run_at": job.run_at,
        "delay": timedelta(seconds=job.delay),
    }


def _in_order(claims: list[Claim]) -> list[Claim]:
    """Claims in the order their jobs run (RETURNING gives no order)."""
    return sorted(claims, key=lambda claim: (-claim.job.priority, claim.job.run_after, claim.id))


def _read_back(claim: Sequence[tuple[str, Params]]) -> int:
    """The position, among the statements of a claim, of the one whose rows are its jobs."""
    return next(n for n, (template, _) in enumerate(claim) if template in _READ_BACK)


def _done_rows(kind: OutcomeKind, ended: Sequence[tuple[Claim, Outcome]]) -> list[tuple[Any, ...]]:
    """The rows of `done` for FINISH_MANY: each claim's id and token, and its outcome's
    parameters."""
    names = sql.OUTCOME_PARAMETERS[kind]
    return [(claim.id, claim.token, *_outcome_values(outcome, names)) for claim, outcome in ended]


def _outcome_values(outcome: Outcome, names: tuple[str, ...]) -> list[object]:
    given = {
        "result": outcome.result,
        "error": outcome.error,
        "delay": timedelta(seconds=outcome.delay),
    }
    return [given[name] for name in names]


def _finish(claim: Claim, outcome: Outcome) -> list[tuple[str, Params]]:
    """The statements of an outcome: write it, then see whether it is on the row."""
    params = {
        "id": claim.id,
        "token": claim.token,
        "result": outcome.result,
        "error": outcome.error,
        "delay": timedelta(seconds=outcome.delay),
    }
    return [(sql.FINISH[outcome.kind], params), (sql.FINISHED, params)]


def _migration_statuses(
    rows: Sequence[Sequence[Any]], moment: Callable[[Any], datetime]
) -> list[MigrationStatus]:
    """Statuses from rows of (id, progress, reverse, updated_at, error's at, error), ordered by
    id then newest error first, an error's columns None where a migration has none."""
    found: dict[str, tuple[MigrationStatus, list[MigrationError]]] = {}
    for row in rows:
        if row[0] not in found:
            status = MigrationStatus(
                id=row[0],
                progress=float(row[1]),
                reverse=bool(row[2]),
                updated_at=moment(row[3]),
                errors=(),
            )
            found[row[0]] = (status, [])
        if row[4] is not None:
            found[row[0]][1].append(MigrationError(at=moment(row[4]), error=row[5]))
    return [
        MigrationStatus(s.id, s.progress, s.reverse, s.updated_at, tuple(errors))
        for s, errors in found.values()
    ]


def newer_schema_error(store: str, found: int, known: int) -> StoreError:
    """The error for a store whose schema a newer version of routines wrote."""
    msg = (
        f"{store} has schema version {found}, written by a newer version of routines; this one "
        f"knows versions up to {known}: upgrade routines in this program"
    )
    return StoreError(msg)
