"""The SQLite backend: stdlib `sqlite3`, one database file shared by the processes of one host.

All of its SQL is here. The file is in WAL mode; every write is one `BEGIN IMMEDIATE`
transaction, so a write never upgrades a read lock (which fails at once, busy timeout or not);
each thread has its own connection (`close()` reaches them all through a registry). "database
is locked" never reaches the caller while the lock frees within the store's `timeout`: the busy
handler waits for it, and the few cases SQLite does not hand to the busy handler (switching to
WAL, recovering a WAL) are retried against the same deadline. Past it, the call fails as
unavailable. Not for network filesystems: SQLite's locks do not hold there.

Times are integer microseconds since the Unix epoch, read from `julianday('now')`: this host's
wall clock, in milliseconds. SELECTs are drained with `fetchall()` before a COMMIT.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Final, TypeVar

from typing_extensions import final

from .._status import describe_error
from . import _sql
from ._backend import (
    Claim,
    Heartbeat,
    ScheduleRun,
    migration_statuses,
    newer_schema_error,
    schedule_runs,
)
from ._errors import StoreError
from ._queue import JOB_STATES, job_from_row
from ._sql import LIVE_STATES

if TYPE_CHECKING:
    from ._backend import Claimer, ErrorKind, MigrationStatus, NewJob, Outcome, TickClaim
    from ._queue import Job, JobState

__all__ = ["MIGRATIONS", "SQLiteBackend"]

logger = logging.getLogger("routines.durable")

T = TypeVar("T")

MINIMUM_VERSION: Final = (3, 24, 0)

# The database's clock in integer microseconds since the Unix epoch (its resolution is 1 ms).
_NOW: Final = "SELECT CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND: Final = timedelta(microseconds=1)

_SQLITE_BUSY: Final = 5
_SQLITE_LOCKED: Final = 6
# Waits between retries of a write SQLite refused without calling its busy handler.
_FIRST_RETRY_WAIT: Final = 0.001
_MAX_RETRY_WAIT: Final = 0.05
_PURGE_BATCH: Final = 500  # rows per purge transaction, so other writers get their turn
_KEEP_RUNS: Final = 1000  # the runs of a schedule kept, newest first, and one still going
_KEEP_MIGRATION_ERRORS: Final = 100  # the errors of a migration kept, newest first
_HEARTBEAT_BATCH: Final = 400  # (id, token) pairs per statement: 800 of SQLite's 999 variables

# The schema's steps (see _sql.py) in SQLite's types, by storage class: moments and intervals in
# integer microseconds, booleans as 0 and 1, JSON as text. "{p}" is the table prefix (the store's
# schema name); the backend writes every moment, so none has a default.
MIGRATIONS: Final = _sql.schema_steps(
    table=lambda name: f'"{{p}}_{name}"',
    index=lambda name: f'"{{p}}_{name}"',
    types=_sql.SchemaTypes(
        identity="INTEGER PRIMARY KEY AUTOINCREMENT",
        integer="INTEGER", bigint="INTEGER", moment="INTEGER", interval="INTEGER",
        boolean="INTEGER", false="0",
        text="TEXT", json="TEXT",
        real="REAL",
        now_default="",
    ),
)  # fmt: skip

_JOB_COLUMNS: Final = _sql.job_columns()
# :now and ?1 are the database's now, read at the start of the write.
_STALLED: Final = _sql.stalled_assignments(now="?1")
_OUTCOMES: Final = _sql.outcome_assignments(
    now=":now", result=":result", error=":error", run_after=":now + :delay"
)


@final
class SQLiteBackend:
    """A `Backend` on the SQLite file at `path` (absolute), its tables prefixed `<schema>_`."""

    def __init__(self, path: str, *, timeout: float, schema: str) -> None:
        self._path = path
        self._timeout = timeout
        self._prefix = schema
        self._jobs = f'"{schema}_jobs"'
        self._leases = f'"{schema}_leases"'
        self._runs = f'"{schema}_schedule_runs"'
        self._migrations = f'"{schema}_migrations"'
        self._migration_errors = f'"{schema}_migration_errors"'
        self._version_table = f'"{schema}_schema_version"'
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: dict[threading.Thread, sqlite3.Connection] = {}
        self._closed = threading.Event()  # also ends the waits between busy retries

    def __repr__(self) -> str:
        return f"SQLiteBackend({self._path!r}, schema={self._prefix!r})"

    # -- connections ----------------------------------------------------------------------------

    def open(self) -> None:
        if sqlite3.sqlite_version_info < MINIMUM_VERSION:
            msg = (
                f"the SQLite store needs SQLite {'.'.join(map(str, MINIMUM_VERSION))} or newer; "
                f"this Python has {sqlite3.sqlite_version}"
            )
            raise StoreError(msg)
        self._run(_enable_wal, write=False)
        version = self._run(self._schema_version, write=False)
        if version != len(MIGRATIONS):
            self._run(self._migrate, write=True)

    def close(self) -> None:
        with self._lock:
            self._closed.set()
            connections = list(self._connections.values())
            self._connections.clear()
        for connection in connections:
            _close(connection)

    def classify(self, error: Exception) -> ErrorKind | None:
        if isinstance(error, sqlite3.OperationalError) and _is_busy(error):
            return "unavailable"
        if isinstance(error, sqlite3.Error):
            return "error"
        return None

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            return connection
        connection = sqlite3.connect(
            self._path,
            timeout=self._timeout,  # the busy handler's wait
            isolation_level=None,  # no implicit transactions: every write says BEGIN IMMEDIATE
            check_same_thread=False,  # close() closes it from another thread
        )
        with self._lock:
            if self._closed.is_set():
                _close(connection)
                msg = f"the SQLite store {self._path} is closed"
                raise sqlite3.ProgrammingError(msg)
            # Threads come and go: close the connections of those that ended.
            for thread in [thread for thread in self._connections if not thread.is_alive()]:
                _close(self._connections.pop(thread))
            self._connections[threading.current_thread()] = connection
        self._local.connection = connection
        return connection

    def _run(self, work: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        """Run `work` on this thread's connection (in one BEGIN IMMEDIATE transaction if it
        writes), retrying while SQLite reports the database busy, until the timeout."""
        deadline = time.monotonic() + self._timeout
        wait = _FIRST_RETRY_WAIT
        shortened = False
        connection = self._connection()
        try:
            while True:
                try:
                    return _attempt(connection, work, write=write)
                except sqlite3.OperationalError as error:
                    remaining = deadline - time.monotonic()
                    if not _is_busy(error) or remaining <= 0:
                        raise
                    logger.debug(
                        "SQLite store %s busy, retrying: %s", self._path, describe_error(error)
                    )
                if self._closed.wait(min(wait, remaining)):
                    msg = f"the SQLite store {self._path} is closed"
                    raise sqlite3.ProgrammingError(msg)
                wait = min(wait * 2, _MAX_RETRY_WAIT)
                # The busy handler of the next try waits no longer than the call has left.
                _set_busy_timeout(connection, deadline - time.monotonic())
                shortened = True
        finally:
            if shortened and not self._closed.is_set():
                _set_busy_timeout(connection, self._timeout)

    # -- schema ---------------------------------------------------------------------------------

    def _schema_version(self, connection: sqlite3.Connection) -> int:
        table = f"{self._prefix}_schema_version"
        found = connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchall()
        if not found:
            return 0
        rows = connection.execute(f"SELECT version FROM {self._version_table}").fetchall()
        return int(rows[0][0]) if rows else 0

    def _migrate(self, connection: sqlite3.Connection) -> None:
        """Create or upgrade the schema; runs holding the write lock, so one process does it."""
        version = self._schema_version(connection)
        if version > len(MIGRATIONS):
            raise newer_schema_error(f"the SQLite store {self._path}", version, len(MIGRATIONS))
        if version == len(MIGRATIONS):
            return  # another process did it while this one waited for the lock
        connection.execute(
            f"CREATE TABLE IF NOT EXISTS {self._version_table} (version INTEGER NOT NULL)"
        )
        if not connection.execute(f"SELECT 1 FROM {self._version_table}").fetchall():
            connection.execute(f"INSERT INTO {self._version_table} (version) VALUES (0)")
        for step in MIGRATIONS[version:]:
            for statement in step:
                connection.execute(statement.replace("{p}", self._prefix))
        connection.execute(f"UPDATE {self._version_table} SET version = ?", (len(MIGRATIONS),))
        logger.info(
            "SQLite store %s: schema %r now at version %d (was %d)",
            self._path,
            self._prefix,
            len(MIGRATIONS),
            version,
        )

    # -- the clock ------------------------------------------------------------------------------

    def now(self) -> datetime:
        return _datetime(self._run(_now, write=False))

    # -- queues ---------------------------------------------------------------------------------

    def enqueue(self, queue: str, jobs: Sequence[NewJob]) -> list[int]:
        if len(jobs) == 1 and jobs[0].key is None:
            return [self._enqueue_one(queue, jobs[0])]

        def work(connection: sqlite3.Connection) -> list[int]:
            now = _now(connection)
            ids = []
            for job in jobs:
                if job.key is not None:
                    live = connection.execute(
                        f"SELECT id FROM {self._jobs}"
                        f" WHERE queue = ? AND key = ? AND state IN {LIVE_STATES}",
                        (queue, job.key),
                    ).fetchall()
                    if live:
                        ids.append(int(live[0][0]))
                        continue
                if job.run_at is not None:
                    run_after = _microseconds(job.run_at)
                else:
                    run_after = now + round(job.delay * 1_000_000)
                cursor = connection.execute(
                    f"INSERT INTO {self._jobs}"
                    " (queue, payload, priority, max_attempts, key, enqueued_at, run_after)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (queue, job.payload, job.priority, job.max_attempts, job.key, now, run_after),
                )
                ids.append(_lastrowid(cursor))
            return ids

        return self._run(work, write=True)

    def _enqueue_one(self, queue: str, job: NewJob) -> int:
        """One job without a key: one statement in autocommit, its own transaction."""
        run_at = None if job.run_at is None else _microseconds(job.run_at)
        insert = (
            f"INSERT INTO {self._jobs}"
            " (queue, payload, priority, max_attempts, enqueued_at, run_after)"
            " SELECT ?, ?, ?, ?, clock.now, coalesce(?, clock.now + ?)"
            f" FROM ({_NOW} AS now) AS clock"
        )
        params = (
            queue,
            job.payload,
            job.priority,
            job.max_attempts,
            run_at,
            round(job.delay * 1_000_000),
        )
        return self._run(
            lambda connection: _lastrowid(connection.execute(insert, params)), write=False
        )

    def get(self, queue: str, job_id: int) -> Job | None:
        rows = self._run(
            lambda connection: connection.execute(
                f"SELECT {_JOB_COLUMNS} FROM {self._jobs} WHERE id = ? AND queue = ?",
                (job_id, queue),
            ).fetchall(),
            write=False,
        )
        return _job(rows[0]) if rows else None

    def cancel(self, queue: str, job_id: int) -> bool:
        def work(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute(
                f"""
                UPDATE {self._jobs} SET
                    state = CASE WHEN state = 'processing' THEN state ELSE 'canceled' END,
                    finished_at = CASE WHEN state = 'processing' THEN finished_at ELSE ?1 END,
                    cancel_requested = 1
                WHERE id = ?2 AND queue = ?3 AND state IN {LIVE_STATES}
                """,
                (_now(connection), job_id, queue),
            )
            return cursor.rowcount == 1

        return self._run(work, write=True)

    def retry(self, queue: str, job_id: int) -> bool:
        def work(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute(
                f"""
                UPDATE {self._jobs} SET
                    state = 'queued', attempts = 0, resets = 0, cancel_requested = 0,
                    run_after = ?1, started_at = NULL, finished_at = NULL, heartbeat_at = NULL,
                    worker = NULL, claim_token = NULL, stalled_after = NULL, max_resets = NULL,
                    result = NULL
                WHERE id = ?2 AND queue = ?3 AND state IN ('failed', 'canceled')
                    AND (key IS NULL OR NOT EXISTS (
                        SELECT 1 FROM {self._jobs} AS live WHERE live.queue = ?3
                            AND live.key = {self._jobs}.key AND live.state IN {LIVE_STATES}))
                """,
                (_now(connection), job_id, queue),
            )
            return cursor.rowcount == 1

        return self._run(work, write=True)

    def counts(self, queue: str) -> dict[JobState, int]:
        rows = self._run(
            lambda connection: connection.execute(
                f"SELECT state, count(*) FROM {self._jobs} WHERE queue = ? GROUP BY state",
                (queue,),
            ).fetchall(),
            write=False,
        )
        found = {state: int(count) for state, count in rows}
        return {state: found.get(state, 0) for state in JOB_STATES}

    def count_ready(self, queue: str) -> int:
        rows = self._run(
            lambda connection: connection.execute(
                f"SELECT count(*) FROM {self._jobs} WHERE queue = ?"
                f" AND state IN ('queued', 'errored') AND run_after <= ({_NOW})",
                (queue,),
            ).fetchall(),
            write=False,
        )
        return int(rows[0][0])

    def oldest_ready_age(self, queue: str) -> float | None:
        def work(connection: sqlite3.Connection) -> Any:
            now = _now(connection)
            return connection.execute(
                f"SELECT ? - min(run_after) FROM {self._jobs}"
                " WHERE queue = ? AND state IN ('queued', 'errored') AND run_after <= ?",
                (now, queue, now),
            ).fetchall()[0][0]

        age = self._run(work, write=False)
        return None if age is None else age / 1_000_000

    def purge(self, queue: str, *, older_than: float, states: Sequence[JobState]) -> int:
        cutoff = self._run(_now, write=False) - round(older_than * 1_000_000)
        marks = ", ".join("?" * len(states))

        def batch(connection: sqlite3.Connection) -> int:
            cursor = connection.execute(
                f"DELETE FROM {self._jobs} WHERE id IN (SELECT id FROM {self._jobs}"
                f" WHERE queue = ? AND state IN ({marks}) AND finished_at <= ? LIMIT ?)",
                (queue, *states, cutoff, _PURGE_BATCH),
            )
            return int(cursor.rowcount)

        # Batches in their own transactions: a long purge never holds the write lock for long.
        deleted = 0
        while True:
            count = self._run(batch, write=True)
            deleted += count
            if count < _PURGE_BATCH:
                return deleted

    # -- workers --------------------------------------------------------------------------------

    def claim(self, queue: str, claimer: Claimer, limit: int) -> list[Claim]:
        return self._run(
            lambda connection: self._claim(connection, queue, claimer, limit), write=True
        )

    def _claim(
        self, connection: sqlite3.Connection, queue: str, claimer: Claimer, limit: int
    ) -> list[Claim]:
        now = _now(connection)
        picked = connection.execute(
            f"SELECT id FROM {self._jobs}"
            " WHERE queue = ? AND state IN ('queued', 'errored') AND run_after <= ?"
            " ORDER BY priority DESC, run_after, id LIMIT ?",
            (queue, now, limit),
        ).fetchall()
        if not picked:
            return []
        ids = [row[0] for row in picked]
        marks = ", ".join("?" * len(ids))
        connection.execute(
            f"""
            UPDATE {self._jobs} SET
                state = 'processing', started_at = ?, heartbeat_at = ?, worker = ?,
                attempts = attempts + 1, claim_token = lower(hex(randomblob(16))),
                stalled_after = ?, max_resets = ?
            WHERE id IN ({marks})
            """,
            (
                now,
                now,
                claimer.worker_id,
                round(claimer.stalled_after * 1_000_000),
                claimer.max_resets,
                *ids,
            ),
        )
        rows = connection.execute(
            f"SELECT {_JOB_COLUMNS}, claim_token FROM {self._jobs} WHERE id IN ({marks})"
            " ORDER BY priority DESC, run_after, id",
            ids,
        ).fetchall()
        return [Claim(job=_job(row), token=row[-1]) for row in rows]

    def heartbeat(self, claims: Sequence[Claim]) -> Heartbeat:
        if not claims:
            return Heartbeat(gone=frozenset(), cancel_requested=frozenset())

        def work(connection: sqlite3.Connection) -> list[tuple[int, int]]:
            now = _now(connection)
            alive = []
            for start in range(0, len(claims), _HEARTBEAT_BATCH):
                chunk = claims[start : start + _HEARTBEAT_BATCH]
                pairs = ", ".join("(?, ?)" for _ in chunk)
                held = f"state = 'processing' AND (id, claim_token) IN (VALUES {pairs})"
                params = [value for claim in chunk for value in (claim.id, claim.token)]
                connection.execute(
                    f"UPDATE {self._jobs} SET heartbeat_at = ? WHERE {held}", (now, *params)
                )
                alive += connection.execute(
                    f"SELECT id, cancel_requested FROM {self._jobs} WHERE {held}", params
                ).fetchall()
            return alive

        return Heartbeat.of(claims, self._run(work, write=True))

    def finish(self, claim: Claim, outcome: Outcome) -> bool:
        return self._run(lambda connection: self._finish(connection, claim, outcome), write=True)

    def finish_and_claim(
        self, claim: Claim, outcome: Outcome, claimer: Claimer
    ) -> tuple[bool, Claim | None]:
        def work(connection: sqlite3.Connection) -> tuple[bool, Claim | None]:
            written = self._finish(connection, claim, outcome)
            found = self._claim(connection, claim.job.queue, claimer, 1)
            return written, found[0] if found else None

        return self._run(work, write=True)

    def _finish(self, connection: sqlite3.Connection, claim: Claim, outcome: Outcome) -> bool:
        cursor = connection.execute(
            f"UPDATE {self._jobs} SET {_OUTCOMES[outcome.kind]}"
            " WHERE id = :id AND claim_token = :token AND state = 'processing'",
            {
                "now": _now(connection),
                "id": claim.id,
                "token": claim.token,
                "result": outcome.result,
                "error": outcome.error,
                "delay": round(outcome.delay * 1_000_000),
            },
        )
        if cursor.rowcount == 1:
            return True
        return bool(
            connection.execute(
                f"SELECT 1 FROM {self._jobs} WHERE id = ? AND claim_token = ?",
                (claim.id, claim.token),
            ).fetchall()
        )

    # -- leases ---------------------------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, ttl: float) -> int | None:
        def work(connection: sqlite3.Connection) -> int | None:
            now = _now(connection)
            expires = now + round(ttl * 1_000_000)
            connection.execute(
                f"""
                INSERT INTO {self._leases} AS lease (name, holder, token, expires_at)
                VALUES (:name, :holder, 1, :expires)
                ON CONFLICT (name) DO UPDATE SET
                    token = CASE WHEN lease.holder = :holder AND lease.expires_at > :now
                                 THEN lease.token ELSE lease.token + 1 END,
                    holder = :holder, expires_at = :expires
                WHERE lease.holder IS NULL OR lease.expires_at <= :now
                    OR lease.holder = :holder
                """,
                {"name": name, "holder": holder, "now": now, "expires": expires},
            )
            rows = connection.execute(
                f"SELECT token FROM {self._leases}"
                " WHERE name = ? AND holder = ? AND expires_at = ?",
                (name, holder, expires),
            ).fetchall()
            return int(rows[0][0]) if rows else None

        return self._run(work, write=True)

    def renew_lease(self, name: str, holder: str, token: int, ttl: float) -> bool:
        def work(connection: sqlite3.Connection) -> bool:
            now = _now(connection)
            cursor = connection.execute(
                f"UPDATE {self._leases} SET expires_at = ? WHERE name = ? AND holder = ?"
                " AND token = ? AND expires_at > ?",
                (now + round(ttl * 1_000_000), name, holder, token, now),
            )
            return cursor.rowcount == 1

        return self._run(work, write=True)

    def release_lease(self, name: str, holder: str, token: int) -> None:
        def work(connection: sqlite3.Connection) -> None:
            connection.execute(
                f"UPDATE {self._leases} SET holder = NULL, expires_at = NULL"
                " WHERE name = ? AND holder = ? AND token = ?",
                (name, holder, token),
            )

        self._run(work, write=True)

    # -- fleet-wide schedules -------------------------------------------------------------------

    def claim_tick(self, name: str, tick: datetime, worker: str, stalled_after: float) -> TickClaim:
        # One BEGIN IMMEDIATE transaction: it holds the database's write lock, which serialises
        # every claim (of every schedule) on this host.
        def work(connection: sqlite3.Connection) -> TickClaim:
            now = _now(connection)
            key = {
                "name": name,
                "tick": _microseconds(tick),
                "worker": worker,
                "now": now,
                "stalled": round(stalled_after * 1_000_000),
                "keep": _KEEP_RUNS - 1,
            }
            connection.execute(
                f"""
                UPDATE {self._runs} SET state = 'failed', finished_at = :now,
                    error = 'worker died: no heartbeat for ' || (stalled_after / 1000000.0) || 's'
                WHERE name = :name AND state = 'running' AND heartbeat_at + stalled_after < :now
                """,
                key,
            )
            if connection.execute(
                f"SELECT 1 FROM {self._runs} WHERE name = :name AND tick = :tick", key
            ).fetchall():
                return "taken"
            going = connection.execute(
                f"SELECT 1 FROM {self._runs} WHERE name = :name AND state = 'running'", key
            ).fetchall()
            connection.execute(
                f"""
                INSERT INTO {self._runs} (name, tick, state, worker, started_at, finished_at,
                    heartbeat_at, stalled_after)
                VALUES (:name, :tick, :state, :worker, :now,
                        CASE WHEN :state = 'skipped' THEN :now END, :now, :stalled)
                """,
                {**key, "state": "skipped" if going else "running"},
            )
            connection.execute(
                f"""
                DELETE FROM {self._runs}
                WHERE name = :name AND state <> 'running' AND tick < (
                    SELECT tick FROM {self._runs} WHERE name = :name
                    ORDER BY tick DESC LIMIT 1 OFFSET :keep)
                """,
                key,
            )
            return "skipped" if going else "claimed"

        return self._run(work, write=True)

    def heartbeat_run(self, name: str, tick: datetime, worker: str) -> bool:
        def work(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute(
                f"UPDATE {self._runs} SET heartbeat_at = ? WHERE name = ? AND tick = ?"
                " AND worker = ? AND state = 'running'",
                (_now(connection), name, _microseconds(tick), worker),
            )
            return cursor.rowcount == 1

        return self._run(work, write=True)

    def finish_run(self, name: str, tick: datetime, worker: str, error: str | None) -> bool:
        state = "completed" if error is None else "failed"

        def work(connection: sqlite3.Connection) -> bool:
            where = "name = ? AND tick = ? AND worker = ?"
            key = (name, _microseconds(tick), worker)
            cursor = connection.execute(
                f"UPDATE {self._runs} SET state = ?, finished_at = ?, error = ?"
                f" WHERE {where} AND state = 'running'",
                (state, _now(connection), error, *key),
            )
            if cursor.rowcount == 1:
                return True
            return bool(
                connection.execute(
                    f"SELECT 1 FROM {self._runs} WHERE {where} AND state = ?", (*key, state)
                ).fetchall()
            )

        return self._run(work, write=True)

    def schedule_runs(self, name: str, limit: int) -> list[ScheduleRun]:
        def work(connection: sqlite3.Connection) -> list[Any]:
            return connection.execute(
                f"SELECT name, tick, state, worker, started_at, finished_at, error"
                f" FROM {self._runs} WHERE name = ? ORDER BY tick DESC LIMIT ?",
                (name, limit),
            ).fetchall()

        return schedule_runs(self._run(work, write=False), _datetime)

    # -- out-of-band migrations -----------------------------------------------------------------

    def register_migrations(self, ids: Sequence[str]) -> None:
        def work(connection: sqlite3.Connection) -> None:
            now = _now(connection)
            connection.executemany(
                f"INSERT INTO {self._migrations} (id, updated_at) VALUES (?, ?)"
                " ON CONFLICT DO NOTHING",
                [(migration_id, now) for migration_id in ids],
            )

        self._run(work, write=True)

    def set_migration_direction(self, migration_id: str, reverse: bool) -> None:
        def work(connection: sqlite3.Connection) -> None:
            connection.execute(
                f"""
                INSERT INTO {self._migrations} (id, reverse, updated_at)
                VALUES (:id, :reverse, :now)
                ON CONFLICT (id) DO UPDATE SET reverse = :reverse, updated_at = :now
                    WHERE reverse <> :reverse
                """,
                {"id": migration_id, "reverse": int(reverse), "now": _now(connection)},
            )

        self._run(work, write=True)

    def store_migration_progress(self, migration_id: str, progress: float) -> None:
        def work(connection: sqlite3.Connection) -> None:
            connection.execute(
                f"UPDATE {self._migrations} SET progress = ?, updated_at = ?"
                " WHERE id = ? AND progress <> ?",
                (progress, _now(connection), migration_id, progress),
            )

        self._run(work, write=True)

    def record_migration_error(self, migration_id: str, error: str) -> None:
        def work(connection: sqlite3.Connection) -> None:
            connection.execute(
                f"INSERT INTO {self._migration_errors} (migration_id, at, error) VALUES (?, ?, ?)",
                (migration_id, _now(connection), error),
            )
            connection.execute(
                f"""
                DELETE FROM {self._migration_errors} WHERE migration_id = :id AND id < (
                    SELECT id FROM {self._migration_errors} WHERE migration_id = :id
                    ORDER BY id DESC LIMIT 1 OFFSET :keep)
                """,
                {"id": migration_id, "keep": _KEEP_MIGRATION_ERRORS - 1},
            )

        self._run(work, write=True)

    def migrations(self, ids: Sequence[str] | None = None) -> list[MigrationStatus]:
        chosen = list(ids or ())
        where = "" if ids is None else f"WHERE m.id IN ({', '.join('?' * len(chosen))})"

        def work(connection: sqlite3.Connection) -> list[Any]:
            return connection.execute(
                f"""
                SELECT m.id, m.progress, m.reverse, m.updated_at, e.at, e.error
                FROM {self._migrations} m LEFT JOIN {self._migration_errors} e
                    ON e.migration_id = m.id
                {where} ORDER BY m.id, e.id DESC
                """,
                chosen,
            ).fetchall()

        if ids is not None and not chosen:
            return []
        return migration_statuses(self._run(work, write=False), _datetime)

    def listener(self) -> None:
        return None  # SQLite announces nothing: workers poll, in-process enqueues wake them

    def sweep_stalled(self, queue: str) -> int:
        def work(connection: sqlite3.Connection) -> int:
            cursor = connection.execute(
                f"UPDATE {self._jobs} SET {_STALLED} WHERE queue = ?2 AND state = 'processing'"
                " AND heartbeat_at + stalled_after < ?1",
                (_now(connection), queue),
            )
            return int(cursor.rowcount)

        return self._run(work, write=True)


def _attempt(
    connection: sqlite3.Connection, work: Callable[[sqlite3.Connection], T], *, write: bool
) -> T:
    if write:
        connection.execute("BEGIN IMMEDIATE")
    try:
        result = work(connection)
        if write:
            connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            _rollback(connection)
        raise
    return result


def _rollback(connection: sqlite3.Connection) -> None:
    try:
        connection.execute("ROLLBACK")
    except sqlite3.Error as error:  # the error being raised matters more; SQLite rolls back
        logger.debug("SQLite ROLLBACK failed: %s", describe_error(error))


def _close(connection: sqlite3.Connection) -> None:
    try:
        connection.close()
    except sqlite3.Error as error:
        logger.warning("closing a SQLite connection failed: %s", describe_error(error))


def _set_busy_timeout(connection: sqlite3.Connection, seconds: float) -> None:
    try:
        connection.execute(f"PRAGMA busy_timeout = {max(1, int(seconds * 1000))}")
    except sqlite3.Error as error:  # a connection closed meanwhile: its next use will say so
        logger.debug("setting SQLite's busy timeout failed: %s", describe_error(error))


def _enable_wal(connection: sqlite3.Connection) -> None:
    """Switch the file to WAL (it stays so); busy errors here skip the busy handler."""
    if connection.execute("PRAGMA journal_mode").fetchall()[0][0] == "wal":
        return
    mode = connection.execute("PRAGMA journal_mode = WAL").fetchall()[0][0]
    if mode != "wal":
        msg = f"the SQLite store could not switch its file to WAL mode: it stays in {mode!r} mode"
        raise StoreError(msg)


def _is_busy(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)  # Python 3.11+
    if isinstance(code, int):
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    text = error.args[0] if error.args and isinstance(error.args[0], str) else ""
    return "locked" in text or "busy" in text


def _now(connection: sqlite3.Connection) -> int:
    return int(connection.execute(_NOW).fetchall()[0][0])


def _lastrowid(cursor: sqlite3.Cursor) -> int:
    if cursor.lastrowid is None:  # pragma: no cover - an INSERT always sets it
        msg = "SQLite gave no id for an inserted job"
        raise StoreError(msg)
    return cursor.lastrowid


def _microseconds(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def _datetime(microseconds: int) -> datetime:
    return _EPOCH + timedelta(microseconds=microseconds)


def _job(row: Sequence[Any]) -> Job:
    return job_from_row(row, _datetime)
