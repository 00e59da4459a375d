"""`open_store` and `Store`: a database that routines share across processes and hosts.

The store parses the URL, checks its arguments, refuses to be used in a process forked after
it was opened, and turns the driver's errors into `StoreError`/`StoreUnavailable`. What it does
with the database is its backend's: the SQL store (`_sqlstore.py`) on the driver of the URL's
engine (`_sqlite.py`, `_postgres.py`); the PostgreSQL driver, and with it psycopg, is imported
only when a `postgresql://` store is opened.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from datetime import timedelta
from typing import Final

from typing_extensions import Self, final

from .._status import describe_error
from .._validate import check_bool, check_int, check_seconds
from ._access import StoreAccess
from ._backend import Backend
from ._errors import MigrationsIncomplete, StoreUnavailable
from ._lease import Lease
from ._model import (
    Job,
    LeaseInfo,
    MigrationStatus,
    QueueInfo,
    ScheduleInfo,
    ScheduleRun,
    check_job_id,
    check_text,
)
from ._queue import Queue
from ._sqlstore import SQLStore

__all__ = ["MAX_TIMEOUT", "Store", "open_store", "store_access"]

logger = logging.getLogger("routines.durable")

MAX_TIMEOUT: Final = 86400.0  # a day: longer waits for a lock are a bug, and SQLite's is an int
_SCHEMES: Final = "sqlite:///, postgresql:// or postgres://"
_SCHEMA_PATTERN: Final = re.compile(r"[a-z_][a-z0-9_]{0,49}")
# user:password@ (a password has its "/" and "@" percent-encoded), and ?password=... or &...
_PASSWORD_IN_USERINFO: Final = re.compile(r"://([^/@:]*):[^/@]*@")
_PASSWORD_IN_QUERY: Final = re.compile(r"(?i)([?&]password=)[^&#]*")


@final
class Store:
    """A database shared by the routines of many processes; open one with `open_store()`.

    One store per process, shared by all its threads. Close it with `close()` or a `with`
    block. A store opened before `os.fork()` can't be used in the child: open one there.
    """

    def __init__(self, backend: Backend, *, url: str, timeout: float, schema: str) -> None:
        self._access = StoreAccess(backend, url=url, timeout=timeout)
        self.url = url  # the password, if any, masked
        self.timeout = timeout
        self.schema = schema

    def __repr__(self) -> str:
        return f"Store({self.url!r}, schema={self.schema!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def check(self) -> None:
        """Return if the database answers now, else raise `StoreUnavailable` (or `StoreError`
        for settings it refuses); opens the store if it could not be opened before. For a
        readiness probe, or a program that should stop early when its database is away."""
        with self._access.using("check") as backend:
            backend.now()

    def queue(self, name: str) -> Queue:
        """A handle on the queue `name` (queues need no declaring)."""
        name = check_text("name", name)
        self._access.backend()
        return Queue(self, self._access, name)

    def job(self, job_id: int) -> Job | None:
        """The job `job_id`, whichever queue it is in (a job id is unique in the store), or None
        if there is none (or it was purged): for a program given only an id, such as
        `routines job ID`. `job.queue` names its queue, for `store.queue(job.queue).retry(...)`."""
        job_id = check_job_id(job_id)
        with self._access.jobs("job") as jobs:
            return jobs.find(job_id)

    def queues(self) -> list[QueueInfo]:
        """Every queue with a job or a pause of its own, by name: its jobs in each state,
        whether it is paused, and how long its longest-waiting ready job has been due.

        Counting reads an index entry per job, in the database (no row of the table, nothing
        per job in Python): about a tenth of a second per million jobs.
        """
        with self._access.jobs("queues") as jobs:
            return jobs.list_queues()

    def schedules(self) -> list[ScheduleInfo]:
        """Every fleet-wide schedule with a run, by name: its latest run, and how many of the
        runs kept (the last 1,000) there are and failed. `schedule_runs(name)` has the runs."""
        with self._access.ticks("schedules") as ticks:
            return ticks.list_schedules()

    def leases(self) -> list[LeaseInfo]:
        """Every lease the store has seen (migration runners' and singletons' included), by
        name: who holds it now (None once released or expired), its latest fencing token and
        its expiry."""
        with self._access.leases("leases") as leases:
            return leases.list_leases()

    def lease(self, name: str, ttl: float | timedelta) -> Lease:
        """A handle on the lease `name`, held for `ttl` seconds at a time (see `Lease`)."""
        self._access.backend()
        return Lease(self._access, name, ttl)

    def schedule_runs(self, name: str, limit: int = 20) -> list[ScheduleRun]:
        """The latest `limit` runs of the fleet-wide schedule `name`, newest tick first: did it
        run, where, and how did it end."""
        name = check_text("name", name)
        limit = check_int("limit", limit, minimum=1)
        with self._access.ticks("schedule_runs") as ticks:
            return ticks.schedule_runs(name, limit)

    def migrations(self) -> list[MigrationStatus]:
        """Every out-of-band migration the store has seen: its progress as last computed, its
        direction, when either changed, and its latest errors."""
        with self._access.migration_log("migrations") as log:
            return log.migrations()

    def set_migration_direction(self, migration_id: str, *, reverse: bool) -> None:
        """Run the migration forward (`reverse=False`) or back; its runners follow at their next
        interval, each batch finished first."""
        migration_id = check_text("migration_id", migration_id)
        reverse = check_bool("reverse", reverse)
        with self._access.migration_log("set_migration_direction") as log:
            log.set_migration_direction(migration_id, reverse)

    def require_migrations_complete(self, ids: Iterable[str]) -> None:
        """Raise `MigrationsIncomplete`, naming them, unless every migration of `ids` is
        complete forward (an id the store has never seen is not); for an app's start-up,
        before code that needs the new data (Sourcegraph's `Validate`)."""
        wanted = _check_migration_ids(ids)
        with self._access.migration_log("migrations") as log:
            found = {status.id: status for status in log.migrations(wanted)}
        incomplete = tuple(
            migration_id
            for migration_id in wanted
            if migration_id not in found
            or found[migration_id].reverse
            or not found[migration_id].complete
        )
        if incomplete:
            raise MigrationsIncomplete(incomplete)

    def close(self) -> None:
        """Close the store's connections; closing again does nothing."""
        backend = self._access.detach()
        if backend is not None:
            backend.close()


def store_access(store: Store) -> StoreAccess:
    """The inside of `store`, for the routines of this package that are given a store."""
    return store._access


def open_store(url: str, *, timeout: float | timedelta = 5.0, schema: str = "routines") -> Store:
    """Open the store at `url`, creating or upgrading its tables.

    `sqlite:///relative.db` or `sqlite:////absolute.db` (SQLite 3.25+, one host; not on a
    network filesystem), or any libpq URL `postgresql://...` / `postgres://...` (needs the
    extra `routines[postgres]`). `timeout` is the longest any one call waits for a lock or a
    connection; past it the call raises `StoreUnavailable`. `schema` is the PostgreSQL schema
    of the store's tables (SQLite: their name prefix): lowercase letters, digits and `_`.
    """
    if not isinstance(url, str):
        msg = f"url must be a str such as 'sqlite:////var/lib/app/routines.db', got {url!r}"
        raise TypeError(msg)
    if "\x00" in url:  # C libraries would read the URL up to it, and open something else
        msg = f"url must not hold a NUL character, got {redact(url)!r}"
        raise ValueError(msg)
    seconds = check_seconds("timeout", timeout, allow_zero=False)
    if seconds > MAX_TIMEOUT:
        msg = f"timeout must be at most {MAX_TIMEOUT:g} seconds, got {timeout!r}"
        raise ValueError(msg)
    schema = _check_schema(schema)
    scheme = url.partition(":")[0].lower() if "://" in url else ""
    shown = redact(url)
    backend: Backend
    if scheme == "sqlite":
        from ._sqlite import SQLiteDriver

        backend = SQLStore(SQLiteDriver(_sqlite_path(url), timeout=seconds, schema=schema))
    elif scheme in ("postgresql", "postgres"):
        try:
            from ._postgres import PostgresDriver
        except ImportError as error:
            msg = (
                "postgresql:// stores need psycopg and psycopg_pool: "
                f"pip install 'routines[postgres]' ({describe_error(error)})"
            )
            raise ImportError(msg) from error
        backend = SQLStore(PostgresDriver(url, shown=shown, timeout=seconds, schema=schema))
    else:
        msg = f"url must start with one of the supported schemes {_SCHEMES}, got {shown!r}"
        raise ValueError(msg)
    store = Store(backend, url=shown, timeout=seconds, schema=schema)
    try:
        with store._access.using("open"):
            pass  # opens it
    except StoreUnavailable as error:
        # A database that is down now may be back in a minute: the store opens at the first
        # call that finds it (until then each call raises StoreUnavailable). Refusals that a
        # retry can't fix (a wrong password, a missing database) are raised here.
        logger.warning(
            "opening %r: %s; it opens at the first call that finds the database answering",
            store,
            describe_error(error),
        )
        return store
    except BaseException:
        backend.close()
        raise
    logger.debug("opened %r", store)
    return store


def _check_migration_ids(ids: object) -> tuple[str, ...]:
    """Migration ids for `require_migrations_complete`: an iterable of names (of none, there
    is nothing to require)."""
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        msg = f"ids must be an iterable of migration ids (a list, say), got {ids!r}"
        raise TypeError(msg)
    checked = tuple(check_text(f"ids[{index}]", value) for index, value in enumerate(ids))
    return tuple(dict.fromkeys(checked))


def _check_schema(schema: object) -> str:
    if not isinstance(schema, str):
        msg = f"schema must be a str, got {schema!r}"
        raise TypeError(msg)
    if not _SCHEMA_PATTERN.fullmatch(schema) or schema.startswith("pg_"):
        msg = (
            "schema must be 1 to 50 lowercase letters, digits or '_', starting with a letter or "
            f"'_' and not with 'pg_', got {schema!r}"
        )
        raise ValueError(msg)
    return schema


def _sqlite_path(url: str) -> str:
    """The absolute path of a `sqlite:///` URL (SQLAlchemy's form: three slashes, then the
    path, so an absolute path has four)."""
    prefix = url[: len("sqlite:///")]
    path = url[len("sqlite:///") :]
    if prefix.lower() != "sqlite:///":
        msg = (
            "url must be sqlite:///relative/path.db or sqlite:////absolute/path.db "
            f"(no host), got {url!r}"
        )
        raise ValueError(msg)
    if not path or path == ":memory:":
        msg = (
            "url must name a database file: each thread has its own connection, so an "
            f"in-memory database would be one per thread; got {url!r}"
        )
        raise ValueError(msg)
    if "?" in path:
        msg = f"url must not have a query string: the SQLite store takes no options, got {url!r}"
        raise ValueError(msg)
    # Absolute now: connections opened later by other threads must not follow a chdir().
    return os.path.abspath(path)


def redact(url: str) -> str:
    """`url` with its password, if any, masked: for messages and logs."""
    url = _PASSWORD_IN_USERINFO.sub(r"://\1:***@", url)
    return _PASSWORD_IN_QUERY.sub(r"\1***", url)
