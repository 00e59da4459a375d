"""Every SQL statement of the durable tier, each written once in the neutral spelling of
`_sql.py`, named for what it does (as procrastinate names its queries).

The rules at the heart of the queue's guarantees are here and nowhere else: what each outcome
sets on a job (a cancel asked while it runs wins whatever its worker writes; a retry spends an
attempt), and what the stalled sweep sets (a job whose worker keeps dying fails after
`max_resets`). The state sets come from the model's table of transitions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from ._model import LIVE_STATES, READY_STATES, RETRYABLE_STATES, JobState, OutcomeKind

__all__ = ["JOB_FIELDS", "JSON_FIELDS", "SCHEMA"]


def _states(states: Sequence[JobState]) -> str:
    return "(" + ", ".join(f"'{state}'" for state in states) + ")"


_READY: Final = f"state IN {_states(READY_STATES)}"
_LIVE: Final = f"state IN {_states(LIVE_STATES)}"

# -- the schema ----------------------------------------------------------------------------------

# One step per version: step n turns version n into n + 1. Later steps add tables; a step
# already released never changes. Its fields are tables, indexes and `SchemaTypes`.
SCHEMA: Final = (
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

VERSION_TABLE: Final = "CREATE TABLE IF NOT EXISTS {schema_version} (version {integer} NOT NULL)"
VERSION: Final = "SELECT version FROM {schema_version}"
VERSION_ROW: Final = "INSERT INTO {schema_version} (version) VALUES (0)"
SET_VERSION: Final = "UPDATE {schema_version} SET version = :version"

# -- jobs ----------------------------------------------------------------------------------------

# The columns a `Job` is read from, in the order the SQL store's row mapper takes them.
JOB_FIELDS: Final = (
    "id", "queue", "payload", "state", "priority", "attempts", "max_attempts", "resets", "key",
    "enqueued_at", "run_after", "started_at", "finished_at", "heartbeat_at", "worker",
    "cancel_requested", "last_error", "result",
)  # fmt: skip
JSON_FIELDS: Final = frozenset({"payload", "result"})
_JOB: Final = ", ".join(
    f"{name}{{as_text}}" if name in JSON_FIELDS else name for name in JOB_FIELDS
)

NOW: Final = "SELECT {now}"

# One job; with a key that a live job of the queue holds, nothing (the caller finds that job).
INSERT_JOB: Final = f"""
    INSERT INTO {{jobs}} (queue, payload, priority, max_attempts, key, enqueued_at, run_after)
    VALUES (:queue, :payload{{as_json}}, :priority, :max_attempts, :key, {{now}},
            coalesce(:run_at, {{now}} + :delay))
    ON CONFLICT (queue, key) WHERE key IS NOT NULL AND {_LIVE} DO NOTHING
"""
LIVE_JOB_OF_KEY: Final = f"SELECT id FROM {{jobs}} WHERE queue = :queue AND key = :key AND {_LIVE}"
JOB: Final = f"SELECT {_JOB} FROM {{jobs}} WHERE id = :id AND queue = :queue"

CANCEL: Final = f"""
    UPDATE {{jobs}} SET
        state = CASE WHEN state = 'processing' THEN state ELSE 'canceled' END,
        finished_at = CASE WHEN state = 'processing' THEN finished_at ELSE {{now}} END,
        cancel_requested = true
    WHERE id = :id AND queue = :queue AND {_LIVE}
"""
RETRY: Final = f"""
    UPDATE {{jobs}} SET
        state = 'queued', attempts = 0, resets = 0, cancel_requested = false,
        run_after = {{now}}, started_at = NULL, finished_at = NULL, heartbeat_at = NULL,
        worker = NULL, claim_token = NULL, stalled_after = NULL, max_resets = NULL,
        result = NULL
    WHERE id = :id AND queue = :queue AND state IN {_states(RETRYABLE_STATES)}
        AND (key IS NULL OR NOT EXISTS (
            SELECT 1 FROM {{jobs}} AS live WHERE live.queue = :queue
                AND live.key = {{jobs}}.key AND live.{_LIVE}))
"""
COUNTS: Final = "SELECT state, count(*) FROM {jobs} WHERE queue = :queue GROUP BY state"
COUNT_READY: Final = (
    f"SELECT count(*) FROM {{jobs}} WHERE queue = :queue AND {_READY} AND run_after <= {{now}}"
)
OLDEST_READY_AGE: Final = f"""
    SELECT {{now}} - min(run_after) FROM {{jobs}}
    WHERE queue = :queue AND {_READY} AND run_after <= {{now}}
"""
# A batch of a purge, in its own transaction: a long purge never holds a lock for long.
PURGE: Final = """
    DELETE FROM {jobs} WHERE id IN (
        SELECT id FROM {jobs}
        WHERE queue = :queue AND state IN {values:states} AND finished_at <= :cutoff
        LIMIT :batch)
