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

from ._model import LIVE_STATES, READY_STATES, JobState, OutcomeKind

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
    (
        # One row per queue that was ever paused or limited. A claim reads its row by primary
        # key. `rate_count` starts at most in any window of `rate_per`.
        """
        CREATE TABLE {queues} (
            name {text} PRIMARY KEY,
            paused {boolean} NOT NULL DEFAULT {false},
            max_running {integer},
            group_running {integer},
            rate_count {integer},
            rate_per {interval}
        )
        """,
        # The starts of the jobs of rate-limited queues within their window (older ones are
        # deleted by the claims that record new ones).
        """
        CREATE TABLE {queue_starts} (
            queue {text} NOT NULL,
            at {moment} NOT NULL
        )
        """,
        "CREATE INDEX {queue_starts_window} ON {queue_starts} (queue, at)",
        "ALTER TABLE {jobs} ADD COLUMN job_group {text}",
        "ALTER TABLE {jobs} ADD COLUMN snoozes {integer} NOT NULL DEFAULT 0",
        # The running jobs of one group, which `group_running` counts.
        """
        CREATE INDEX {jobs_group_running} ON {jobs} (queue, job_group)
            WHERE state = 'processing' AND job_group IS NOT NULL
        """,
        # The task a job's payload calls (`_model.task_of`), written at enqueue: listings by
        # task are read from an index, not from the JSON of every row.
        "ALTER TABLE {jobs} ADD COLUMN task {text}",
        # The job browser's pages, newest first: one range of one state at a time.
        "CREATE INDEX {jobs_listing} ON {jobs} (queue, state, id)",
        """
        CREATE INDEX {jobs_task_listing} ON {jobs} (queue, task, state, id)
            WHERE task IS NOT NULL
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
    "cancel_requested", "last_error", "result", "job_group", "snoozes",
)  # fmt: skip
JSON_FIELDS: Final = frozenset({"payload", "result"})
_JOB: Final = ", ".join(
    f"{name}{{as_text}}" if name in JSON_FIELDS else name for name in JOB_FIELDS
)

NOW: Final = "SELECT {now}"

# One job; with a key that a live job of the queue holds, nothing (the caller finds that job).
INSERT_JOB: Final = f"""
    INSERT INTO {{jobs}}
        (queue, payload, priority, max_attempts, key, task, job_group, enqueued_at, run_after)
    VALUES (:queue, :payload{{as_json}}, :priority, :max_attempts, :key, :task, :group, {{now}},
            coalesce(:run_at, {{now}} + :delay))
    ON CONFLICT (queue, key) WHERE key IS NOT NULL AND {_LIVE} DO NOTHING
"""
LIVE_JOB_OF_KEY: Final = f"SELECT id FROM {{jobs}} WHERE queue = :queue AND key = :key AND {_LIVE}"
# A job by its id, which is unique in the store (the primary key); of one queue, or of any.
JOB_OF_ANY_QUEUE: Final = f"SELECT {_JOB} FROM {{jobs}} WHERE id = :id"
JOB: Final = f"{JOB_OF_ANY_QUEUE} AND queue = :queue"

# Cancel and retry take the jobs of a range of ids in some states: one job (`cancel`, `retry`:
# the range of its id), or a batch of `cancel_all` / `retry_all` (the range of ids a batch
# read; the states are checked again here).
_RANGE: Final = "queue = :queue AND state IN {values:states} AND id BETWEEN :low AND :high"
CANCEL: Final = f"""
    UPDATE {{jobs}} SET
        state = CASE WHEN state = 'processing' THEN state ELSE 'canceled' END,
        finished_at = CASE WHEN state = 'processing' THEN finished_at ELSE {{now}} END,
        cancel_requested = true
    WHERE {_RANGE}
"""
# A job whose key a live job holds stays as it is: `enqueue` with that key returned the live
# one, and two live jobs of one key would break the key's promise. (A job without a key finds
# no live job: NULL equals nothing. Written without `key IS NULL OR`, and with `key IS NOT
# NULL`, so that the engine reads the live keys from their partial index, not every live job.)
RETRY: Final = f"""
    UPDATE {{jobs}} SET
        state = 'queued', attempts = 0, resets = 0, cancel_requested = false,
        run_after = {{now}}, started_at = NULL, finished_at = NULL, heartbeat_at = NULL,
        worker = NULL, claim_token = NULL, stalled_after = NULL, max_resets = NULL,
        result = NULL
    WHERE {_RANGE}
        AND NOT EXISTS (
            SELECT 1 FROM {{jobs}} AS live WHERE live.queue = :queue
                AND live.key = {{jobs}}.key AND live.key IS NOT NULL AND live.{_LIVE})
"""
# The next batch of a bulk change: the ids of up to :batch jobs of one state, from :through
# down (read backwards from the index jobs_listing, so a batch costs the same deep in a big
# queue as at its top).
BATCH: Final = """
    SELECT id FROM {jobs} WHERE queue = :queue AND state = :state AND id <= :through
    ORDER BY id DESC LIMIT :batch
"""
# A waiting job due now; one already due keeps its place (its earlier run_after).
RUN_NOW: Final = f"""
    UPDATE {{jobs}} SET run_after = CASE WHEN run_after > {{now}} THEN {{now}} ELSE run_after END
    WHERE id = :id AND queue = :queue AND {_READY}
"""
_COUNTS: Final = "state, count(*) FROM {jobs}"
COUNTS: Final = f"SELECT {_COUNTS} WHERE queue = :queue GROUP BY state"
# Every queue's counts: an index-only read of every entry of an index on (queue, state), in the
# database (no row of the table is read, none crosses to Python but one per queue and state);
# what counting costs, about 0.1 s per million jobs.
ALL_COUNTS: Final = f"SELECT queue, {_COUNTS} GROUP BY queue, state"
_READY_AGE: Final = (
    f"{{now}} - min(run_after) FROM {{jobs}} WHERE {_READY} AND run_after <= {{now}}"
)
OLDEST_READY_AGE: Final = f"SELECT {_READY_AGE} AND queue = :queue"
# From the index of ready jobs (jobs_ready): its entries, not the table's rows.
ALL_OLDEST_READY_AGES: Final = f"SELECT queue, {_READY_AGE} GROUP BY queue"
_PAUSED: Final = "EXISTS (SELECT 1 FROM {queues} WHERE name = :queue AND paused)"
_LIMITS: Final = "max_running IS NOT NULL OR group_running IS NOT NULL OR rate_count IS NOT NULL"
_LIMITED: Final = f"EXISTS (SELECT 1 FROM {{queues}} WHERE name = :queue AND ({_LIMITS}))"
# Paused, or limited: then the plain claim (CLAIM) takes nothing, and a worker that learns the
# queue is limited claims with LIMITED_CLAIM.
_HELD_BACK: Final = (
    f"EXISTS (SELECT 1 FROM {{queues}} WHERE name = :queue AND (paused OR {_LIMITS}))"
)
# The seconds until a rate-limited queue whose window is full may start a job again: when the
# oldest start in the window leaves it.
_OPENS_IN: Final = """
    SELECT min(started.at) + q.rate_per - {clock}
    FROM {queue_starts} AS started JOIN {queues} AS q ON q.name = started.queue
    WHERE started.queue = :queue AND q.rate_count IS NOT NULL
        AND started.at > {clock} - q.rate_per
    GROUP BY q.rate_per, q.rate_count
    HAVING count(*) >= q.rate_count
"""
BACKLOG: Final = f"""
    SELECT (SELECT count(*) FROM {{jobs}}
            WHERE queue = :queue AND {_READY} AND run_after <= {{now}}),
           {_PAUSED}, {_LIMITED}, ({_OPENS_IN})
"""
PAUSED: Final = f"SELECT {_PAUSED}"
PAUSE: Final = """
    INSERT INTO {queues} (name, paused) VALUES (:queue, true)
    ON CONFLICT (name) DO UPDATE SET paused = true
"""
RESUME: Final = "UPDATE {queues} SET paused = false WHERE name = :queue"
QUEUE_ROWS: Final = (
    "SELECT name, paused, max_running, group_running, rate_count, rate_per FROM {queues}"
)
LIMITS: Final = f"{QUEUE_ROWS} WHERE name = :queue"
SET_LIMITS: Final = """
    INSERT INTO {queues} (name, max_running, group_running, rate_count, rate_per)
    VALUES (:queue, :max_running, :group_running, :rate_count, :rate_per)
    ON CONFLICT (name) DO UPDATE SET max_running = :max_running,
        group_running = :group_running, rate_count = :rate_count, rate_per = :rate_per
"""


def job_page(states: int, *, task: bool) -> str:
    """A page of a queue's jobs in :state_0 ... :state_<states - 1>, of the task :task if
    `task`, with ids up to :through, newest first, :limit at most.

    One branch per state, each read backwards from the index on (queue, [task,] state, id) and
    cut at :limit: a page reads at most `states` * :limit index entries, however many jobs the
    queue holds. (`state IN (...) ORDER BY id` could not be read in id order from one index:
    the engine would read every job of those states and sort them.)
    """
    of_task = " AND task = :task" if task else ""
    branches = " UNION ALL ".join(
        f"""SELECT * FROM (
            SELECT {_JOB} FROM {{jobs}}
            WHERE queue = :queue{of_task} AND state = :state_{n} AND id <= :through
            ORDER BY id DESC LIMIT :limit) AS branch_{n}"""
        for n in range(states)
    )
    return f"SELECT * FROM ({branches}) AS page ORDER BY id DESC LIMIT :limit"


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
# which SQLite before 3.35 lacks. A claim ahead (`:ahead`) takes jobs no handler has started
# yet: their attempt is counted, and `started_at` set, when a handler starts them (START).
# What a claim sets on each job it takes.
_TAKE: Final = """UPDATE {jobs} SET
        state = 'processing', heartbeat_at = {now}, worker = :worker,
        started_at = CASE WHEN :ahead THEN NULL ELSE {now} END,
        attempts = attempts + CASE WHEN :ahead THEN 0 ELSE 1 END,
        claim_token = :claim || '.' || id,
        stalled_after = :stalled_after, max_resets = :max_resets"""
CLAIM: Final = f"""
    WITH picked AS (
        SELECT id FROM {{jobs}}
        WHERE queue = :queue AND {_READY} AND run_after <= {{now}} AND NOT {_HELD_BACK}
        ORDER BY priority DESC, run_after, id
        LIMIT :limit{{skip_locked}}
    )
    {_TAKE}
    WHERE id IN (SELECT id FROM picked)
"""
# The same claim, returning what it took, where the engine has RETURNING (PostgreSQL): one
# statement, one round trip for a claim alone.
CLAIM_RETURNING: Final = f"{CLAIM} RETURNING {_JOB}, claim_token"

# The claim of a limited queue: the jobs CLAIM would take, as far as the queue's limits allow.
#
# The algorithm. `room` reads the limits and how many more jobs may start now: `:limit`, cut
# to `max_running` minus the queue's processing jobs and to `rate_count` minus the starts
# recorded within the last `rate_per`. `candidates` walks the ready jobs in the order they run
# and keeps those without a group or whose group has fewer than `group_running` processing
# jobs, up to `:scan` of them (the jobs of busy groups ahead are skipped, one index probe
# each). `allowed` keeps, of each group, only as many as its room (`in_group`), and the claim
# takes the first `free` of those. RECORD_STARTS then writes one start per job taken.
#
# Why concurrent claims can't exceed a limit: every count above is of rows that only a claim
# adds to (processing jobs, starts), and the claims of a limited queue run one at a time, each
# seeing the rows of every claim that ran before it:
# - PostgreSQL: LOCK_QUEUE, first in the claim's transaction, locks the queue's row; a claim
#   waits there until the claim before it commits, and under READ COMMITTED each following
#   statement takes a new snapshot, which holds that claim's rows. (One statement could not:
#   its snapshot is taken before it waits for the lock.) Jobs that end meanwhile only lower the
#   counts: a claim may see a slot taken that just freed, never a slot free that is taken. No
#   SKIP LOCKED is needed among claims of the queue; the UPDATE checks again that each job is
#   still ready, as a cancel or a plain claim (below) may have changed it since the snapshot.
#   The window of starts is read and written on `{clock}`, the moment the statement runs:
#   `{now}` is when the transaction began, before the wait for the lock, and a start recorded
#   at it would leave the window early by as long as the claim waited.
# - SQLite: every claim is a BEGIN IMMEDIATE transaction, so one writer at a time; each sees
#   every committed claim.
# - Workers that have not yet learned the queue is limited claim with CLAIM, which takes
#   nothing from a limited queue: a change of limits holds from the claims that start after it
#   commits (a plain claim already running when it commits finishes as it began).
LOCK_QUEUE: Final = "SELECT 1 FROM {queues} WHERE name = :queue{for_update}"
_PROCESSING: Final = "queue = :queue AND state = 'processing'"
_RUNNING_IN_GROUP: Final = f"""
    (SELECT count(*) FROM {{jobs}} AS running
     WHERE running.{_PROCESSING} AND running.job_group = {{group_of}})
"""
_ORDER: Final = "priority DESC, run_after, id"
LIMITED_CLAIM: Final = f"""
    WITH room AS (
        SELECT group_running, {{least}}(
            :limit,
            CASE WHEN max_running IS NULL THEN :limit ELSE max_running - (
                SELECT count(*) FROM {{jobs}} WHERE {_PROCESSING}) END,
            CASE WHEN rate_count IS NULL THEN :limit ELSE rate_count - (
                SELECT count(*) FROM {{queue_starts}}
                WHERE queue = :queue AND at > {{clock}} - rate_per) END
        ) AS free
        FROM {{queues}} WHERE name = :queue AND NOT paused
    ),
    candidates AS (
        SELECT id, job_group, priority, run_after FROM {{jobs}} AS job
        WHERE queue = :queue AND {_READY} AND run_after <= {{now}}
            AND (job_group IS NULL OR NOT EXISTS (
                SELECT 1 FROM room WHERE group_running <= {
    _RUNNING_IN_GROUP.replace("{group_of}", "job.job_group")
}))
        ORDER BY {_ORDER}
        LIMIT :scan
    ),
    ranked AS (
        SELECT id, job_group, priority, run_after,
            row_number() OVER (PARTITION BY job_group ORDER BY {_ORDER}) AS in_group
        FROM candidates
    ),
    allowed AS (
        SELECT ranked.id, room.free,
            row_number() OVER (ORDER BY {_ORDER.replace("id", "ranked.id")}) AS place
        FROM ranked CROSS JOIN room
        WHERE ranked.job_group IS NULL OR room.group_running IS NULL
            OR ranked.in_group + {_RUNNING_IN_GROUP.replace("{group_of}", "ranked.job_group")}
                <= room.group_running
    )
    {_TAKE}
    WHERE id IN (SELECT id FROM allowed WHERE place <= free) AND {_READY}
"""
LIMITED_CLAIM_RETURNING: Final = f"{LIMITED_CLAIM} RETURNING {_JOB}, claim_token"
_OF_CLAIM: Final = "substr(claim_token, 1, :claim_length) = :claim"
RECORD_STARTS: Final = f"""
    INSERT INTO {{queue_starts}} (queue, at)
    SELECT queue, {{clock}} FROM {{jobs}}
    WHERE {_PROCESSING} AND {_OF_CLAIM}
        AND EXISTS (SELECT 1 FROM {{queues}} WHERE name = :queue AND rate_count IS NOT NULL)
"""
# The starts that left the window (all of them once the queue has no rate).
PRUNE_STARTS: Final = """
    DELETE FROM {queue_starts} WHERE queue = :queue AND NOT EXISTS (
        SELECT 1 FROM {queues}
        WHERE name = :queue AND rate_count IS NOT NULL AND {queue_starts}.at > {clock} - rate_per)
"""
CLAIMED: Final = f"""
    SELECT {_JOB}, claim_token FROM {{jobs}}
    WHERE {_PROCESSING} AND {_OF_CLAIM}
    ORDER BY {_ORDER}
"""

_HELD: Final = "state = 'processing' AND (id, claim_token) IN {values:claims}"
START: Final = f"""
    UPDATE {{jobs}} SET started_at = {{now}}, attempts = attempts + 1
    WHERE started_at IS NULL AND {_HELD}
"""
HEARTBEAT: Final = f"UPDATE {{jobs}} SET heartbeat_at = {{now}} WHERE {_HELD}"
STILL_HELD: Final = f"SELECT id, cancel_requested FROM {{jobs}} WHERE {_HELD}"

# What each outcome sets on a claimed job (the old row's values on the right).
# An attempt a handler ran whose start no round has written yet (it ended in the round after
# it began) is counted by its outcome: `attempts` then still lacks it, and `started_at` is None.
_COUNTED: Final = "attempts + CASE WHEN started_at IS NULL THEN 1 ELSE 0 END"
_RAN: Final = f"attempts = {_COUNTED}, started_at = coalesce(started_at, {{now}})"

# What each outcome sets on a claimed job (the old row's values on the right).
_OUTCOMES: Final[dict[OutcomeKind, str]] = {
    "completed": f"""
        state = CASE WHEN cancel_requested THEN 'canceled' ELSE 'completed' END,
        finished_at = {{now}}, result = :result{{as_json}}, {_RAN}
    """,
    "errored": f"""
        state = CASE WHEN cancel_requested THEN 'canceled'
                     WHEN {_COUNTED} >= max_attempts THEN 'failed' ELSE 'errored' END,
        finished_at = CASE WHEN cancel_requested OR {_COUNTED} >= max_attempts
                           THEN {{now}} END,
        run_after = {{now}} + :delay, last_error = :error, {_RAN}
    """,
    "failed": f"""
        state = CASE WHEN cancel_requested THEN 'canceled' ELSE 'failed' END,
        finished_at = {{now}}, last_error = :error, {_RAN}
    """,
    # given back unstarted (claimed ahead), or its handler stopped: no attempt spent
    "canceled": "state = 'canceled', finished_at = {now}",
    "handed_back": """
        state = CASE WHEN cancel_requested THEN 'canceled' ELSE 'queued' END,
        attempts = CASE WHEN cancel_requested OR started_at IS NULL THEN attempts
                        ELSE attempts - 1 END,
        finished_at = CASE WHEN cancel_requested THEN {now} END
    """,
    # the handler raised Snooze: back to queued as a hand-back, due after :delay
    "snoozed": """
        state = CASE WHEN cancel_requested THEN 'canceled' ELSE 'queued' END,
        attempts = CASE WHEN cancel_requested OR started_at IS NULL THEN attempts
                        ELSE attempts - 1 END,
        finished_at = CASE WHEN cancel_requested THEN {now} END,
        run_after = {now} + :delay, snoozes = snoozes + 1
    """,
}
FINISH: Final[dict[OutcomeKind, str]] = {
    kind: f"""
        UPDATE {{jobs}} SET {assignments}
        WHERE id = :id AND claim_token = :token AND state = 'processing'
    """
    for kind, assignments in _OUTCOMES.items()
}
# The outcomes of one kind of many claims in one statement, where the engine has UPDATE ... FROM
# and RETURNING (PostgreSQL): the same assignments, each parameter read from the row of `done`
# of its claim; it returns the (id, token) of each job it wrote.
_OUTCOME_PARAMETERS: Final[dict[OutcomeKind, tuple[str, ...]]] = {
    "completed": ("result",),
    "errored": ("error", "delay"),
    "failed": ("error",),
    "canceled": (),
    "handed_back": (),
    "snoozed": ("delay",),
}


def _from_done(assignments: str, parameters: tuple[str, ...]) -> str:
    for name in parameters:
        assignments = assignments.replace(f":{name}", f"done.{name}")
    return assignments


def _done_columns(kind: OutcomeKind) -> str:
    return ", ".join(("id", "token", *_OUTCOME_PARAMETERS[kind]))


FINISH_MANY: Final[dict[OutcomeKind, str]] = {
    kind: f"""
        UPDATE {{jobs}} SET {_from_done(assignments, _OUTCOME_PARAMETERS[kind])}
        FROM {{values:done}} AS done({_done_columns(kind)})
        WHERE {{jobs}}.id = done.id AND {{jobs}}.claim_token = done.token
            AND {{jobs}}.state = 'processing'
        RETURNING {{jobs}}.id, {{jobs}}.claim_token
    """
    for kind, assignments in _OUTCOMES.items()
}
OUTCOME_PARAMETERS: Final = _OUTCOME_PARAMETERS

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
# A job claimed ahead that no handler started goes back as it was: no reset, no attempt.
_DIED_TOO_OFTEN: Final = "started_at IS NOT NULL AND resets >= max_resets"
SWEEP: Final = f"""
    UPDATE {{jobs}} SET
        state = CASE WHEN cancel_requested THEN 'canceled'
                     WHEN {_DIED_TOO_OFTEN} THEN 'failed' ELSE 'queued' END,
        finished_at = CASE WHEN cancel_requested OR {_DIED_TOO_OFTEN} THEN {{now}} END,
        last_error = CASE WHEN NOT cancel_requested AND {_DIED_TOO_OFTEN}
            THEN 'the worker died ' || (resets + 1)
                || CASE WHEN resets = 0 THEN ' time' ELSE ' times' END
                || ' while running it'
            ELSE last_error END,
        resets = resets + CASE WHEN started_at IS NULL THEN 0 ELSE 1 END,
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
# A lease that expired has no holder any more, whatever its row still says.
LEASES: Final = """
    SELECT name, CASE WHEN expires_at > {now} THEN holder END, token, expires_at
    FROM {leases} ORDER BY name
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
# The columns a `ScheduleRun` is read from, in the order the SQL store's row mapper takes them.
_RUN_FIELDS: Final = ("name", "tick", "state", "worker", "started_at", "finished_at", "error")
_RUN: Final = ", ".join(_RUN_FIELDS)
SCHEDULE_RUNS: Final = f"""
    SELECT {_RUN} FROM {{schedule_runs}} WHERE name = :name ORDER BY tick DESC LIMIT :limit
"""
# Every schedule's latest run, and how many runs are kept and failed: the runs of a schedule
# are at most 1,000 (KEEP_LATEST_RUNS), read from its primary key.
SCHEDULES: Final = f"""
    SELECT {", ".join(f"latest.{name}" for name in _RUN_FIELDS)}, kept.runs, kept.failures
    FROM (SELECT name, max(tick) AS tick, count(*) AS runs,
                 sum(CASE WHEN state = 'failed' THEN 1 ELSE 0 END) AS failures
          FROM {{schedule_runs}} GROUP BY name) AS kept
    JOIN {{schedule_runs}} AS latest ON latest.name = kept.name AND latest.tick = kept.tick
    ORDER BY latest.name
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
