"""The model of the durable tier: jobs and their states, the values that cross the storage
seam, the limits of what a store holds, and who a worker is.

This is the bottom floor of `routines.durable` (River's `rivertype`): it imports nothing else of
the tier, and everything else of the tier may import it. A job's life is one table,
`TRANSITIONS`: the state sets (`READY_STATES`, `LIVE_STATES`, `FINAL_STATES`) are read from it,
and the SQL store writes them into its statements from here, so the SQL and the Python never
disagree about which states are which.
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
import os
import re
import reprlib
import secrets
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from json.encoder import encode_basestring_ascii
from typing import Any, Final, Literal, NamedTuple, TypeAlias, get_args

from typing_extensions import final

from .._validate import check_int

__all__ = [
    "FINAL_STATES",
    "ID_MAX",
    "INT32_MAX",
    "JOB_STATES",
    "LIVE_STATES",
    "MAX_ERROR_TEXT",
    "MAX_NESTING",
    "MAX_TEXT",
    "READY_STATES",
    "RETRYABLE_STATES",
    "TRANSITIONS",
    "Backlog",
    "Claim",
    "Claimer",
    "Heartbeat",
    "Job",
    "JobState",
    "LeaseInfo",
    "MigrationError",
    "MigrationStatus",
    "NewJob",
    "Outcome",
    "OutcomeKind",
    "QueueInfo",
    "QueueLimits",
    "Reset",
    "RunState",
    "ScheduleInfo",
    "ScheduleRun",
    "TickClaim",
    "check_int32",
    "check_job_id",
    "check_text",
    "has_mark",
    "holder_id",
    "mark_key",
    "marked_holder_id",
    "new_claim_id",
    "storable",
    "task_of",
    "to_json",
]

JobState: TypeAlias = Literal["queued", "processing", "completed", "errored", "failed", "canceled"]
JOB_STATES: Final[tuple[JobState, ...]] = get_args(JobState)

# Which state a job may go to from which: the one place that says so. Every statement of the
# SQL store that changes a job's state starts from states this table allows.
TRANSITIONS: Final[Mapping[JobState, frozenset[JobState]]] = {
    # claimed by a worker; canceled before it ran
    "queued": frozenset({"processing", "canceled"}),
    # an attempt's outcome; or back to queued: handed back on a stop, or put back by the stalled
    # sweep after its worker died
    "processing": frozenset({"completed", "errored", "failed", "canceled", "queued"}),
    # claimed again once due; canceled while it waited for its retry
    "errored": frozenset({"processing", "canceled"}),
    # `retry()` of a failed or canceled job
    "failed": frozenset({"queued"}),
    "canceled": frozenset({"queued"}),
    # only `purge()` ends a completed job
    "completed": frozenset(),
}

# A worker claims jobs in these states once they are due.
READY_STATES: Final[tuple[JobState, ...]] = tuple(
    state for state in JOB_STATES if "processing" in TRANSITIONS[state]
)
# A job that has not ended: its key is unique among these.
LIVE_STATES: Final[tuple[JobState, ...]] = (*READY_STATES, "processing")
# A job that ended: only `retry()` (of those that may go back to queued) or `purge()` moves it.
FINAL_STATES: Final[tuple[JobState, ...]] = tuple(
    state for state in JOB_STATES if state not in LIVE_STATES
)
RETRYABLE_STATES: Final[tuple[JobState, ...]] = tuple(
    state for state in FINAL_STATES if "queued" in TRANSITIONS[state]
)

OutcomeKind: TypeAlias = Literal[
    "completed", "errored", "failed", "canceled", "handed_back", "snoozed"
]
# How a claim of a schedule's tick went: this process runs it; a run of the schedule was still
# going, so the tick is recorded skipped; or another process claimed (or skipped) it first.
TickClaim: TypeAlias = Literal["claimed", "skipped", "taken"]
RunState: TypeAlias = Literal["running", "completed", "failed", "skipped"]

MAX_NESTING: Final = 200  # the deepest a payload or result may nest lists and dicts
MAX_TEXT: Final = 200  # the longest queue name, key, lease or schedule name, in characters
MAX_ERROR_TEXT: Final = 8192  # the longest error a job or a run stores, in characters
INT32_MAX: Final = 2**31 - 1  # priorities and attempts are 32-bit integers in PostgreSQL
ID_MAX: Final = 2**63 - 1  # job ids are 64-bit integers in both databases


@final
@dataclass(frozen=True)
class Job:
    """A job as the store holds it. Times are aware UTC datetimes from the database's clock.

    `attempts` counts the times a handler started the job (a snoozed attempt is given back),
    `resets` the times its worker died under it, `snoozes` the times a handler snoozed it.
    `last_error` is the error of the latest attempt that ended in one; `result` the JSON value
    a handler returned (None until then). `payload` and `result` come back as JSON
    gives them: tuples as lists, dict keys as strings.
    """

    id: int
    queue: str
    payload: Any
    state: JobState
    priority: int
    attempts: int
    max_attempts: int
    resets: int
    key: str | None
    enqueued_at: datetime
    run_after: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    worker: str | None
    cancel_requested: bool
    last_error: str | None
    result: Any
    group: str | None = None  # the jobs of one group share the queue's `group_running`
    snoozes: int = 0  # the times a handler raised `durable.Snooze` (they spent no attempt)

    @property
    def task(self) -> str | None:
        """The name of the task this job calls: the `"task"` of a payload of exactly the shape
        `{"task": name, "args": [...], "kwargs": {...}}`, whoever enqueued it; else None."""
        return task_of(self.payload)


@final
class NewJob(NamedTuple):
    """A job to store: its payload already JSON text, due at `run_at` or `delay` seconds after
    the database's now. A tuple: `enqueue_many` builds one per payload, and a tuple is built
    in half the time of a frozen dataclass."""

    payload: str
    priority: int
    max_attempts: int
    key: str | None
    run_at: datetime | None
    delay: float
    task: str | None = None  # `task_of(payload)`, stored so that listings by task use an index
    group: str | None = None


@final
@dataclass(frozen=True)
class Claim:
    """A job a worker claimed, as it was right after the claim, and the token of this attempt."""

    job: Job
    token: str

    @property
    def id(self) -> int:
        return self.job.id


@final
@dataclass(frozen=True)
class Claimer:
    """Who claims jobs, and the rules its claims carry on the row: the worker's id, after how
    many seconds without a heartbeat its job counts as stalled, and how many such deaths a job
    survives (the stalled sweep reads both from the row, not from the sweeping worker)."""

    worker_id: str
    stalled_after: float
    max_resets: int


@final
@dataclass(frozen=True)
class Heartbeat:
    """What one heartbeat found: the claims that are gone (their token no longer holds the job)
    and the claimed jobs whose cancel was asked. Both hold job ids."""

    gone: frozenset[int]
    cancel_requested: frozenset[int]

    @classmethod
    def of(cls, claims: Sequence[Claim], alive: Iterable[tuple[int, object]]) -> Heartbeat:
        """From the (job id, cancel_requested) of each claimed job whose token held."""
        alive = list(alive)
        return cls(
            gone=frozenset(claim.id for claim in claims) - {job_id for job_id, _ in alive},
            cancel_requested=frozenset(job_id for job_id, asked in alive if asked),
        )


@final
@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: build one with the class methods."""

    kind: OutcomeKind
    result: str | None = None  # completed: the handler's return value, as JSON text
    error: str | None = None  # errored, failed: the job's new `last_error`
    delay: float = 0.0  # errored, snoozed: seconds from now until the job is due again

    @classmethod
    def completed(cls, result: str) -> Outcome:
        """`completed`, with `result` (JSON text)."""
        return cls("completed", result=result)

    @classmethod
    def errored(cls, error: str, delay: float) -> Outcome:
        """`errored`, due `delay` seconds from now, with `last_error`; `failed` instead once
        the job has had `max_attempts` attempts."""
        return cls("errored", error=storable(error), delay=delay)

    @classmethod
    def failed(cls, error: str) -> Outcome:
        """`failed`, with `last_error`: not retried."""
        return cls("failed", error=storable(error))

    @classmethod
    def canceled(cls) -> Outcome:
        return cls("canceled")

    @classmethod
    def handed_back(cls) -> Outcome:
        """Back to `queued` with the attempt given back (`attempts` - 1): a stop, not a
        failure."""
        return cls("handed_back")

    @classmethod
    def snoozed(cls, delay: float) -> Outcome:
        """Back to `queued`, due `delay` seconds from now, with the attempt given back and
        `snoozes` + 1: never `failed`."""
        return cls("snoozed", delay=delay)


