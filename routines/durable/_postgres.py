"""The PostgreSQL backend: psycopg 3 and a psycopg_pool connection pool, for a fleet of hosts.

All of its SQL is here, and this module is the only one that imports psycopg: `open_store`
imports it when a `postgresql://` store is opened. The tables live in their own schema. Single
statements run in autocommit, so `now()` is each statement's time; the claim is one statement
(`FOR UPDATE SKIP LOCKED`), and no transaction stays open while a handler runs.

Waits are bounded by the store's `timeout`: the pool's wait for a connection, `lock_timeout`,
the connect timeout, and TCP keepalives and `tcp_user_timeout` for a network that went silent.
A connection found broken is dropped with the pool's idle ones, so that once the server is
back the next call gets a fresh connection instead of tripping over each dead one in turn.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import select
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool
from typing_extensions import final

from .._status import describe_error
from . import _sql
from ._backend import Claim, Heartbeat, ScheduleRun, newer_schema_error
from ._backend import migration_statuses as _migration_statuses
from ._backend import schedule_runs as _schedule_runs
from ._errors import StoreError
from ._queue import JOB_STATES, job_from_row
from ._sql import LIVE_STATES

if TYPE_CHECKING:
    from ._backend import Claimer, ErrorKind, MigrationStatus, NewJob, Outcome, TickClaim
    from ._queue import Job, JobState

__all__ = ["MIGRATIONS", "PostgresBackend"]

logger = logging.getLogger("routines.durable")

MINIMUM_SERVER_VERSION: Final = 130000  # gen_random_uuid() is built in from PostgreSQL 13
_POOL_MIN_SIZE: Final = 1
_POOL_MAX_SIZE: Final = 10
_POOL_WORKERS: Final = 2
_CLOSE_TIMEOUT: Final = 5.0
_KEEP_RUNS: Final = 1000  # the runs of a schedule kept, newest first, and one still going
_KEEP_MIGRATION_ERRORS: Final = 100  # the errors of a migration kept, newest first
_KEY_RACE_ROUNDS: Final = 10  # insert-or-find rounds for a key whose live job keeps changing

# The schema's steps (see _sql.py) in PostgreSQL's types; "{s}" is the quoted schema name.
MIGRATIONS: Final = _sql.schema_steps(
    table=lambda name: "{s}." + name,
    index=lambda name: name,  # an index lives in its table's schema
    types=_sql.SchemaTypes(
        identity="bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        text="text",
        json="json",
        integer="integer",
        bigint="bigint",
        real="double precision",
        boolean="boolean",
        false="false",
        moment="timestamptz",
        interval="interval",
        now_default=" DEFAULT now()",
    ),
    # The rows a schedule's tick claim locks (FOR UPDATE); SQLite's one writer needs none.
    also={1: ("CREATE TABLE {s}.schedules (name text PRIMARY KEY)",)},
)

_JOB_COLUMNS: Final = _sql.job_columns(json_as_text="::text")
_STALLED: Final = _sql.stalled_assignments(now="now()")
_OUTCOMES: Final = _sql.outcome_assignments(
    now="now()",
    result="%(result)s::json",
    error="%(error)s",
    run_after="now() + %(delay)s::float8 * interval '1 second'",
)

Connection = psycopg.Connection[tuple[Any, ...]]


@final
class PostgresBackend:
    """A `Backend` on the PostgreSQL database at `url`, its tables in the schema `schema`."""

    def __init__(self, url: str, *, shown: str, timeout: float, schema: str) -> None:
        try:
            settings = conninfo_to_dict(url)
        except psycopg.Error as error:
            problem = (describe_error(error) or "").replace(url, shown)  # libpq quotes the URL
            msg = f"url must be a valid libpq URL, got {shown!r}: {problem}"
            raise ValueError(msg) from None
        self._url = url
        self._shown = shown
        self._timeout = timeout
        self._schema = schema
        self._s = f'"{schema}"'  # a checked identifier: lowercase letters, digits and _
        # Enqueue notifies this channel, with the queue's name as payload (63 bytes at most).
        self.channel = f"{schema}_jobs"
        self._settings = _connection_settings(settings, timeout)
        self._pool: ConnectionPool[Connection] | None = None

    def __repr__(self) -> str:
        return f"PostgresBackend({self._shown!r}, schema={self._schema!r})"

    # -- connections ----------------------------------------------------------------------------

    def open(self) -> None:
        # One connection of its own first: a refusal (a wrong password, say) is raised as the
        # server said it, where the pool would only time out.
        with psycopg.connect(self._url, **self._settings) as connection:
            self._configure(connection)
            if connection.info.server_version < MINIMUM_SERVER_VERSION:
                msg = (
                    f"the store {self._shown} needs PostgreSQL 13 or newer, the server is "
                    f"{connection.info.server_version}"
                )
                raise StoreError(msg)
            self._migrate(connection)
        self._pool = ConnectionPool(
            self._url,
            kwargs=self._settings,
            min_size=_POOL_MIN_SIZE,
            max_size=_POOL_MAX_SIZE,
            timeout=self._timeout,
            # A connection killed while idle in the pool is replaced, not handed out.
            check=_check_connection,
            configure=self._configure,
            # Give up reconnecting early, so the next call after an outage starts afresh
            # instead of waiting out the pool's backoff.
            reconnect_timeout=self._timeout / 2,
            num_workers=_POOL_WORKERS,
            name=f"routines.durable:{self._schema}",
            open=False,
        )
        self._pool.open(wait=True, timeout=self._timeout)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close(timeout=_CLOSE_TIMEOUT)

    def classify(self, error: Exception) -> ErrorKind | None:
        # OperationalError covers a lost or refused connection, PoolTimeout, AdminShutdown,
        # lock_timeout (LockNotAvailable) and serialization failures: try again later.
        if isinstance(error, psycopg.OperationalError):
            return "unavailable"
        if isinstance(error, psycopg.Error):
            return "error"
        return None

    def _configure(self, connection: Connection) -> None:
        # A call waits for a row or advisory lock no longer than for a connection.
        lock_timeout = f"{max(1, round(self._timeout * 1000))}ms"
        connection.execute("SELECT set_config('lock_timeout', %s, false)", [lock_timeout])

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        pool = self._pool
        if pool is None:
            msg = f"the store {self._shown} is closed"
            raise StoreError(msg)
        try:
            with pool.connection() as connection:
                yield connection
        except psycopg.OperationalError as error:
            if _connection_lost(error):
                _drop_idle_connections(pool)
            raise

    def _one(self, query: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        """The first row of one autocommit statement, or None."""
        with self._connection() as connection:
            return connection.execute(self._sql(query), params).fetchone()

    def _rowcount(self, query: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        with self._connection() as connection:
            return connection.execute(self._sql(query), params).rowcount

    def _sql(self, query: str) -> str:
        return query.replace("{s}", self._s)

    # -- schema ---------------------------------------------------------------------------------

    def _schema_version(self, connection: Connection) -> int:
        found = connection.execute(
            "SELECT to_regclass(%s) IS NOT NULL", [f"{self._s}.schema_version"]
        ).fetchone()
        if not found or not found[0]:
            return 0
        row = connection.execute(self._sql("SELECT version FROM {s}.schema_version")).fetchone()
        return int(row[0]) if row else 0

    def _migrate(self, connection: Connection) -> None:
        """Create or upgrade the schema in one transaction holding an advisory lock on it, so
        processes that open the store at once wait for the first (concurrent CREATE ... IF NOT
        EXISTS statements fail on the catalog's unique indexes)."""
        known = len(MIGRATIONS)
        version = self._schema_version(connection)
        if version > known:
            raise newer_schema_error(f"the store {self._shown}", version, known)
        if version == known:
            return
        with connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", [_lock_key(self._schema)])
            connection.execute(self._sql("CREATE SCHEMA IF NOT EXISTS {s}"))
            connection.execute(
                self._sql(
                    "CREATE TABLE IF NOT EXISTS {s}.schema_version (version integer NOT NULL)"
                )
            )
            version = self._schema_version(connection)
            if version > known:
                raise newer_schema_error(f"the store {self._shown}", version, known)
            if version == known:
                return  # another process did it while this one waited for the lock
            if not connection.execute(self._sql("SELECT 1 FROM {s}.schema_version")).fetchone():
                connection.execute(self._sql("INSERT INTO {s}.schema_version VALUES (0)"))
            for step in MIGRATIONS[version:]:
                for statement in step:
                    connection.execute(self._sql(statement))
            connection.execute(self._sql("UPDATE {s}.schema_version SET version = %s"), [known])
        logger.info(
            "store %s: schema %r now at version %d (was %d)",
            self._shown,
            self._schema,
            known,
            version,
        )

    # -- the clock ------------------------------------------------------------------------------

    def now(self) -> datetime:
        return _utc(self._one("SELECT now()")[0])

    # -- queues ---------------------------------------------------------------------------------

    def enqueue(self, queue: str, jobs: Sequence[NewJob]) -> list[int]:
        if not jobs:
            return []
        if all(job.key is None for job in jobs):
            return self._enqueue_keyless(queue, jobs)
        insert = self._sql(
            f"""
            INSERT INTO {{s}}.jobs (queue, payload, priority, max_attempts, key, run_after)
            VALUES (%(queue)s, %(payload)s::json, %(priority)s, %(max_attempts)s, %(key)s,
                    coalesce(%(run_at)s::timestamptz,
                             now() + %(delay)s::float8 * interval '1 second'))
            ON CONFLICT (queue, key) WHERE key IS NOT NULL AND state IN {LIVE_STATES} DO NOTHING
            RETURNING id
            """
        )
        params = [_insert_params(queue, job) for job in jobs]
        with self._connection() as connection, connection.transaction():
            cursor = connection.cursor()
            cursor.executemany(insert, params, returning=True)
            ids: list[int | None] = []
            while True:
                row = cursor.fetchone()
                ids.append(None if row is None else int(row[0]))
                if not cursor.nextset():
                    break
            inserted = any(job_id is not None for job_id in ids)
            for index, job_id in enumerate(ids):
                if job_id is None:  # a live job holds the key: find it
                    ids[index], new = self._insert_or_find(connection, insert, params[index])
                    inserted = inserted or new
            if inserted:  # in the same transaction: sent on commit, and only then
                connection.execute("SELECT pg_notify(%s, %s)", [self.channel, queue])
        return [job_id for job_id in ids if job_id is not None]

    def _enqueue_keyless(self, queue: str, jobs: Sequence[NewJob]) -> list[int]:
        """Jobs without a key in one autocommit statement, its notification included: one
        round trip, atomic as a statement is. The rows are inserted in the order of the jobs,
        each taking the next identity, so their ids sorted are the jobs' ids in order."""
        row = self._one(
            """
            WITH new AS (
                INSERT INTO {s}.jobs (queue, payload, priority, max_attempts, run_after)
                SELECT %(queue)s, job.payload::json, job.priority, job.max_attempts,
                       coalesce(job.run_at, now() + job.delay * interval '1 second')
                FROM unnest(%(payloads)s::text[], %(priorities)s::integer[],
                            %(max_attempts)s::integer[], %(run_ats)s::timestamptz[],
                            %(delays)s::float8[])
                    WITH ORDINALITY AS job(payload, priority, max_attempts, run_at, delay, n)
                ORDER BY job.n
                RETURNING id
            )
            SELECT array_agg(id ORDER BY id), pg_notify(%(channel)s, %(queue)s) FROM new
            """,
            {
                "queue": queue,
                "channel": self.channel,
                "payloads": [job.payload for job in jobs],
                "priorities": [job.priority for job in jobs],
                "max_attempts": [job.max_attempts for job in jobs],
                "run_ats": [job.run_at for job in jobs],
                "delays": [job.delay for job in jobs],
            },
        )
        return [int(job_id) for job_id in row[0]]

    def _insert_or_find(
        self, connection: Connection, insert: str, params: dict[str, Any]
    ) -> tuple[int, bool]:
        """The id of the live job holding the key, or of a new job if that one just ended."""
        find = self._sql(
            f"SELECT id FROM {{s}}.jobs WHERE queue = %(queue)s AND key = %(key)s"
            f" AND state IN {LIVE_STATES}"
        )
        for _ in range(_KEY_RACE_ROUNDS):
            row = connection.execute(find, params).fetchone()
            if row is not None:
                return int(row[0]), False
            row = connection.execute(insert, params).fetchone()
            if row is not None:
                return int(row[0]), True
        msg = f"the live job of key {params['key']!r} kept changing while it was enqueued"
        raise StoreError(msg)

    def get(self, queue: str, job_id: int) -> Job | None:
        row = self._one(
            f"SELECT {_JOB_COLUMNS} FROM {{s}}.jobs WHERE id = %s AND queue = %s", [job_id, queue]
        )
        return None if row is None else _job(row)

    def cancel(self, queue: str, job_id: int) -> bool:
        return (
            self._rowcount(
                f"""
            UPDATE {{s}}.jobs SET
                state = CASE WHEN state = 'processing' THEN state ELSE 'canceled' END,
                finished_at = CASE WHEN state = 'processing' THEN finished_at ELSE now() END,
                cancel_requested = true
            WHERE id = %s AND queue = %s AND state IN {LIVE_STATES}
            """,
                [job_id, queue],
            )
            == 1
        )

    def retry(self, queue: str, job_id: int) -> bool:
        try:
            return (
                self._rowcount(
                    f"""
                UPDATE {{s}}.jobs AS job SET
                    state = 'queued', attempts = 0, resets = 0, cancel_requested = false,
                    run_after = now(), started_at = NULL, finished_at = NULL,
                    heartbeat_at = NULL, worker = NULL, claim_token = NULL,
                    stalled_after = NULL, max_resets = NULL, result = NULL
                WHERE id = %(id)s AND queue = %(queue)s AND state IN ('failed', 'canceled')
                    AND (key IS NULL OR NOT EXISTS (
                        SELECT 1 FROM {{s}}.jobs AS live WHERE live.queue = %(queue)s
                            AND live.key = job.key AND live.state IN {LIVE_STATES}))
                """,
                    {"id": job_id, "queue": queue},
                )
                == 1
            )
        except pg_errors.UniqueViolation:
            return False  # a job with its key was enqueued at the same moment

    def counts(self, queue: str) -> dict[JobState, int]:
        with self._connection() as connection:
            rows = connection.execute(
                self._sql("SELECT state, count(*) FROM {s}.jobs WHERE queue = %s GROUP BY state"),
                [queue],
            ).fetchall()
        found = {state: int(count) for state, count in rows}
        return {state: found.get(state, 0) for state in JOB_STATES}

    def count_ready(self, queue: str) -> int:
        row = self._one(
            "SELECT count(*) FROM {s}.jobs WHERE queue = %s"
            " AND state IN ('queued', 'errored') AND run_after <= now()",
            [queue],
        )
        return int(row[0])

    def oldest_ready_age(self, queue: str) -> float | None:
        row = self._one(
            "SELECT extract(epoch FROM now() - min(run_after)) FROM {s}.jobs"
            " WHERE queue = %s AND state IN ('queued', 'errored') AND run_after <= now()",
            [queue],
        )
        return None if row is None or row[0] is None else float(row[0])

    def purge(self, queue: str, *, older_than: float, states: Sequence[JobState]) -> int:
        return self._rowcount(
            "DELETE FROM {s}.jobs WHERE queue = %s AND state = ANY(%s)"
            " AND finished_at <= now() - %s::float8 * interval '1 second'",
            [queue, list(states), older_than],
        )

    # -- workers --------------------------------------------------------------------------------

    def claim(self, queue: str, claimer: Claimer, limit: int) -> list[Claim]:
        with self._connection() as connection:
            rows = connection.execute(
                self._sql(_CLAIM), _claim_params(queue, claimer, limit)
            ).fetchall()
        return _claims(rows)

    def heartbeat(self, claims: Sequence[Claim]) -> Heartbeat:
        if not claims:
            return Heartbeat(gone=frozenset(), cancel_requested=frozenset())
        with self._connection() as connection:
            alive = connection.execute(
                self._sql(
                    """
                    UPDATE {s}.jobs AS job SET heartbeat_at = now()
                    FROM unnest(%s::bigint[], %s::text[]) AS claim(id, token)
                    WHERE job.id = claim.id AND job.claim_token = claim.token
                        AND job.state = 'processing'
                    RETURNING job.id, job.cancel_requested
                    """
                ),
                [[claim.id for claim in claims], [claim.token for claim in claims]],
            ).fetchall()
        return Heartbeat.of(claims, alive)

    def finish(self, claim: Claim, outcome: Outcome) -> bool:
        row = self._one(_finish(outcome), _finish_params(claim, outcome))
        return bool(row[0])

    def finish_and_claim(
        self, claim: Claim, outcome: Outcome, claimer: Claimer
    ) -> tuple[bool, Claim | None]:
        # One pipeline, one Sync: both statements in one round trip and one transaction.
        params = _claim_params(claim.job.queue, claimer, 1)
        with self._connection() as connection, connection.pipeline():
            finished = connection.execute(
                self._sql(_finish(outcome)), _finish_params(claim, outcome)
            )
            claimed = connection.execute(self._sql(_CLAIM), params)
            row = finished.fetchone()
            rows = claimed.fetchall()
        found = _claims(rows)
        return bool(row and row[0]), found[0] if found else None

    # -- leases ---------------------------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, ttl: float) -> int | None:
        # Two takers of an expired lease race on the row lock of ON CONFLICT: the second sees
        # the first's new expiry in its WHERE, and gets nothing.
        row = self._one(
            """
            INSERT INTO {s}.leases AS lease (name, holder, token, expires_at)
            VALUES (%(name)s, %(holder)s, 1, now() + %(ttl)s::float8 * interval '1 second')
            ON CONFLICT (name) DO UPDATE SET
                token = CASE WHEN lease.holder = %(holder)s AND lease.expires_at > now()
                             THEN lease.token ELSE lease.token + 1 END,
                holder = %(holder)s,
                expires_at = now() + %(ttl)s::float8 * interval '1 second'
            WHERE lease.holder IS NULL OR lease.expires_at <= now()
                OR lease.holder = %(holder)s
            RETURNING token
            """,
            {"name": name, "holder": holder, "ttl": ttl},
        )
        return None if row is None else int(row[0])

    def renew_lease(self, name: str, holder: str, token: int, ttl: float) -> bool:
        return (
            self._rowcount(
                """
            UPDATE {s}.leases SET expires_at = now() + %(ttl)s::float8 * interval '1 second'
            WHERE name = %(name)s AND holder = %(holder)s AND token = %(token)s
                AND expires_at > now()
            """,
                {"name": name, "holder": holder, "token": token, "ttl": ttl},
            )
            == 1
        )

    def release_lease(self, name: str, holder: str, token: int) -> None:
        self._rowcount(
            "UPDATE {s}.leases SET holder = NULL, expires_at = NULL"
            " WHERE name = %s AND holder = %s AND token = %s",
            [name, holder, token],
        )

    # -- fleet-wide schedules -------------------------------------------------------------------

    def claim_tick(self, name: str, tick: datetime, worker: str, stalled_after: float) -> TickClaim:
        key = {"name": name, "tick": tick, "worker": worker, "stalled": stalled_after}
        with self._connection() as connection, connection.transaction():
            run = connection.execute
            run(
                self._sql("INSERT INTO {s}.schedules VALUES (%(name)s) ON CONFLICT DO NOTHING"), key
            )
            # Every claim of this schedule waits here for the one before it: "claim unless a
            # run is going" races under READ COMMITTED otherwise.
            run(self._sql("SELECT 1 FROM {s}.schedules WHERE name = %(name)s FOR UPDATE"), key)
            run(
                self._sql(
                    """
                    UPDATE {s}.schedule_runs SET state = 'failed', finished_at = now(),
                        error = 'worker died: no heartbeat for ' || stalled_after::text
                    WHERE name = %(name)s AND state = 'running'
                        AND heartbeat_at + stalled_after < now()
                    """
                ),
                key,
            )
            taken = run(
                self._sql(
                    "SELECT 1 FROM {s}.schedule_runs WHERE name = %(name)s AND tick = %(tick)s"
                ),
                key,
            ).fetchone()
            if taken:
                return "taken"
            going = run(
                self._sql(
                    "SELECT 1 FROM {s}.schedule_runs WHERE name = %(name)s AND state = 'running'"
                ),
                key,
            ).fetchone()
            state: TickClaim = "skipped" if going else "claimed"
            run(
                self._sql(
                    """
                    INSERT INTO {s}.schedule_runs
                        (name, tick, state, worker, started_at, finished_at, heartbeat_at,
                         stalled_after)
                    VALUES (%(name)s, %(tick)s, %(state)s, %(worker)s, now(),
                            CASE WHEN %(state)s = 'skipped' THEN now() END, now(),
                            %(stalled)s::float8 * interval '1 second')
                    """
                ),
                {**key, "state": "skipped" if going else "running"},
            )
            run(
                self._sql(
                    """
                    DELETE FROM {s}.schedule_runs
                    WHERE name = %(name)s AND state <> 'running' AND tick < (
                        SELECT tick FROM {s}.schedule_runs WHERE name = %(name)s
                        ORDER BY tick DESC OFFSET %(keep)s LIMIT 1)
                    """
                ),
                {**key, "keep": _KEEP_RUNS - 1},
            )
            return state

    def heartbeat_run(self, name: str, tick: datetime, worker: str) -> bool:
        return (
            self._rowcount(
                "UPDATE {s}.schedule_runs SET heartbeat_at = now() WHERE name = %s AND tick = %s"
                " AND worker = %s AND state = 'running'",
                [name, tick, worker],
            )
            == 1
        )

    def finish_run(self, name: str, tick: datetime, worker: str, error: str | None) -> bool:
        state = "completed" if error is None else "failed"
        row = self._one(
            """
            WITH ended AS (
                UPDATE {s}.schedule_runs SET state = %(state)s, finished_at = now(),
                    error = %(error)s
                WHERE name = %(name)s AND tick = %(tick)s AND worker = %(worker)s
                    AND state = 'running'
                RETURNING 1)
            SELECT EXISTS (SELECT 1 FROM ended) OR EXISTS (
                SELECT 1 FROM {s}.schedule_runs WHERE name = %(name)s AND tick = %(tick)s
                    AND worker = %(worker)s AND state = %(state)s)
            """,
            {"name": name, "tick": tick, "worker": worker, "state": state, "error": error},
        )
        return bool(row and row[0])

    def schedule_runs(self, name: str, limit: int) -> list[ScheduleRun]:
        with self._connection() as connection:
            rows = connection.execute(
                self._sql(
                    "SELECT name, tick, state, worker, started_at, finished_at, error"
                    " FROM {s}.schedule_runs WHERE name = %s ORDER BY tick DESC LIMIT %s"
                ),
                [name, limit],
            ).fetchall()
        return _schedule_runs(rows, _utc)

    # -- out-of-band migrations -----------------------------------------------------------------

    def register_migrations(self, ids: Sequence[str]) -> None:
        with self._connection() as connection:
            connection.cursor().executemany(
                self._sql("INSERT INTO {s}.migrations (id) VALUES (%s) ON CONFLICT DO NOTHING"),
                [(migration_id,) for migration_id in ids],
            )

    def set_migration_direction(self, migration_id: str, reverse: bool) -> None:
        self._rowcount(
            """
            INSERT INTO {s}.migrations (id, reverse) VALUES (%(id)s, %(reverse)s)
            ON CONFLICT (id) DO UPDATE SET reverse = %(reverse)s, updated_at = now()
                WHERE {s}.migrations.reverse <> %(reverse)s
            """,
            {"id": migration_id, "reverse": reverse},
        )

    def store_migration_progress(self, migration_id: str, progress: float) -> None:
        self._rowcount(
            "UPDATE {s}.migrations SET progress = %(progress)s, updated_at = now()"
            " WHERE id = %(id)s AND progress <> %(progress)s",
            {"id": migration_id, "progress": progress},
        )

    def record_migration_error(self, migration_id: str, error: str) -> None:
        with self._connection() as connection, connection.transaction():
            connection.execute(
                self._sql("INSERT INTO {s}.migration_errors (migration_id, error) VALUES (%s, %s)"),
                [migration_id, error],
            )
            connection.execute(
                self._sql(
                    """
                    DELETE FROM {s}.migration_errors WHERE migration_id = %(id)s AND id < (
                        SELECT id FROM {s}.migration_errors WHERE migration_id = %(id)s
                        ORDER BY id DESC OFFSET %(keep)s LIMIT 1)
                    """
                ),
                {"id": migration_id, "keep": _KEEP_MIGRATION_ERRORS - 1},
            )

    def migrations(self, ids: Sequence[str] | None = None) -> list[MigrationStatus]:
        where = "" if ids is None else "WHERE m.id = ANY(%(ids)s)"
        with self._connection() as connection:
            rows = connection.execute(
                self._sql(
                    f"""
                    SELECT m.id, m.progress, m.reverse, m.updated_at, e.at, e.error
                    FROM {{s}}.migrations m LEFT JOIN {{s}}.migration_errors e
                        ON e.migration_id = m.id
                    {where} ORDER BY m.id, e.id DESC
                    """
                ),
                {"ids": list(ids or ())},
            ).fetchall()
        return _migration_statuses(rows, _utc)

    def listener(self) -> PostgresListener:
        return PostgresListener(self._url, self._settings, self.channel, self._shown)

    def sweep_stalled(self, queue: str) -> int:
        return self._rowcount(
            f"UPDATE {{s}}.jobs SET {_STALLED} WHERE queue = %s AND state = 'processing'"
            " AND heartbeat_at < now() - stalled_after",
            [queue],
        )


def _connection_settings(settings: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Connection parameters that bound every wait by about `timeout`; the URL's own win."""
    seconds = max(1, math.ceil(timeout))
    defaults: dict[str, Any] = {
        "connect_timeout": max(2, seconds),  # libpq's least
        "application_name": "routines",
        # A peer that went silent is found by keepalives (idle) or tcp_user_timeout (sending).
        "keepalives": 1,
        "keepalives_idle": seconds,
        "keepalives_interval": 1,
        "keepalives_count": 3,
    }
    if psycopg.pq.version() >= 120000:
        defaults["tcp_user_timeout"] = max(1, round(timeout * 1000))
    chosen = {name: value for name, value in defaults.items() if name not in settings}
    chosen["autocommit"] = True
    return chosen


def _connection_lost(error: psycopg.OperationalError) -> bool:
    """Whether `error` means the connection (and maybe its idle siblings) is gone: no server
    error code (a socket closed, a pool timeout), a connection error, or a shutdown."""
    code = error.sqlstate
    return code is None or code.startswith(("08", "57P"))


def _check_connection(connection: Connection) -> None:
    """The pool's check before it hands out a connection, with a round trip only when one is
    needed: a server that ends a session (a restart, `pg_terminate_backend`) sends an error
    and closes the socket, which makes it readable, while an idle healthy session receives
    nothing (pooled connections never LISTEN). So a readable socket gets the pool's full
    check (an empty statement), which raises for a dead session; a quiet one is handed out.
    A network cut silently is not seen here, nor by the full check, which would only wait:
    the statement itself then fails within the store's timeout (keepalives,
    `tcp_user_timeout`)."""
    if connection.closed or connection.broken:
        msg = "the connection is closed"
        raise psycopg.OperationalError(msg)
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN)
    if poller.poll(0):
        ConnectionPool.check_connection(connection)


def _drop_idle_connections(pool: ConnectionPool[Connection]) -> None:
    # The pool checks a connection before handing it out, but waits between failed checks:
    # after a restart, a call could spend its whole timeout on the dead ones.
    logger.info("pool %s lost a connection: replacing its idle connections", pool.name)
    pool.drain()


def _lock_key(schema: str) -> int:
    """The advisory lock that serialises schema changes: a stable 64-bit number per schema."""
    digest = hashlib.blake2b(f"routines.durable schema {schema}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def _claim_params(queue: str, claimer: Claimer, limit: int) -> dict[str, Any]:
    return {
        "queue": queue,
        "limit": limit,
        "worker": claimer.worker_id,
        "stalled_after": claimer.stalled_after,
        "max_resets": claimer.max_resets,
    }


def _claims(rows: Sequence[Any]) -> list[Claim]:
    claims = [Claim(job=_job(row), token=row[-1]) for row in rows]
    claims.sort(key=lambda claim: (-claim.job.priority, claim.job.run_after, claim.id))
    return claims


def _finish(outcome: Outcome) -> str:
    """The statement that writes `outcome` if the claim's token still holds the job: one row,
    whether this claim's outcome is on the row."""
    return f"""
        WITH written AS (
            UPDATE {{s}}.jobs SET {_OUTCOMES[outcome.kind]}
            WHERE id = %(id)s AND claim_token = %(token)s AND state = 'processing'
            RETURNING 1
        )
        SELECT EXISTS (SELECT 1 FROM written) OR EXISTS (
            SELECT 1 FROM {{s}}.jobs WHERE id = %(id)s AND claim_token = %(token)s
                AND state <> 'processing')
        """


def _finish_params(claim: Claim, outcome: Outcome) -> dict[str, Any]:
    return {
        "id": claim.id,
        "token": claim.token,
        "result": outcome.result,
        "error": outcome.error,
        "delay": outcome.delay,
    }


def _insert_params(queue: str, job: NewJob) -> dict[str, Any]:
    return {
        "queue": queue,
        "payload": job.payload,
        "priority": job.priority,
        "max_attempts": job.max_attempts,
        "key": job.key,
        "run_at": job.run_at,
        "delay": job.delay,
    }


_CLAIM: Final = f"""
    WITH picked AS (
        SELECT id FROM {{s}}.jobs
        WHERE queue = %(queue)s AND state IN ('queued', 'errored') AND run_after <= now()
        ORDER BY priority DESC, run_after, id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    )
    UPDATE {{s}}.jobs AS job SET
        state = 'processing', started_at = now(), heartbeat_at = now(),
        worker = %(worker)s, attempts = job.attempts + 1,
        claim_token = gen_random_uuid()::text,
        stalled_after = %(stalled_after)s::float8 * interval '1 second',
        max_resets = %(max_resets)s
    FROM picked WHERE job.id = picked.id
    RETURNING {_sql.job_columns(table="job", json_as_text="::text")}, job.claim_token
"""


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc)


def _job(row: Sequence[Any]) -> Job:
    return job_from_row(row, _utc)


@final
class PostgresListener:
    """LISTEN on the store's channel, on a connection of its own (not from the pool: a pooled
    connection would be handed to someone else between waits)."""

    def __init__(self, url: str, settings: dict[str, Any], channel: str, shown: str) -> None:
        self._url = url
        self._settings = settings
        self._channel = channel
        self._shown = shown
        self._connection: Connection | None = None

    def wait(self, timeout: float) -> set[str]:
        connection = self._connection
        if connection is None or connection.closed:
            connection = psycopg.connect(self._url, **self._settings)  # autocommit
            self._connection = connection
            # LISTEN again on every new connection: a reconnected listener hears nothing else.
            connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        queues: set[str] = set()
        try:
            for notify in connection.notifies(timeout=timeout, stop_after=1):
                queues.add(notify.payload)
            if queues:  # take the others already there, without waiting
                for notify in connection.notifies(timeout=0):
                    queues.add(notify.payload)
        except psycopg.Error:
            self.close()
            raise
        return queues

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def __repr__(self) -> str:
        return f"PostgresListener({self._shown!r}, channel={self._channel!r})"
