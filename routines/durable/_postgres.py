"""The PostgreSQL driver: psycopg 3 and a psycopg_pool connection pool, for a fleet of hosts.

It runs the SQL store's statements (`_sqlstore.py`); what is PostgreSQL's own is here, and this
module is the only one that imports psycopg: `open_store` imports it when a `postgresql://`
store is opened. The tables live in their own schema. Single statements run in autocommit, so
`now()` is each statement's time; a batch of statements is one pipeline (one round trip, one
implicit transaction), so a claim, or an outcome and the next claim, cost one round trip and no
transaction stays open while a handler runs.

Waits are bounded by the store's `timeout`: the pool's wait for a connection, `lock_timeout`,
the connect timeout, and TCP keepalives and `tcp_user_timeout` for a network that went silent.
A connection found broken is dropped with the pool's idle ones, so that once the server is
back the next call gets a fresh connection instead of tripping over each dead one in turn.

Where PostgreSQL differs from the neutral statements, and why:
- a claim picks its rows `FOR UPDATE SKIP LOCKED`: under READ COMMITTED, concurrent claims
  would otherwise wait for each other's rows and then take them twice or not at all;
- claims of one schedule lock a row of `schedules` (`FOR UPDATE`): "claim unless a run is
  going" races under READ COMMITTED otherwise;
- an enqueue NOTIFYs the store's channel in its transaction, so listeners wake on commit;
- jobs without a key are inserted by one statement from one JSON array of their payloads
  (`json_array_elements`): one round trip for any number of jobs, its NOTIFY included;
- the schema is changed under a transaction-level advisory lock (concurrent `CREATE ... IF NOT
  EXISTS` statements fail on the catalog's unique indexes), in a schema of its own;
- a process's liveness mark is a session-level advisory lock on a connection of its own, which
  the server releases when the session ends (at once when the process dies); a sweeper tests
  marks with `pg_try_advisory_xact_lock`, in the sweep's transaction (`PostgresMark`).

An app's own connection (`run_on`) is checked against the catalog: the store's database, and the
store's jobs table itself (by its oid) visible and writable there. Its statements run on a
cursor of their own, which dumps a length of time as microseconds: an interval with a days part
would be added to a moment in the session's TimeZone, 23 or 25 hours a day across a DST change.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import re
import select
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, Final, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.adapt import Buffer, Dumper
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool
from typing_extensions import final

from .._flag import Flag, wait_any
from .._status import describe_error, describe_value
from ._backend import ErrorKind, Mark
from ._errors import StoreError
from ._marks import SharedMark
from ._model import NewJob, mark_key, marked_holder_id
from ._sql import Dialect, Params, Result, SchemaTypes, Session, wrong_connection

__all__ = ["PostgresDriver", "PostgresListener", "PostgresMark", "postgres_dialect"]

logger = logging.getLogger("routines.durable")

T = TypeVar("T")

MINIMUM_SERVER_VERSION: Final = 130000  # gen_random_uuid() is built in from PostgreSQL 13
_POOL_MIN_SIZE: Final = 1
_POOL_MAX_SIZE: Final = 10
_POOL_WORKERS: Final = 2
_CLOSE_TIMEOUT: Final = 5.0

Connection = psycopg.Connection[tuple[Any, ...]]

_MICROSECOND: Final = timedelta(microseconds=1)

# The store's jobs table as a connection's role sees it: its oid, and whether it may use it.
_JOBS_TABLE: Final = """
    SELECT c.oid::bigint, has_schema_privilege(n.oid, 'USAGE')
        AND has_table_privilege(c.oid, 'INSERT') AND has_table_privilege(c.oid, 'SELECT'),
        current_user
    FROM pg_namespace AS n JOIN pg_class AS c ON c.relnamespace = n.oid
    WHERE n.nspname = :schema AND c.relname = 'jobs' AND c.relkind = 'r'