@final
@dataclass(frozen=True)
class ScheduleRun:
    """One tick of a fleet-wide schedule, as the store holds it: which process ran it, when,
    and how it ended. Times are aware UTC datetimes from the database's clock."""

    name: str
    tick: datetime
    state: RunState
    worker: str
    started_at: datetime
    finished_at: datetime | None
    error: str | None


@final
@dataclass(frozen=True)
class MigrationError:
    """An exception a batch of an out-of-band migration raised: when, and its text."""

    at: datetime
    error: str


@final
@dataclass(frozen=True)
class MigrationStatus:
    """An out-of-band migration as the store holds it: its progress (0.0 to 1.0) as last
    computed from its data, its direction, when either last changed, and its latest errors
    (the last 100, newest first)."""

    id: str
    progress: float
    reverse: bool
    updated_at: datetime
    errors: tuple[MigrationError, ...]

    @property
    def complete(self) -> bool:
        """Done in its direction: 1.0 forward, 0.0 in reverse."""
        return self.progress <= 0.0 if self.reverse else self.progress >= 1.0


@final
@dataclass(frozen=True)
class Reset:
    """A processing job the stalled sweep found without a heartbeat, or whose worker's liveness
    mark was free: its attempt, and the state the sweep left it in (`queued` again, `failed`
    past `max_resets`, or `canceled` as asked)."""

    id: int
    queue: str
    task: str | None
    attempt: int
    resets: int  # its worker's deaths, this one included
    state: JobState
    worker_gone: bool = False  # its worker's mark was free (its process is gone), not stale


