"""The neutral spelling of the SQL store's statements, and what a SQL driver supplies.

Every statement of the durable tier is written once (`_statements.py`), in a spelling no engine
speaks as it is. A `Dialect` turns it into one engine's SQL, and a `Driver` runs it:

- `:name` is a parameter. Its value may be a `datetime` (a moment), a `timedelta` (a length of
  time), a list of scalars or a list of tuples (spelled `{values:name}`, see below); the dialect
  converts each into what its engine stores.
- `{now}` is the database's clock (PostgreSQL: the moment the transaction began), `{clock}` the
  moment the statement reads it; `{jobs}`, `{leases}`, ... are the store's tables.
- `:payload{as_json}` marks a parameter that is JSON text, `payload{as_text}` reads a JSON column
  as text (so that a row that can't be decoded fails that job alone, not the fetch of a batch).
- `{values:name}` is the parenthesised list a list parameter is compared with: `state IN
  {values:states}`, `(id, claim_token) IN {values:claims}`.
- `{skip_locked}` ends the SELECT that picks the rows a claim takes, `{for_update}` one that
  locks what it reads; `{least}(a, b)` is the least of its arguments.

What differs between engines beyond that is the driver's: its connections and transactions,
its error classification, its catalog and locks, and the few fast paths its engine does better,
each said where the driver holds it.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Protocol, TypedDict, TypeVar

from typing_extensions import final

from .._status import describe_value
from ._backend import ErrorKind, Listener, Mark
from ._model import NewJob

__all__ = [
    "TABLES",
    "Dialect",
    "Driver",
    "Params",
    "Result",
    "SchemaTypes",
    "Session",
    "wrong_connection",
]

T = TypeVar("T")
Params = Mapping[str, Any]

TABLES: Final = (
    "jobs",
    "leases",
    "schedule_runs",
    "migrations",
    "migration_errors",
    "queues",
    "queue_starts",
    "schema_version",
)
INDEXES: Final = (
    "jobs_ready",
    "jobs_live_key",
    "jobs_processing",
    "jobs_by_state",
    "schedule_runs_running",
    "migration_errors_latest",
    "jobs_listing",
    "jobs_task_listing",
    "queue_starts_window",
    "jobs_group_running",
)


class SchemaTypes(TypedDict):
    """A dialect's spelling of the schema's column types (as Django's backends give theirs)."""

    identity: str  # an integer primary key the database numbers
    text: str
    json: str
    integer: str
    bigint: str
    real: str
    boolean: str
    false: str  # the boolean false, as a column default
    moment: str  # a point in time
    interval: str  # a length of time
    now_default: str  # the default of a moment column the database fills with its now, if any


@final
@dataclass(frozen=True)
class Dialect:
    """How one engine spells the neutral SQL, and how its values cross to Python."""

    name: str
    table: Callable[[str], str]  # the name of a table, as statements use it
    index: Callable[[str], str]  # the name of an index, as CREATE INDEX gives it
    types: SchemaTypes
    now: str  # the database's clock, as the transaction began where the engine says so
    clock: str  # the database's clock, as the statement reads it
    pyformat: bool  # psycopg's %(name)s parameters, instead of sqlite3's :name
    json_param: str  # after a JSON parameter
    json_text: str  # after a JSON column read as text
    skip_locked: str  # after the SELECT that picks the rows a claim takes
    update_from: bool  # UPDATE ... FROM (VALUES ...) RETURNING: many outcomes in one statement
    returning: bool  # a claim returns what it took (no read back after it)
    for_update: str  # after a SELECT that locks the rows it reads until the transaction ends
    least: str  # the function of the least of its arguments
    moment: Callable[[datetime], object]  # a moment, as a parameter
    interval: Callable[[timedelta], object]  # a length of time, as a parameter
    read_moment: Callable[[Any], datetime]  # a moment column, as an aware UTC datetime
    read_interval: Callable[[Any], float]  # a length of time from a row, in seconds
    _render: Callable[[str, tuple[tuple[str, int, int], ...]], str] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_render", functools.lru_cache(maxsize=512)(self._spell))

    def statement(self, template: str, params: Params) -> tuple[str, dict[str, Any]]:
        """`template` in this engine's SQL, and `params` as its driver takes them."""
        shapes: list[tuple[str, int, int]] = []
        bound: dict[str, Any] = {}
        for name, value in params.items():
            if isinstance(value, list):
                width = len(value[0]) if value and isinstance(value[0], tuple) else 0
                shapes.append((name, len(value), width))
                for row, item in enumerate(value):
                    if width:
                        for column, part in enumerate(item):
                            bound[f"{name}_{row}_{column}"] = self._value(part)
                    else:
                        bound[f"{name}_{row}"] = self._value(item)
            else:
                bound[name] = self._value(value)
        return self._render(template, tuple(shapes)), bound

    def _value(self, value: object) -> object:
        if isinstance(value, datetime):
            return self.moment(value)
        if isinstance(value, timedelta):
            return self.interval(value)
        return value

    def _spell(self, template: str, shapes: tuple[tuple[str, int, int], ...]) -> str:
        lists = {name: (length, width) for name, length, width in shapes}
        text = _Spelling(self, lists).format(template)
        if not self.pyformat:
            return text
        return _PARAMETER.sub(_pyformat, text.replace("%", "%%"))


# A string literal (left as it is) or a :name parameter outside one.
_PARAMETER: Final = re.compile(r"'(?:[^']|'')*'|(?<![:\w]):([A-Za-z_]\w*)")


def _pyformat(match: re.Match[str]) -> str:
    name = match.group(1)
    return match.group(0) if name is None else f"%({name})s"


class _Spelling(string.Formatter):
    """Fills a template's fields for one dialect; a list parameter's placeholders are numbered
    as `Dialect.statement` binds them."""

    def __init__(self, dialect: Dialect, lists: Mapping[str, tuple[int, int]]) -> None:
        self._dialect = dialect
        self._lists = lists

    def get_value(self, key: int | str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        dialect = self._dialect
        if key in TABLES:
            return dialect.table(str(key))
        if key in INDEXES:
            return dialect.index(str(key))
        if key in dialect.types:
            return dialect.types[str(key)]  # type: ignore[literal-required]
        fragments = {
            "now": dialect.now,
            "clock": dialect.clock,
            "as_json": dialect.json_param,
            "as_text": dialect.json_text,
            "skip_locked": dialect.skip_locked,
            "for_update": dialect.for_update,
            "least": dialect.least,
            "values": "",
        }
        if key not in fragments:
            msg = f"the SQL template has an unknown field {{{key}}}"
            raise KeyError(msg)
        return fragments[str(key)]

    def format_field(self, value: Any, format_spec: str) -> str:
        if not format_spec:
            return str(value)
        if format_spec not in self._lists:  # a {values:name} of a parameter not given
            msg = f"{{values:{format_spec}}} needs the list parameter {format_spec!r}"
            raise KeyError(msg)
        length, width = self._lists[format_spec]
        if not length:
            return "(NULL)"  # matches nothing: x IN (NULL) is never true
        if not width:
            return "(" + ", ".join(f":{format_spec}_{row}" for row in range(length)) + ")"
        rows = (
            "(" + ", ".join(f":{format_spec}_{row}_{column}" for column in range(width)) + ")"
            for row in range(length)
        )
        return "(VALUES " + ", ".join(rows) + ")"


# What an app passes by mistake instead of its driver's connection, and the way to that one.
_CONNECTION_HINTS: Final = {
    "django": "pass django.db.connection.connection, after connection.ensure_connection()",
    "sqlalchemy": "pass session.connection().connection.driver_connection",
    "psycopg2": "psycopg2 is not supported: use psycopg 3 (Django 4.2+ uses it when installed)",
}


def wrong_connection(connection: object, wanted: str) -> TypeError:
    """The error for an app's `connection` of a kind the store can't write through."""
    kind = type(connection)
    shown = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    msg = f"connection must be {wanted}, got {describe_value(connection)} (a {shown})"
    hint = _CONNECTION_HINTS.get(kind.__module__.partition(".")[0])
    if hint is not None:
        msg += f": {hint}"
    return TypeError(msg)


@final
@dataclass(frozen=True)
class Result:
    """What one statement of a batch gave: its rows (none unless it returns some) and how many
    rows it changed."""

    rows: list[tuple[Any, ...]]
    rowcount: int


class Session(Protocol):
    """One connection, lent for one call: its statements are neutral templates with their
    parameters (see `Dialect.statement`)."""

    def rows(self, template: str, params: Params | None = None) -> list[tuple[Any, ...]]:
        """Every row the statement gives."""
        ...

    def first(self, template: str, params: Params | None = None) -> tuple[Any, ...] | None:
        """The statement's first row, or None."""
        ...

    def count(self, template: str, params: Params | None = None) -> int:
        """Run the statement; how many rows it changed."""
        ...

    def insert(self, template: str, params: Params | None = None) -> int | None:
        """Run an INSERT of one row; the row's id, or None if it inserted nothing (ON CONFLICT
        DO NOTHING)."""
        ...

    def insert_many(self, template: str, rows: Sequence[Params]) -> list[int]:
        """Run an INSERT of one row for each of `rows` (of the same shape, none of which can
        conflict), in the session's transaction; their ids, in order."""
        ...


class Driver(Protocol):
    """What one SQL engine supplies to the SQL store: connections and transactions, its
    dialect, what its errors mean, its catalog and locks, and its fast paths."""

    dialect: Dialect
    described: str  # the store, for messages: "the SQLite store /var/lib/app/routines.db"
    # Statements of the engine's own added to a step of the schema, by the step's position.
    schema_additions: Mapping[int, tuple[str, ...]]

    def connect(self) -> None:
        """Connect (open the pool, check the engine's version); the schema comes after."""
        ...

    def close(self) -> None: ...

    def classify(self, error: Exception) -> ErrorKind | None: ...

    def unique_violation(self, error: Exception) -> bool:
        """Whether `error` is a unique index refusing a row."""
        ...

    def run(self, work: Callable[[Session], T], *, transaction: bool) -> T:
        """`work` on a connection of this thread; with `transaction`, in one transaction that
        writes (SQLite: BEGIN IMMEDIATE, which takes the write lock first), else each
        statement on its own (a single write statement is atomic by itself)."""
        ...

    def batch(self, statements: Sequence[tuple[str, Params]]) -> list[Result]:
        """Statements that do not depend on each other's results, in one transaction and, where
        the engine can, one round trip (PostgreSQL: a pipeline)."""
        ...

    def run_on(self, connection: object, work: Callable[[Session], T], *, transaction: bool) -> T:
        """`work` on the app's own `connection` to this store's database, in that connection's
        current transaction, which is the app's to commit or roll back: the driver never
        commits, rolls back or closes it.

        The connection is checked before anything runs on it: of the engine's driver library,
        open, usable, reaching this store's database and tables; else a `TypeError` or
        `ValueError` naming `connection`. With `transaction`, a connection in autocommit mode
        with no transaction open gets one of its own around `work`, committed when `work`
        returns (what `run` does): autocommit means the app wants each write committed at once.
        """
        ...

    def table_exists(self, session: Session, table: str) -> bool:
        """Whether the store's table `table` (a name from `TABLES`) exists (the catalog)."""
        ...

    def lock_schema(self, session: Session) -> None:
        """In the transaction that creates or upgrades the schema, before it reads the version:
        make every other process that opens the store wait for it."""
        ...

    def lock_schedule(self, session: Session, name: str) -> None:
        """In the transaction of a tick's claim: make every other claim of schedule `name`
        wait for it ("claim unless a run is going" races under READ COMMITTED)."""
        ...

    def notify(self, session: Session, queue: str) -> None:
        """In the transaction of an enqueue to `queue`: tell the listeners of other processes,
        on commit (nothing, where the engine announces nothing)."""
        ...

    def insert_announced(
        self, session: Session, template: str, params: Params, queue: str
    ) -> int | None:
        """`session.insert(template, params)`, and, if it inserted the row, `notify` of
        `queue`: in one statement where the engine can."""
        ...

    def listener(self) -> Listener | None: ...

    def enqueue_keyless(self, queue: str, jobs: Sequence[NewJob]) -> list[int] | None:
        """A fast path for jobs without a key, or None to take the statements' own."""
        ...

    def hold_mark(self) -> Mark | None:
        """This process's liveness mark on the store (see `_marks.py`), or None where the
        engine can keep none; never waits for the database."""
        ...

    def free_marks(self, session: Session, workers: Sequence[str]) -> list[str]:
        """Those of `workers` (ids that claimed under a mark) whose mark no process holds now.
        In a transaction, the marks it found free stay so until it ends, so a worker that
        takes its mark back does so after the sweep that follows, not during it."""
        ...

    def doorbell(self, queue: str) -> Listener | None:
        """Where `listener()` can't hear other processes: a listener rung by the enqueues to
        `queue` of this host's processes (bound before it is returned), or None."""
        ...