"""

# -- claims and what their workers write -------------------------------------------------------

# A claim: the due jobs of a queue, in the order they run, taken by one statement; the token of
# each attempt is the claim's random part and the job's id, so that the claim can read back
# what it took (among the processing jobs of the queue: few, and indexed) without RETURNING,
# which SQLite before 3.35 lacks.
CLAIM: Final = f"""
    WITH picked AS (
        SELECT id FROM {{jobs}}
        WHERE queue = :queue AND {_READY} AND run_after <= {{now}}
        ORDER BY priority DESC, run_after, id
        LIMIT :limit{{skip_locked}}
    )
    UPDATE {{jobs}} SET
        state = 'processing', started_at = {{now}}, heartbeat_at = {{now}}, worker = :worker,
        attempts = attempts + 1, claim_token = :claim || '.' || id,
        stalled_after = :stalled_after, max_resets = :max_resets
    WHERE id IN (SELECT id FROM picked)
"""
CLAIMED: Final = f"""
    SELECT {_JOB}, claim_token FROM {{jobs}}
    WHERE queue = :queue AND state = 'processing'
        AND substr(claim_token, 1, :claim_length) = :claim
    ORDER BY priority DESC, run_after, id
"""

_HELD: Final = "state = 'processing' AND (id, claim_token) IN {values:claims}"
HEARTBEAT: Final = f"UPDATE {{jobs}} SET heartbeat_at = {{now}} WHERE {_HELD}"
STILL_HELD: Final = f"SELECT id, cancel_requested FROM {{jobs}} WHERE {_HELD}"

# What each outcome sets on a claimed job (the old row's values on the right).
_OUTCOMES: Final[dict[OutcomeKind, str]] = {
    "completed": """
        state = CASE WHEN cancel_requested THEN 'canceled' ELSE 'completed' END,
        finished_at = {now}, result = :result{as_json}
    """,
    "errored": """
        state = CASE WHEN cancel_requested THEN 'canceled'
                     WHEN attempts >= max_attempts THEN 'failed' ELSE 'errored' END,
        finished_at = CASE WHEN cancel_requested OR attempts >= max_attempts THEN {now} END,
        run_after = {now} + :delay, last_error = :error
    """,
    "failed": """
        state = CASE WHEN cancel_requested THEN 'canceled' ELSE 'failed' END,
        finished_at = {now}, last_error = :error
    """,
    "canceled": "state = 'canceled', finished_at = {now}",
    "handed_back": """
        state = CASE WHEN cancel_requested THEN 'canceled' ELSE 'queued' END,
        attempts = CASE WHEN cancel_requested THEN attempts ELSE attempts - 1 END,
        finished_at = CASE WHEN cancel_requested THEN {now} END
    """,
}
FINISH: Final[dict[OutcomeKind, str]] = {
    kind: f"""
        UPDATE {{jobs}} SET {assignments}
        WHERE id = :id AND claim_token = :token AND state = 'processing'
    """
    for kind, assignments in _OUTCOMES.items()
}
# After FINISH, in its transaction: whether this claim's outcome is on the row, written just
# now or by an earlier try of the same write (the token stays on the row it ended).
FINISHED: Final = """
    SELECT 1 FROM {jobs} WHERE id = :id AND claim_token = :token AND state <> 'processing'
"""

# The stalled sweep: processing jobs whose heartbeat is older than the stalled_after of the
# worker that claimed them (stored on the row), or whose worker is among `dead` (its liveness
# mark was free: its process is gone), go back to queued with one more reset, or fail after
# max_resets, or end canceled if a cancel was asked. STALLED locks them (skipping those a
# worker is writing right now) for SWEEP, and SWEPT reads what became of them.
_SWEEPABLE: Final = "(heartbeat_at + stalled_after < {now} OR worker IN {values:dead})"
STALLED: Final = f"""
    SELECT id FROM {{jobs}}
    WHERE queue = :queue AND state = 'processing' AND {_SWEEPABLE}
    ORDER BY id{{skip_locked}}
"""
SWEEP: Final = f"""
    UPDATE {{jobs}} SET
        state = CASE WHEN cancel_requested THEN 'canceled'
                     WHEN resets >= max_resets THEN 'failed' ELSE 'queued' END,
        finished_at = CASE WHEN cancel_requested OR resets >= max_resets THEN {{now}} END,
        last_error = CASE WHEN NOT cancel_requested AND resets >= max_resets
            THEN 'the worker died ' || (resets + 1)
                || CASE WHEN resets = 0 THEN ' time' ELSE ' times' END
                || ' while running it'
            ELSE last_error END,
        resets = resets + 1,
        claim_token = NULL
    WHERE id IN {{values:ids}} AND state = 'processing' AND {_SWEEPABLE}
"""
SWEPT: Final = """
    SELECT id, queue, payload{as_text}, attempts, resets, state, worker FROM {jobs}
    WHERE id IN {values:ids} ORDER BY id