def new_claim_id() -> str:
    """The random part of the tokens of one claim's attempts, which the claim's jobs can be
    found by when its reply is lost."""
    return secrets.token_hex(16)


@final
@dataclass(frozen=True)
class QueueLimits:
    """A queue's flow control, fleet-wide (None: no such limit): how many of its jobs may be
    processing at once, how many of one `group` at once, and how many may start in any window
    of `rate[1]` seconds (`rate[0]`)."""

    max_running: int | None = None
    group_running: int | None = None
    rate: tuple[int, float] | None = None

    @property
    def limited(self) -> bool:
        """Whether any limit is set."""
        return self != _NO_LIMITS


_NO_LIMITS: Final = QueueLimits()


@final
@dataclass(frozen=True)
class Backlog:
    """What an idle worker reads about its queue, once per poll: the ready jobs (queued or
    errored, due now), whether the queue is paused (then no worker claims them), whether it has
    limits (then claims take the limited path), and, when its rate allows no start now, the
    seconds until it allows one."""

    ready: int
    paused: bool
    limited: bool = False
    opens_in: float | None = None


@final
@dataclass(frozen=True)
class QueueInfo:
    """A queue as the store holds it: its jobs in each state (every state, zeros included),
    whether it is paused, how long its longest-waiting ready job has been due (seconds on
    the database's clock; None when no job is ready), and its limits."""

    name: str
    counts: dict[JobState, int]
    paused: bool
    oldest_ready_age: float | None
    limits: QueueLimits = _NO_LIMITS


@final
@dataclass(frozen=True)
class ScheduleInfo:
    """A fleet-wide schedule as the store holds it: its latest run, how many runs are kept
    (the last 1,000), and how many of those failed."""

    name: str
    last_run: ScheduleRun | None
    runs: int
    failures: int


@final
@dataclass(frozen=True)
class LeaseInfo:
    """A lease as the store holds it: its holder (None when it was released or has expired,
    by the database's clock), its latest fencing token, and when it expires (None once
    released)."""

    name: str
    holder: str | None
    token: int
    expires_at: datetime | None


# -- who works ---------------------------------------------------------------------------------


def holder_id() -> str:
    """Who claims a job, holds a lease or runs a tick: host, pid and a random part (a restarted
    container that reuses its hostname is someone else)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


# A worker id that ends so claimed its jobs while its process held a liveness mark: a sweeper
# may test that mark. Other ids (a worker with `liveness=False`, one of an older version, one
# whose mark was not held at that moment) are judged by their heartbeats alone: a mark never
# taken would look free.
_MARKED: Final = "+live"


def marked_holder_id() -> str:
    """The worker id of a process's liveness mark: `holder_id()` and `+live`."""
    return holder_id() + _MARKED


def has_mark(worker: str) -> bool:
    """Whether jobs claimed as `worker` were claimed under a liveness mark."""
    return worker.endswith(_MARKED)