"""


def postgres_dialect(schema: str) -> Dialect:
    """PostgreSQL's spelling, its tables in the schema `schema` (a checked identifier)."""
    quoted = f'"{schema}"'
    return Dialect(
        name="postgresql",
        table=lambda name: f"{quoted}.{name}",
        index=lambda name: name,  # an index lives in its table's schema
        types=SchemaTypes(
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
        now="now()",
        clock="clock_timestamp()",  # now() is when the transaction began, before any wait
        pyformat=True,
        json_param="::json",
        json_text="::text",
        skip_locked=" FOR UPDATE SKIP LOCKED",
        update_from=True,
        returning=True,
        for_update=" FOR UPDATE",
        least="LEAST",
        moment=lambda moment: moment,
        interval=lambda length: length,
        read_moment=_utc,
        read_interval=_seconds,
    )


@final
class PostgresDriver:
    """The SQL store's driver for the PostgreSQL database at `url`, its tables in the schema
    `schema`."""

    def __init__(self, url: str, *, shown: str, timeout: float, schema: str) -> None:
        try:
            settings = conninfo_to_dict(url)
        except psycopg.Error as error:
            problem = (describe_error(error) or "").replace(url, shown)  # libpq quotes the URL
            msg = f"url must be a valid libpq URL, got {shown!r}: {problem}"
            raise ValueError(msg) from None
        _check_settings(settings, shown)
        self._url = url
        self._shown = shown
        self._timeout = timeout
        self._schema = schema
        self._s = f'"{schema}"'  # a checked identifier: lowercase letters, digits and _
        # Enqueue notifies this channel, with the queue's name as payload (63 bytes at most).
        self.channel = f"{schema}_jobs"
        self._settings = _connection_settings(settings, timeout)
        self._pool: ConnectionPool[Connection] | None = None
        self._jobs_table: tuple[str, int] | None = None  # the store's database and jobs oid
        self._mark = SharedMark(lambda: PostgresMark(self._url, self._mark_settings(), self._shown))
        self.dialect = postgres_dialect(schema)
        self.described = f"the store {shown}"
        # The rows a schedule's tick claim locks (FOR UPDATE); SQLite's one writer needs none.
        self.schema_additions: Mapping[int, tuple[str, ...]] = {
            1: (f"CREATE TABLE {self._s}.schedules (name text PRIMARY KEY)",)
        }

    def __repr__(self) -> str:
        return f"PostgresDriver({self._shown!r}, schema={self._schema!r})"

    # -- connections ----------------------------------------------------------------------------

    def connect(self) -> None:
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
        pool = ConnectionPool(
            self._url,
            kwargs=self._settings,
            min_size=_POOL_MIN_SIZE,
            max_size=_POOL_MAX_SIZE,
            timeout=self._timeout,
            configure=self._configure,
            # Give up reconnecting early, so the next call after an outage starts afresh
            # instead of waiting out the pool's backoff.
            reconnect_timeout=self._timeout / 2,
            num_workers=_POOL_WORKERS,
            name=f"routines.durable:{self._schema}",
            open=False,
        )
        try:
            pool.open(wait=True, timeout=self._timeout)
        except BaseException:
            pool.close(timeout=_CLOSE_TIMEOUT)
            raise
        self._pool = pool

    def close(self) -> None:
        self._mark.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close(timeout=_CLOSE_TIMEOUT)

    def classify(self, error: Exception) -> ErrorKind | None:
        # OperationalError covers a lost or refused connection, PoolTimeout, AdminShutdown,
        # lock_timeout (LockNotAvailable) and serialization failures: try again later; but not
        # a server that refused this store's settings, which no retry fixes.
        if isinstance(error, psycopg.OperationalError):
            return "error" if _refused_settings(error) else "unavailable"
        if isinstance(error, psycopg.Error):
            return "error"
        return None

    def unique_violation(self, error: Exception) -> bool:
        return isinstance(error, pg_errors.UniqueViolation)

    def _mark_settings(self) -> dict[str, Any]:
        settings = dict(self._settings)
        if "application_name" in settings:  # else the URL's own: that one wins
            settings["application_name"] = "routines liveness mark"  # for pg_stat_activity
        return settings

    def _configure(self, connection: Connection) -> None:
        # A call waits for a row or advisory lock no longer than for a connection; and times
        # cross in UTC whatever the database's or the role's TimeZone: in another zone, a
        # moment near the ends of Python's years 1 to 9999 would not read back.
        lock_timeout = f"{max(1, round(self._timeout * 1000))}ms"
        connection.execute(
            "SELECT set_config('lock_timeout', %s, false), set_config('TimeZone', 'UTC', false)",
            [lock_timeout],
        )

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        pool = self._pool
        if pool is None:
            msg = f"the store {self._shown} is closed"
            raise StoreError(msg)
        try:
            connection = self._healthy_connection(pool)
            try:
                yield connection
            finally:
                pool.putconn(connection)
        except psycopg.OperationalError as error:
            if _connection_lost(error):
                _drop_idle_connections(pool)
            raise

    def _healthy_connection(self, pool: ConnectionPool[Connection]) -> Connection:
        """A connection from the pool that the server has not ended. The first one found dead
        (a restart, a failover, `pg_terminate_backend`) means its idle siblings are dead too:
        they are all dropped at once and a fresh connection is taken, instead of the pool's
        own check loop meeting each dead one in turn with a backoff between them, which spent
        the call's whole timeout."""
        deadline = time.monotonic() + self._timeout
        connection = pool.getconn(timeout=self._timeout)
        if _alive(connection):
            return connection
        pool.putconn(connection)  # broken now: the pool discards it
        _drop_idle_connections(pool)
        return pool.getconn(timeout=max(0.001, deadline - time.monotonic()))

    def run(self, work: Callable[[Session], T], *, transaction: bool) -> T:
        with self._connection() as connection:
            if not transaction:
                return work(_Session(connection, self.dialect))
            with connection.transaction():
                return work(_Session(connection, self.dialect))

    def batch(self, statements: Sequence[tuple[str, Params]]) -> list[Result]:
        if len(statements) == 1:  # one autocommit statement: no pipeline to enter and leave
            [(template, params)] = statements
            with self._connection() as connection:
                cursor = connection.execute(*self.dialect.statement(template, params))
                rows = cursor.fetchall() if cursor.description else []
                return [Result(rows, cursor.rowcount)]
        # One pipeline, one Sync: every statement in one round trip and one transaction.
        with self._connection() as connection, connection.pipeline() as pipeline:
            cursors = [
                connection.execute(*self.dialect.statement(template, params))
                for template, params in statements
            ]
            pipeline.sync()
            return [
                Result(cursor.fetchall() if cursor.description else [], cursor.rowcount)
                for cursor in cursors
            ]

    def run_on(self, connection: object, work: Callable[[Session], T], *, transaction: bool) -> T:
        if not isinstance(connection, psycopg.Connection):  # an AsyncConnection is not one
            raise wrong_connection(
                connection, "a psycopg 3 Connection (not async) to the store's database"
            )
        if connection.closed:
            msg = (
                f"connection must be open, got a closed one ({describe_value(connection)}): "
                f"pass an open connection to {self._shown}"
            )
            raise ValueError(msg)
        status = connection.info.transaction_status
        if status == TransactionStatus.INERROR:
            msg = (
                f"connection is in a failed transaction ({describe_value(connection)}): an "
                "earlier statement failed; roll it back, then enqueue in a new transaction"
            )
            raise ValueError(msg)
        # The app's row factory and TimeZone are its own: see _LengthDumper.
        with connection.cursor(row_factory=tuple_row) as cursor:
            cursor.adapters.register_dumper(timedelta, _LengthDumper)
            session = _Session(cursor, self.dialect)
            self._check_database(connection, session)
            if not (transaction and connection.autocommit and status == TransactionStatus.IDLE):
                return work(session)
            with connection.transaction():  # autocommit and no transaction open: one of its own
                return work(session)

    def _check_database(self, connection: psycopg.Connection[Any], session: _Session) -> None:
        """That the app's connection reaches the store's database and jobs table, and may use
        it: the database's name first (known without a query), then the table's oid."""
        database, table = self._store_jobs_table()
        if connection.info.dbname != database:
            msg = (
                f"connection must be to the store's database {database!r} ({self._shown}), got "
                f"one to the database {connection.info.dbname!r}"
            )
            raise ValueError(msg)
        row = session.first(_JOBS_TABLE, {"schema": self._schema})
        if row is None or row[0] != table:
            msg = (
                f"connection reaches a database {database!r} where the store's schema "
                f"{self._schema!r} {'is another one' if row else 'is not'}: another server? "
                f"connect to the store's database ({self._shown})"
            )
            raise ValueError(msg)
        if not row[1]:
            msg = (
                f"connection's role {row[2]!r} may not write the store's jobs "
                f"table {self._schema}.jobs: grant it USAGE on the schema and INSERT, SELECT on "
                "the table, or connect as the store's role"
            )
            raise ValueError(msg)

    def _store_jobs_table(self) -> tuple[str, int]:
        if self._jobs_table is None:
            with self._connection() as connection:
                row = _Session(connection, self.dialect).first(
                    _JOBS_TABLE, {"schema": self._schema}
                )
                if row is None:  # pragma: no cover - the store created it when it opened
                    msg = f"the store {self._shown} has no jobs table"
                    raise StoreError(msg)
                self._jobs_table = (connection.info.dbname, int(row[0]))
        return self._jobs_table

    # -- what PostgreSQL does its own way ---------------------------------------------------------

    def table_exists(self, session: Session, table: str) -> bool:
        found = session.first(
            "SELECT to_regclass(:name) IS NOT NULL", {"name": f"{self._s}.{table}"}
        )
        return bool(found and found[0])

    def lock_schema(self, session: Session) -> None:
        session.count("SELECT pg_advisory_xact_lock(:key)", {"key": _lock_key(self._schema)})
        session.count(f"CREATE SCHEMA IF NOT EXISTS {self._s}")

    def lock_schedule(self, session: Session, name: str) -> None:
        session.count(
            f"INSERT INTO {self._s}.schedules VALUES (:name) ON CONFLICT DO NOTHING", {"name": name}
        )
        session.count(
            f"SELECT 1 FROM {self._s}.schedules WHERE name = :name FOR UPDATE", {"name": name}
        )

    def notify(self, session: Session, queue: str) -> None:
        session.count(
            "SELECT pg_notify(:channel, :queue)", {"channel": self.channel, "queue": queue}
        )

    def insert_announced(
        self, session: Session, template: str, params: Params, queue: str
    ) -> int | None:
        # One statement: the insert and, only if it inserted the row, its NOTIFY.
        row = session.first(
            f"WITH new AS ({template} RETURNING id)"
            " SELECT id, pg_notify(:channel, :announced) FROM new",
            {**params, "channel": self.channel, "announced": queue},
        )
        return None if row is None else int(row[0])

    def listener(self) -> PostgresListener:
        return PostgresListener(self._url, self._settings, self.channel, self._shown)

    def doorbell(self, queue: str) -> None:
        return None  # the listener hears every process's enqueues

    def hold_mark(self) -> Mark:
        return self._mark.hold()

    def free_marks(self, session: Session, workers: Sequence[str]) -> list[str]:
        # Tested by taking each mark's lock for the transaction, not by reading pg_locks: a
        # lock its process holds can't be taken, whatever a snapshot of pg_locks would say, and
        # one taken here stays taken until the sweep that follows has committed, so a worker
        # whose session was cut and that takes its mark back at that moment waits for the sweep
        # instead of claiming under a mark the sweep is about to judge free. A key that
        # something else holds too (a collision) makes a dead mark look held: its jobs are
        # then left to their heartbeats; never the other way round.
        keys = {mark_key(worker): worker for worker in workers}
        rows = session.rows(
            "SELECT key FROM {values:keys} AS mark(key)"
            " WHERE pg_try_advisory_xact_lock(key::bigint)",
            {"keys": [(key,) for key in keys]},
        )
        return [keys[int(row[0])] for row in rows]

    def enqueue_keyless(self, queue: str, jobs: Sequence[NewJob]) -> list[int] | None:
        """Jobs without a key in one autocommit statement, its notification included: one
        round trip, atomic as a statement is. The rows are inserted in the order of the jobs,
        each taking the next identity, so their ids sorted are the jobs' ids in order. The
        options the jobs share (as those of one `enqueue_many` do) are sent once, not as arrays;
        jobs of different options take the statements' own path. The payloads go as one JSON
        array, which the server parses once (a text[] of 10,000 payloads, each cast to json,
        cost a fifth of the statement), and the tasks as an array only if a job has one."""
        first = jobs[0]
        shared = (first.priority, first.max_attempts, first.run_at, first.delay, first.group)
        if any(
            (job.priority, job.max_attempts, job.run_at, job.delay, job.group) != shared
            for job in jobs
        ):
            return None
        # unnest(NULL) is no rows: ROWS FROM gives each job a NULL task
        tasks = None if all(job.task is None for job in jobs) else [job.task for job in jobs]
        with self._connection() as connection:
            row = connection.execute(
                f"""
                WITH new AS (
                    INSERT INTO {self._s}.jobs
                        (queue, payload, priority, max_attempts, task, job_group, run_after)
                    SELECT %(queue)s, job.payload, %(priority)s, %(max_attempts)s,
                           job.task, %(group)s::text, coalesce(%(run_at)s::timestamptz,
                                              now() + %(delay)s::float8 * interval '1 second')
                    FROM ROWS FROM (json_array_elements(%(payloads)s::json),
                                    unnest(%(tasks)s::text[]))
                        WITH ORDINALITY AS job(payload, task, n)
                    ORDER BY job.n
                    RETURNING id
                )
                SELECT array_agg(id ORDER BY id), pg_notify(%(channel)s, %(queue)s) FROM new
                """,
                {
                    "queue": queue,
                    "channel": self.channel,
                    "payloads": f"[{','.join([job.payload for job in jobs])}]",
                    "tasks": tasks,
                    "priority": first.priority,
                    "max_attempts": first.max_attempts,
                    "group": first.group,
                    "run_at": first.run_at,
                    "delay": first.delay,
                },
            ).fetchone()
        if row is None:  # pragma: no cover - an aggregate always gives a row
            msg = "PostgreSQL gave no ids for the inserted jobs"
            raise StoreError(msg)
        return [int(job_id) for job_id in row[0]]


@final
class _Session:
    """A pooled connection, lent for one call; statements run in autocommit unless the call
    holds a transaction. Or a cursor of an app's connection, in the app's transaction."""

    __slots__ = ("_connection", "_dialect")

    def __init__(
        self, connection: Connection | psycopg.Cursor[tuple[Any, ...]], dialect: Dialect
    ) -> None:
        self._connection = connection
        self._dialect = dialect

    def rows(self, template: str, params: Params | None = None) -> list[tuple[Any, ...]]:
        return self._connection.execute(*self._dialect.statement(template, params or {})).fetchall()

    def first(self, template: str, params: Params | None = None) -> tuple[Any, ...] | None:
        return self._connection.execute(*self._dialect.statement(template, params or {})).fetchone()

    def count(self, template: str, params: Params | None = None) -> int:
        return self._connection.execute(*self._dialect.statement(template, params or {})).rowcount

    def insert(self, template: str, params: Params | None = None) -> int | None:
        row = self.first(f"{template} RETURNING id", params)
        return None if row is None else int(row[0])

    def insert_many(self, template: str, rows: Sequence[Params]) -> list[int]:
        ids = [self.insert(template, row) for row in rows]
        if None in ids:  # pragma: no cover - the rows are made so that none conflicts
            msg = "a row of a batch that can't conflict inserted nothing"
            raise StoreError(msg)
        return [job_id for job_id in ids if job_id is not None]


# libpq's options whose values it checks only when it connects: checked when the store is made,
# so that a typo is a ValueError naming `url`, not an outage retried for ever.
_CHOICES: Final = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "gssencmode": ("disable", "prefer", "require"),
    "channel_binding": ("disable", "prefer", "require"),
    "target_session_attrs": (
        "any", "read-write", "read-only", "primary", "standby", "prefer-standby",
    ),
    "load_balance_hosts": ("disable", "random"),
    "sslnegotiation": ("postgres", "direct"),
    "replication": ("true", "on", "yes", "1", "false", "off", "no", "0", "database"),
}  # fmt: skip
_INTEGERS: Final = (
    "connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval",
    "keepalives_count", "tcp_user_timeout", "sslcompression",
)  # fmt: skip
# What a server says, on its way to closing the connection, about settings no retry will fix
# (a wrong password, a role or database that does not exist, an unknown option). PostgreSQL
# gives no SQLSTATE for a refused connection, so these are its (English) messages.
_REFUSALS: Final = re.compile(
    r"password authentication failed|authentication failed for user|role \".*\" does not exist"
    r"|database \".*\" does not exist|no pg_hba\.conf entry|unrecognized configuration parameter"
    r"|invalid value for parameter|permission denied for database|is not permitted to log in"
    r"|password must be a string|server requested .* authentication"
)


