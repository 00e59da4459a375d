"""The SQLite driver: stdlib `sqlite3`, one database file shared by the processes of one host.

It runs the SQL store's statements (`_sqlstore.py`); what is SQLite's own is here. The file is
in WAL mode; every transaction is `BEGIN IMMEDIATE`, so a write never upgrades a read lock
(which fails at once, busy timeout or not); each thread has its own connection (`close()`
reaches them all through a registry). "database is locked" never reaches the caller while the
lock frees within the store's `timeout`: the busy handler waits for it, and the few cases SQLite
does not hand to the busy handler (switching to WAL, recovering a WAL) are retried against the
same deadline. Past it, the call fails as unavailable. Not for network filesystems: SQLite's
locks do not hold there.

Times are integer microseconds since the Unix epoch, read from `julianday('now')`: this host's
wall clock, in milliseconds. Rows are drained with `fetchall()` before a COMMIT.

Where SQLite differs from the neutral statements, and why:
- no `FOR UPDATE SKIP LOCKED`: its one writer holds the whole database for a claim;
- schedules need no lock of their own, for the same reason;
- SQLite announces nothing to other processes: an enqueue rings the doorbells (Unix datagram
  sockets) of that queue's idle workers on this host after it commits (`_sqlite_host.py`);
- a process's liveness mark is an `flock` on a file beside the database, which the kernel
  releases when the process dies (`_sqlite_host.py`); a sweeper tests it with a lock of its own;
- the id of an inserted row is `lastrowid` (no `RETURNING` before SQLite 3.35).

An app's own connection to the file (`run_on`) is checked with `PRAGMA database_list`: its main
database must be the store's file. Its transaction holds the file's write lock from the job's
INSERT until the app commits: the store's writers (workers) wait for it up to their timeout.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Final, TypeVar

from typing_extensions import final

from .._status import describe_error, describe_value
from ._backend import ErrorKind, Mark
from ._errors import StoreError
from ._marks import SharedMark
from ._model import NewJob
from ._sql import Dialect, Params, Result, SchemaTypes, Session, wrong_connection
from ._sqlite_host import FileMark, HostDirectory, SocketDoorbell

__all__ = ["SQLiteDriver", "sqlite_dialect"]

logger = logging.getLogger("routines.durable")

T = TypeVar("T")

MINIMUM_VERSION: Final = (3, 25, 0)  # window functions (3.25), upserts (3.24)

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND: Final = timedelta(microseconds=1)
# The database's clock in the columns' microseconds, to the millisecond julianday() has.
_NOW: Final = "(CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000)"

_SQLITE_BUSY: Final = 5
_SQLITE_LOCKED: Final = 6
_SQLITE_FULL: Final = 13
# Waits between retries of a write SQLite refused without calling its busy handler.
_FIRST_RETRY_WAIT: Final = 0.001
_MAX_RETRY_WAIT: Final = 0.05


def sqlite_dialect(prefix: str) -> Dialect:
    """SQLite's spelling, its tables named `<prefix>_<table>`: moments and lengths of time in
    integer microseconds (the clock's resolution is 1 ms), booleans as 0 and 1, JSON as text."""
    return Dialect(
        name="sqlite",
        table=lambda name: f'"{prefix}_{name}"',
        index=lambda name: f'"{prefix}_{name}"',
        types=SchemaTypes(
            identity="INTEGER PRIMARY KEY AUTOINCREMENT",
            integer="INTEGER",
            bigint="INTEGER",
            moment="INTEGER",
            interval="INTEGER",
            boolean="INTEGER",
            false="0",
            text="TEXT",
            json="TEXT",
            real="REAL",
            now_default="",  # the store writes every moment
        ),
        now=_NOW,
        clock=_NOW,  # 'now' is the moment the statement began, in any transaction
        pyformat=False,
        json_param="",
        json_text="",
        skip_locked="",
        # 3.33 and 3.35 have them; in-process statements cost no round trip, so none is needed
        update_from=False,
        returning=False,
        for_update="",  # BEGIN IMMEDIATE holds the write lock already
        least="min",
        moment=_microseconds,
        interval=lambda length: length // _MICROSECOND,
        read_moment=_datetime,
        read_interval=lambda microseconds: microseconds / 1_000_000,
    )


@final
class SQLiteDriver:
    """The SQL store's driver for the SQLite file at `path` (absolute), its tables prefixed
    `<schema>_`."""

    schema_additions: Mapping[int, tuple[str, ...]] = {}

    def __init__(self, path: str, *, timeout: float, schema: str) -> None:
        self._path = path
        self._timeout = timeout
        self._prefix = schema
        self.dialect = sqlite_dialect(schema)
        self.described = f"the SQLite store {path}"
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: dict[threading.Thread, sqlite3.Connection] = {}
        self._closed = threading.Event()  # also ends the waits between busy retries
        self._host = HostDirectory(path, schema)
        self._mark = SharedMark(lambda: FileMark(self._host))

    def __repr__(self) -> str:
        return f"SQLiteDriver({self._path!r}, schema={self._prefix!r})"

    # -- connections ----------------------------------------------------------------------------

    def connect(self) -> None:
        if sqlite3.sqlite_version_info < MINIMUM_VERSION:
            msg = (
                f"the SQLite store needs SQLite {'.'.join(map(str, MINIMUM_VERSION))} or newer; "
                f"this Python has {sqlite3.sqlite_version}"
            )
            raise StoreError(msg)
        directory = os.path.dirname(self._path)
        if not os.path.isdir(directory):
            msg = (
                f"the SQLite store {self._path} cannot be opened: the directory {directory} "
                "does not exist (create it, or give another path)"
            )
            raise StoreError(msg)
        self._run(_enable_wal, write=False)

    def close(self) -> None:
        with self._lock:
            self._closed.set()
            connections = list(self._connections.values())
            self._connections.clear()
        for connection in connections:
            _close(connection)
        self._mark.close()
        self._host.close()

    def classify(self, error: Exception) -> ErrorKind | None:
        # A lock not granted in time, or a full disk: both pass (a disk is freed, or grown),
        # so both are ridden out like an outage of a server.
        if isinstance(error, sqlite3.OperationalError) and (_is_busy(error) or _is_full(error)):
            return "unavailable"
        if isinstance(error, sqlite3.Error):
            return "error"
        return None

    def unique_violation(self, error: Exception) -> bool:
        return isinstance(error, sqlite3.IntegrityError)

    def run(self, work: Callable[[Session], T], *, transaction: bool) -> T:
        dialect = self.dialect

        def attempt(connection: sqlite3.Connection) -> tuple[T, list[Callable[[], None]]]:
            session = _Session(connection, dialect)  # one per try: a retried one starts afresh
            return work(session), session.after_commit

        result, after_commit = self._run(attempt, write=transaction)
        for then in after_commit:
            then()
        return result

    def batch(self, statements: Sequence[tuple[str, Params]]) -> list[Result]:
        def work(connection: sqlite3.Connection) -> list[Result]:
            results = []
            for template, params in statements:
                cursor = connection.execute(*self.dialect.statement(template, params))
                results.append(Result(cursor.fetchall(), cursor.rowcount))
            return results

        return self._run(work, write=True)

    def run_on(self, connection: object, work: Callable[[Session], T], *, transaction: bool) -> T:
        if not isinstance(connection, sqlite3.Connection):
            raise wrong_connection(
                connection, f"a sqlite3.Connection to the store's file {self._path}"
            )
        try:
            cursor = connection.cursor()
        except sqlite3.ProgrammingError as error:  # closed, or opened by another thread
            msg = (
                f"connection must be an open sqlite3.Connection of this thread, to "
                f"{self._path}, got {describe_value(connection)}: {describe_error(error)}"
            )
            raise ValueError(msg) from None
        try:
            cursor.row_factory = None  # the app's row factory is for its own queries
            self._check_file(cursor)
            session = _Session(cursor, self.dialect)
            if transaction and _autocommits(connection) and not connection.in_transaction:
                return _attempt(connection, lambda _: work(session), write=True)
            # Never _attempt here: on an error it would roll back the app's transaction.
            return work(session)
        finally:
            cursor.close()

    def _check_file(self, cursor: sqlite3.Cursor) -> None:
        """That the connection's main database is the store's file: the statements name the
        store's tables without a schema, which finds them only there."""
        files = {name: file for _, name, file in cursor.execute("PRAGMA database_list")}
        store = os.path.realpath(self._path)
        main = files.get("main") or ""
        if main and os.path.realpath(main) == store:
            return
        shown = repr(main) if main else "an in-memory or temporary database"
        attached = [
            name for name, file in files.items() if file and os.path.realpath(file) == store
        ]
        where = f" (it has the store's file attached as {attached[0]!r})" if attached else ""
        msg = (
            f"connection must be a sqlite3 connection to the store's file {self._path}, got one "
            f"whose main database is {shown}{where}: connect to {self._path} itself"
        )
        raise ValueError(msg)

    # -- what SQLite does its own way -------------------------------------------------------------

    def table_exists(self, session: Session, table: str) -> bool:
        found = session.first(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :name",
            {"name": f"{self._prefix}_{table}"},
        )
        return found is not None

    def lock_schema(self, session: Session) -> None:
        pass  # the upgrade's BEGIN IMMEDIATE holds the write lock: other openers wait for it

    def lock_schedule(self, session: Session, name: str) -> None:
        pass  # the claim's BEGIN IMMEDIATE serialises every claim of every schedule

    def notify(self, session: Session, queue: str) -> None:
        # No notifications in SQLite: the doorbells of other processes' workers are rung once
        # the transaction has committed (in-process workers are woken by the store).
        if isinstance(session, _Session):
            session.after_commit.append(lambda: self._host.ring(queue))

    def insert_announced(
        self, session: Session, template: str, params: Params, queue: str
    ) -> int | None:
        inserted = session.insert(template, params)
        if inserted is not None:  # its doorbell rings after the commit
            self.notify(session, queue)
        return inserted

    def listener(self) -> None:
        return None

    def doorbell(self, queue: str) -> SocketDoorbell | None:
        directory = self._host.bell
        if directory is None:
            logger.info(
                "%s: its path is too long for a doorbell's address: workers of other "
                "processes poll",
                self.described,
            )
            return None
        try:
            return SocketDoorbell(self._host, directory, queue)
        except OSError as error:
            logger.warning(
                "%s: no doorbell in %s (%s): the worker polls",
                self.described,
                directory,
                describe_error(error),
            )
            return None

    def hold_mark(self) -> Mark:
        return self._mark.hold()

    def free_marks(self, session: Session, workers: Sequence[str]) -> list[str]:
        # One host: a mark found free is its dead process's, and a dead process takes none
        # back, so the transaction need not hold it.
        return self._host.free_marks(workers)

    def enqueue_keyless(self, queue: str, jobs: Sequence[NewJob]) -> None:
        return None  # the neutral statements are as fast: no round trips in-process

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


@final
class _Session:
    """A connection of this thread (or a cursor of the app's connection), lent for one call."""

    __slots__ = ("_connection", "_dialect", "after_commit")

    def __init__(self, connection: sqlite3.Connection | sqlite3.Cursor, dialect: Dialect) -> None:
        self._connection = connection
        self._dialect = dialect
        self.after_commit: list[Callable[[], None]] = []  # what to do once its work committed

    def rows(self, template: str, params: Params | None = None) -> list[tuple[Any, ...]]:
        statement, bound = self._dialect.statement(template, params or {})
        return self._connection.execute(statement, bound).fetchall()

    def first(self, template: str, params: Params | None = None) -> tuple[Any, ...] | None:
        rows = self.rows(template, params)
        return rows[0] if rows else None

    def count(self, template: str, params: Params | None = None) -> int:
        statement, bound = self._dialect.statement(template, params or {})
        return int(self._connection.execute(statement, bound).rowcount)

    def insert(self, template: str, params: Params | None = None) -> int | None:
        statement, bound = self._dialect.statement(template, params or {})
        cursor = self._connection.execute(statement, bound)
        return cursor.lastrowid if cursor.rowcount == 1 else None

    def insert_many(self, template: str, rows: Sequence[Params]) -> list[int]:
        # One statement run for every row (sqlite3's executemany): under the write lock, the
        # rows take consecutive ids, the last of which the connection knows.
        statement, _ = self._dialect.statement(template, rows[0])
        self._connection.executemany(
            statement, [self._dialect.statement(template, row)[1] for row in rows]
        )
        (last,) = self._connection.execute("SELECT last_insert_rowid()").fetchone()
        return list(range(last - len(rows) + 1, last + 1))


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


def _autocommits(connection: sqlite3.Connection) -> bool:
    """Whether `connection` commits each statement at once when no transaction is open."""
    mode = getattr(connection, "autocommit", None)  # Python 3.12+: True, False or LEGACY (-1)
    if isinstance(mode, bool):
        return mode
    return connection.isolation_level is None  # else sqlite3 begins one before a write


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


def _is_full(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)  # Python 3.11+
    if isinstance(code, int):
        return code & 0xFF == _SQLITE_FULL
    text = error.args[0] if error.args and isinstance(error.args[0], str) else ""
    return "database or disk is full" in text


def _microseconds(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def _datetime(microseconds: int) -> datetime:
    return _EPOCH + timedelta(microseconds=microseconds)
