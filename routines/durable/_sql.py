"""The SQL both backends speak alike: the store's schema and the rules of a job's life, once.

What an outcome and the stalled sweep set on a job are the heart of the queue's guarantees (a
cancel asked while a job runs wins whatever its worker writes; a retry spends an attempt; a job
whose worker keeps dying fails after `max_resets`). Each backend builds its statements from
these, giving its own spelling of the database's now, of its parameters, of its types and of the
names of its tables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final, TypedDict

if TYPE_CHECKING:
    from ._backend import OutcomeKind

__all__ = [
    "LIVE_STATES",
    "SchemaTypes",
    "job_columns",
    "outcome_assignments",
    "schema_steps",
    "stalled_assignments",
]


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


# The schema, one step per version: step n turns version n into n + 1. Later steps add tables;
# a step already released never changes. Its fields are the names of tables and indexes and the
# keys of `SchemaTypes`, spelled by each backend with `schema_steps()`.
_SCHEMA: Final = (
    (
        """
        CREATE TABLE {jobs} (
            id {identity},
            queue {text} NOT NULL,
            payload {json} NOT NULL,
            state {text} NOT NULL DEFAULT 'queued' CHECK (state IN
                ('queued', 'processing', 'completed', 'errored', 'failed', 'canceled')),
            priority {integer} NOT NULL,
            attempts {integer} NOT NULL DEFAULT 0,
            max_attempts {integer} NOT NULL,
            resets {integer} NOT NULL DEFAULT 0,
            key {text},
            enqueued_at {moment} NOT NULL{now_default},
            run_after {moment} NOT NULL,
            started_at {moment},
            finished_at {moment},
            heartbeat_at {moment},
            worker {text},
            claim_token {text},
            stalled_after {interval},
            max_resets {integer},
            cancel_requested {boolean} NOT NULL DEFAULT {false},
            last_error {text},
            result {json}
        )
        """,
        """
        CREATE INDEX {jobs_ready} ON {jobs} (queue, priority DESC, run_after, id)
            WHERE state IN ('queued', 'errored')
        """,
        """
        CREATE UNIQUE INDEX {jobs_live_key} ON {jobs} (queue, key)
            WHERE key IS NOT NULL AND state IN ('queued', 'errored', 'processing')
        """,
        """
        CREATE INDEX {jobs_processing} ON {jobs} (queue, heartbeat_at)
            WHERE state = 'processing'
        """,
        "CREATE INDEX {jobs_by_state} ON {jobs} (queue, state, finished_at)",
    ),
    (
        """
        CREATE TABLE {leases} (
            name {text} PRIMARY KEY,
            holder {text},
            token {bigint} NOT NULL,
            expires_at {moment}
        )
        """,
        """
        CREATE TABLE {schedule_runs} (
            name {text} NOT NULL,
            tick {moment} NOT NULL,
            state {text} NOT NULL CHECK (state IN ('running', 'completed', 'failed', 'skipped')),
            worker {text} NOT NULL,
            started_at {moment} NOT NULL,
            finished_at {moment},
            heartbeat_at {moment},
            stalled_after {interval},
            error {text},
            PRIMARY KEY (name, tick)
        )
        """,
        "CREATE INDEX {schedule_runs_running} ON {schedule_runs} (name) WHERE state = 'running'",
    ),
    (
        """
        CREATE TABLE {migrations} (
            id {text} PRIMARY KEY,
            progress {real} NOT NULL DEFAULT 0,
            reverse {boolean} NOT NULL DEFAULT {false},
            updated_at {moment} NOT NULL{now_default}
        )
        """,
        """
        CREATE TABLE {migration_errors} (
            id {identity},
            migration_id {text} NOT NULL,
            at {moment} NOT NULL{now_default},
            error {text} NOT NULL
        )
        """,
        """
        CREATE INDEX {migration_errors_latest} ON {migration_errors} (migration_id, id DESC)
        """,
    ),
)
_TABLES: Final = ("jobs", "leases", "schedule_runs", "migrations", "migration_errors")
_INDEXES: Final = (
    "jobs_ready",
    "jobs_live_key",
    "jobs_processing",
    "jobs_by_state",
    "schedule_runs_running",
    "migration_errors_latest",
)


def schema_steps(
    *,
    table: Callable[[str], str],
    index: Callable[[str], str],
    types: SchemaTypes,
    also: Mapping[int, tuple[str, ...]] | None = None,
) -> tuple[tuple[str, ...], ...]:
    """The schema's steps in a backend's dialect: `table` and `index` spell the name of each
    table and index, `types` the column types; `also` adds a backend's own statements to a step,
    by the step's position (0 for the first), after the shared ones."""
    names = {name: table(name) for name in _TABLES} | {name: index(name) for name in _INDEXES}
    return tuple(
        (
            *(statement.format(**names, **types) for statement in step),
            *(also or {}).get(number, ()),
        )
        for number, step in enumerate(_SCHEMA)
    )