def _check_settings(settings: dict[str, Any], shown: str) -> None:
    for name, value in settings.items():
        text = "" if value is None else str(value)
        if name in _CHOICES and text not in _CHOICES[name]:
            msg = (
                f"url has {name}={text!r}, which libpq does not know: use one of "
                f"{', '.join(_CHOICES[name])}; got {shown!r}"
            )
            raise ValueError(msg)
        if name in _INTEGERS and not text.lstrip("-").isdigit():
            msg = f"url has {name}={text!r}: it must be an integer; got {shown!r}"
            raise ValueError(msg)
    for port in str(settings.get("port") or "").split(","):
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            msg = f"url has port {port!r}: a port is a number from 1 to 65535; got {shown!r}"
            raise ValueError(msg)


def _refused_settings(error: psycopg.OperationalError) -> bool:
    """Whether the server refused the connection for settings no retry fixes."""
    return error.sqlstate is None and _REFUSALS.search(describe_error(error) or "") is not None


@final
class _LengthDumper(Dumper):
    """A length of time as microseconds alone. psycopg sends a `timedelta` of a day or more
    with a days part, and PostgreSQL adds days to a moment in the session's TimeZone (23 or
    25 hours across a DST change): an app's connection may have any."""

    oid = psycopg.adapters.types["interval"].oid

    def dump(self, obj: timedelta) -> Buffer:
        return f"{obj // _MICROSECOND} microseconds".encode()


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