"""
# The workers holding processing jobs of a queue (few, and indexed): the liveness sweep tests
# the marks of those that claimed under one.
WORKING: Final = "SELECT DISTINCT worker FROM {jobs} WHERE queue = :queue AND state = 'processing'"

# -- leases --------------------------------------------------------------------------------------

# Two takers of an expired lease race on the row's lock (ON CONFLICT, or SQLite's one writer):
# the second sees the first's new expiry in its WHERE, and gets nothing.
TAKE_LEASE: Final = """
    INSERT INTO {leases} AS lease (name, holder, token, expires_at)
    VALUES (:name, :holder, 1, {now} + :ttl)
    ON CONFLICT (name) DO UPDATE SET
        token = CASE WHEN lease.holder = :holder AND lease.expires_at > {now}
                     THEN lease.token ELSE lease.token + 1 END,
        holder = :holder, expires_at = {now} + :ttl
    WHERE lease.holder IS NULL OR lease.expires_at <= {now} OR lease.holder = :holder
"""
HELD_LEASE: Final = """
    SELECT token FROM {leases} WHERE name = :name AND holder = :holder AND expires_at > {now}
"""
RENEW_LEASE: Final = """
    UPDATE {leases} SET expires_at = {now} + :ttl
    WHERE name = :name AND holder = :holder AND token = :token AND expires_at > {now}
"""
RELEASE_LEASE: Final = """
    UPDATE {leases} SET holder = NULL, expires_at = NULL
    WHERE name = :name AND holder = :holder AND token = :token
"""

# -- fleet-wide schedules ------------------------------------------------------------------------

DEAD_RUNS: Final = """
    SELECT tick, stalled_after FROM {schedule_runs}
    WHERE name = :name AND state = 'running' AND heartbeat_at + stalled_after < {now}
"""
END_DEAD_RUN: Final = """
    UPDATE {schedule_runs} SET state = 'failed', finished_at = {now}, error = :error
    WHERE name = :name AND tick = :tick AND state = 'running'
"""
TICK_TAKEN: Final = "SELECT 1 FROM {schedule_runs} WHERE name = :name AND tick = :tick"
RUN_GOING: Final = "SELECT 1 FROM {schedule_runs} WHERE name = :name AND state = 'running'"
RECORD_TICK: Final = """
    INSERT INTO {schedule_runs}
        (name, tick, state, worker, started_at, finished_at, heartbeat_at, stalled_after)
    VALUES (:name, :tick, :state, :worker, {now}, CASE WHEN :state = 'skipped' THEN {now} END,
            {now}, :stalled_after)
"""
KEEP_LATEST_RUNS: Final = """
    DELETE FROM {schedule_runs}
    WHERE name = :name AND state <> 'running' AND tick < (
        SELECT tick FROM {schedule_runs} WHERE name = :name
        ORDER BY tick DESC LIMIT 1 OFFSET :keep)
"""
HEARTBEAT_RUN: Final = """
    UPDATE {schedule_runs} SET heartbeat_at = {now}
    WHERE name = :name AND tick = :tick AND worker = :worker AND state = 'running'
"""
FINISH_RUN: Final = """
    UPDATE {schedule_runs} SET state = :state, finished_at = {now}, error = :error
    WHERE name = :name AND tick = :tick AND worker = :worker AND state = 'running'
"""
RUN_FINISHED: Final = """
    SELECT 1 FROM {schedule_runs}
    WHERE name = :name AND tick = :tick AND worker = :worker AND state = :state
"""
SCHEDULE_RUNS: Final = """
    SELECT name, tick, state, worker, started_at, finished_at, error FROM {schedule_runs}
    WHERE name = :name ORDER BY tick DESC LIMIT :limit
"""

# -- out-of-band migrations ----------------------------------------------------------------------

REGISTER_MIGRATION: Final = """
    INSERT INTO {migrations} (id, updated_at) VALUES (:id, {now}) ON CONFLICT DO NOTHING
"""
SET_MIGRATION_DIRECTION: Final = """
    INSERT INTO {migrations} AS m (id, reverse, updated_at) VALUES (:id, :reverse, {now})
    ON CONFLICT (id) DO UPDATE SET reverse = :reverse, updated_at = {now}
        WHERE m.reverse <> :reverse
"""
STORE_MIGRATION_PROGRESS: Final = """
    UPDATE {migrations} SET progress = :progress, updated_at = {now}
    WHERE id = :id AND progress <> :progress
"""
RECORD_MIGRATION_ERROR: Final = """
    INSERT INTO {migration_errors} (migration_id, at, error) VALUES (:id, {now}, :error)
"""
KEEP_LATEST_MIGRATION_ERRORS: Final = """
    DELETE FROM {migration_errors} WHERE migration_id = :id AND id < (
        SELECT id FROM {migration_errors} WHERE migration_id = :id
        ORDER BY id DESC LIMIT 1 OFFSET :keep)
"""
_MIGRATIONS: Final = """
    SELECT m.id, m.progress, m.reverse, m.updated_at, e.at, e.error
    FROM {migrations} AS m LEFT JOIN {migration_errors} AS e ON e.migration_id = m.id
"""
MIGRATIONS: Final = f"{_MIGRATIONS} ORDER BY m.id, e.id DESC"
MIGRATIONS_OF: Final = f"{_MIGRATIONS} WHERE m.id IN {{values:ids}} ORDER BY m.id, e.id DESC"