# The states of a job that is not final: a job's key is unique among the jobs in these.
LIVE_STATES: Final = "('queued', 'errored', 'processing')"

# The columns a `Job` is read from, in the order `_queue.job_from_row()` takes them.
_JOB_FIELDS: Final = (
    "id", "queue", "payload", "state", "priority", "attempts", "max_attempts", "resets", "key",
    "enqueued_at", "run_after", "started_at", "finished_at", "heartbeat_at", "worker",
    "cancel_requested", "last_error", "result",
)  # fmt: skip
_JSON_FIELDS: Final = frozenset({"payload", "result"})


def job_columns(*, table: str = "", json_as_text: str = "") -> str:
    """The SELECT (or RETURNING) list of a job row, in `job_from_row()`'s order: each column
    prefixed with `table.` if a table is given, the JSON ones followed by `json_as_text` (the
    backend's cast of JSON to text, if it needs one)."""
    prefix = f"{table}." if table else ""
    return ", ".join(
        f"{prefix}{field}{json_as_text if field in _JSON_FIELDS else ''}" for field in _JOB_FIELDS
    )


def outcome_assignments(
    *, now: str, result: str, error: str, run_after: str
) -> dict[OutcomeKind, str]:
    """What each outcome sets on a claimed job, as the SET list of one UPDATE (the old row's
    values on the right), in SQL that both backends speak: the rules live here once, and each
    backend gives its spelling of the database's `now`, of the `result` and `error` parameters
    and of `run_after` (now plus the outcome's delay)."""
    return {
        "completed": f"""
            state = CASE WHEN cancel_requested THEN 'canceled' ELSE 'completed' END,
            finished_at = {now}, result = {result}
        """,
        "errored": f"""
            state = CASE WHEN cancel_requested THEN 'canceled'
                         WHEN attempts >= max_attempts THEN 'failed' ELSE 'errored' END,
            finished_at = CASE WHEN cancel_requested OR attempts >= max_attempts THEN {now} END,
            run_after = {run_after}, last_error = {error}
        """,
        "failed": f"""
            state = CASE WHEN cancel_requested THEN 'canceled' ELSE 'failed' END,
            finished_at = {now}, last_error = {error}
        """,
        "canceled": f"state = 'canceled', finished_at = {now}",
        "handed_back": f"""
            state = CASE WHEN cancel_requested THEN 'canceled' ELSE 'queued' END,
            attempts = CASE WHEN cancel_requested THEN attempts ELSE attempts - 1 END,
            finished_at = CASE WHEN cancel_requested THEN {now} END
        """,
    }


def stalled_assignments(*, now: str) -> str:
    """What the stalled sweep sets on a processing job whose worker stopped heartbeating (the
    SET list of one UPDATE): back to queued with one more reset, or failed after `max_resets`
    resets, or canceled if a cancel was asked; `now` is the backend's spelling of its now."""
    return f"""
        state = CASE WHEN cancel_requested THEN 'canceled'
                     WHEN resets >= max_resets THEN 'failed' ELSE 'queued' END,
        finished_at = CASE WHEN cancel_requested OR resets >= max_resets THEN {now} END,
        last_error = CASE WHEN NOT cancel_requested AND resets >= max_resets
            THEN 'the worker died ' || (resets + 1)
                || CASE WHEN resets = 0 THEN ' time' ELSE ' times' END
                || ' while running it'
            ELSE last_error END,
        resets = resets + 1,
        claim_token = NULL
    """