def _alive(connection: Connection) -> bool:
    """Whether a pooled connection is fit to hand out, with a round trip only when one is
    needed: a server that ends a session (a restart, `pg_terminate_backend`) sends an error
    and closes the socket, which makes it readable, while an idle healthy session receives
    nothing (pooled connections never LISTEN). So a readable socket gets the pool's full
    check (an empty statement), which fails for a dead session; a quiet one is handed out.
    A network cut silently is not seen here, nor by the full check, which would only wait:
    the statement itself then fails within the store's timeout (keepalives,
    `tcp_user_timeout`)."""
    if connection.closed or connection.broken:
        return False
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN)
    if not poller.poll(0):
        return True
    try:
        ConnectionPool.check_connection(connection)
    except psycopg.Error:
        return False
    return True


def _drop_idle_connections(pool: ConnectionPool[Connection]) -> None:
    # The pool checks a connection before handing it out, but waits between failed checks:
    # after a restart, a call could spend its whole timeout on the dead ones.
    logger.info("pool %s lost a connection: replacing its idle connections", pool.name)
    pool.drain()


def _lock_key(schema: str) -> int:
    """The advisory lock that serialises schema changes: a stable 64-bit number per schema."""
    digest = hashlib.blake2b(f"routines.durable schema {schema}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc)


def _seconds(length: timedelta) -> float:
    return length.total_seconds()


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


_MARK_CHECK_EVERY: Final = 0.5  # how often the mark's thread looks at its session
_MARK_RETRY_MAX: Final = 5.0  # the longest wait between tries to take the mark


@final
class PostgresMark:
    """This process's liveness mark on a PostgreSQL store: a session-level advisory lock keyed
    by its worker id, on a connection of its own (not from the pool: a pooled connection is
    lent to others, and a lock on it would outlive this process's use of it). The server
    releases it when the session ends: at once when the process dies (its socket closes), and
    after a network cut once its keepalives notice. Its thread looks every half second, without
    a round trip, whether the server ended the session (the socket turns readable) and then
    takes the mark again, under the same id.

    Behind a pooler in transaction mode (pgbouncer's `pool_mode = transaction`) a session's lock
    does not stay with this client: that is found when the mark is taken (the answering session
    does not hold it), and the process goes without a mark, its jobs judged by their heartbeats
    as with `liveness=False`, which such a deployment should pass.
    """

    def __init__(self, url: str, settings: dict[str, Any], shown: str) -> None:
        self._url = url
        self._settings = settings
        self._shown = shown
        self._worker_id = marked_holder_id()
        self._held = False
        self._made = Flag()  # held at least once
        self._stop = Flag()
        self._ended = Flag()  # its thread has ended: it will never be held
        self._thread = threading.Thread(
            target=self._keep, name="routines:durable:liveness-mark", daemon=True
        )
        self._thread.start()

    def __repr__(self) -> str:
        return f"PostgresMark({self._shown!r}, {self._worker_id!r}, held={self._held})"

    @property
    def worker_id(self) -> str:
        return self._worker_id

    def held(self) -> bool:
        return self._held

    def wait(self, timeout: float, stop: Flag) -> bool:
        wait_any((self._made, self._ended, stop), timeout)
        return self._held

    def close(self) -> None:
        self._stop.set()
        self._thread.join(_CLOSE_TIMEOUT)
        if self._thread.is_alive():
            logger.warning("%r: its thread did not end within %gs", self, _CLOSE_TIMEOUT)

    def _keep(self) -> None:
        connection: Connection | None = None
        wait = _MARK_CHECK_EVERY
        try:
            while not self._stop.is_set():
                try:
                    if connection is not None and not _alive(connection):
                        self._lost(connection)
                        connection = None
                    if connection is None:
                        connection = self._take()  # at once: a lost mark is back in a moment
                except _NoSessionLocks:
                    return
                except Exception as error:  # noqa: BLE001 - the mark is tried again later
                    logger.debug("%r: %s", self, describe_error(error))
                    if connection is not None:
                        self._lost(connection)
                        connection = None
                wait = (
                    _MARK_CHECK_EVERY if connection is not None else min(wait * 2, _MARK_RETRY_MAX)
                )
                self._stop.wait(wait)
        finally:
            self._held = False
            if connection is not None:
                with contextlib.suppress(Exception):
                    connection.close()  # the session ends: the server frees the mark
            self._ended.set()

    def _take(self) -> Connection | None:
        """Connect and take the mark: the connection holding it, or None if another session
        holds its key (an earlier session of this process the server has not ended yet)."""
        key = mark_key(self._worker_id)
        connection = psycopg.connect(self._url, **self._settings)  # autocommit
        try:
            row = connection.execute(
                "SELECT pg_try_advisory_lock(%s), pg_backend_pid()", [key]
            ).fetchone()
            if row is None or not row[0]:
                connection.close()
                if not self._made.is_set():
                    # Never held: no job carries this id, so another one can be taken.
                    self._worker_id = marked_holder_id()
                logger.debug("%r: its key is held by another session; trying again", self)
                return None
            own = connection.execute(
                "SELECT pg_backend_pid() = %s AND EXISTS (SELECT 1 FROM pg_locks WHERE"
                " locktype = 'advisory' AND granted AND pid = pg_backend_pid()"
                " AND objsubid = 1 AND classid::bigint = %s AND objid::bigint = %s)",
                [row[1], (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF],
            ).fetchone()
        except BaseException:
            connection.close()
            raise
        if own is None or not own[0]:
            connection.close()
            logger.warning(
                "the store %s: a session-level lock did not stay with this connection (a "
                "pooler in transaction mode, such as pgbouncer's?): this process holds no "
                "liveness mark, and its jobs are judged by their heartbeats alone; pass "
                "liveness=False to its workers to say so",
                self._shown,
            )
            raise _NoSessionLocks
        self._held = True
        if self._made.is_set():
            logger.info("the liveness mark of this process on %s is taken again", self._shown)
        self._made.set()
        return connection

    def _lost(self, connection: Connection) -> None:
        self._held = False
        with contextlib.suppress(Exception):
            connection.close()
        logger.warning(
            "the liveness mark of this process on %s was lost while the process lives (its "
            "session ended: a network cut, or the server ended it): other workers may put back "
            "the jobs it runs, and their outcomes here are then refused by the claim token; "
            "taking it again",
            self._shown,
        )


class _NoSessionLocks(Exception):
    """Session-level locks do not hold on the store's connections: no mark is possible."""