def mark_key(worker: str) -> int:
    """The 64-bit key of the liveness mark of `worker` (signed, as PostgreSQL's advisory locks
    take it; SQLite names the mark's file by it). Two live marks share a key with a chance of
    about n**2 / 2**65 among n marks; a holder that finds its key taken picks another id."""
    digest = hashlib.blake2b(f"routines.durable mark {worker}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


# -- what a store holds --------------------------------------------------------------------------


def check_text(arg: str, value: object, *, longest: int = MAX_TEXT) -> str:
    """A name or a key: a non-empty str of at most `longest` characters that both databases
    store as it is."""
    if not isinstance(value, str):
        msg = f"{arg} must be a str, got {value!r}"
        raise TypeError(msg)
    if not value:
        msg = f"{arg} must not be empty, got {value!r}"
        raise ValueError(msg)
    if len(value) > longest:
        shown = reprlib.repr(value)
        msg = f"{arg} must be at most {longest} characters, got {len(value)}: {shown}"
        raise ValueError(msg)
    # Neither database stores a NUL character or a lone surrogate in a text column.
    if "\x00" in value or not _encodable(value):
        msg = f"{arg} must be text without NUL characters or lone surrogates, got {value!r}"
        raise ValueError(msg)
    return value


def check_int32(arg: str, value: object, *, minimum: int) -> int:
    """An int from `minimum` to the largest 32-bit integer (the columns' type in PostgreSQL)."""
    number = check_int(arg, value, minimum=minimum)
    if number > INT32_MAX:
        msg = f"{arg} must be <= {INT32_MAX}, got {value!r}"
        raise ValueError(msg)
    return number


def check_job_id(value: object, arg: str = "job_id") -> int:
    """A job id: a positive 64-bit integer."""
    job_id = check_int(arg, value, minimum=1)
    if job_id > ID_MAX:
        msg = f"{arg} must be <= {ID_MAX}, got {value!r}"
        raise ValueError(msg)
    return job_id


# One encoder for every payload: json.dumps builds one per call when given options.
_ENCODER: Final = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
# CPython's C encoder, which JSONEncoder.encode builds anew for every value through two Python
# calls: called directly, an enqueue_many of 10,000 small payloads encodes them in 3.8 ms, not
# 6.8. None where `_json` is missing; untyped in typeshed, hence getattr.
_C_ENCODER: Final[Any] = getattr(json.encoder, "c_make_encoder", None)


def _encode(value: object) -> str:
    """`_ENCODER.encode(value)`, through the C encoder where there is one, given what encode
    gives it: a new dict of the containers being encoded (circular references are a
    ValueError), `_ENCODER.default` (any other type is a TypeError), ASCII escapes and the
    encoder's own options."""
    if _C_ENCODER is None:  # pragma: no cover - CPython has it
        return _ENCODER.encode(value)
    encode = _C_ENCODER(
        {},
        _ENCODER.default,
        encode_basestring_ascii,  # ensure_ascii
        _ENCODER.indent,
        _ENCODER.key_separator,
        _ENCODER.item_separator,
        _ENCODER.sort_keys,
        _ENCODER.skipkeys,
        _ENCODER.allow_nan,
    )
    return "".join(encode(value, 0))


def to_json(value: object) -> str:
    """`value` as the JSON text a store keeps, or ValueError/TypeError saying why it can't be:
    not a JSON value (NaN included), or nested deeper than `MAX_NESTING`, which a worker could
    fail to decode deeper in its stack than it was encoded. Text outside ASCII is escaped, so
    NUL characters and lone surrogates come back as they went in."""
    text = _encode(value)
    if text.count("[") + text.count("{") > MAX_NESTING and _nesting(text) > MAX_NESTING:
        msg = f"it nests lists and dicts deeper than {MAX_NESTING} levels"
        raise ValueError(msg)
    return text


def _nesting(text: str) -> int:
    """How deep the lists and dicts of the JSON `text` nest (brackets in strings don't count)."""
    deepest = depth = 0
    for bracket in re.findall(r"[\[\]{}]", _JSON_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


_JSON_STRING: Final = re.compile(r'"(?:[^"\\]|\\.)*"')


def task_of(payload: object) -> str | None:
    """The task a payload calls: the `"task"` of a payload of exactly the shape
    `{"task": name, "args": [...], "kwargs": {...}}` whose name is storable text of at most
    `MAX_TEXT` characters (what a task's name may be); None for any other payload. The same
    whether it is given the payload as enqueued or as JSON gives it back."""
    if not isinstance(payload, dict) or len(payload) != len(_TASK_CALL):
        return None
    if payload.keys() != _TASK_CALL:
        return None
    name, args, kwargs = payload["task"], payload["args"], payload["kwargs"]
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
        return None
    if not isinstance(name, str) or not 0 < len(name) <= MAX_TEXT:
        return None
    return name if "\x00" not in name and _encodable(name) else None


_TASK_CALL: Final = frozenset({"task", "args", "kwargs"})


def storable(text: str) -> str:
    """`text` as both databases store it in a text column: NUL characters and lone surrogates
    (which an error message may hold, from binary input) written as backslash escapes."""
    if text.isascii() and "\x00" not in text:
        return text
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
