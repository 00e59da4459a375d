"""Bad input to the durable tier: every public function and method, every argument, gets a
`TypeError` or `ValueError` at the call, naming the argument and showing the value, and nothing
is written (spec/DURABLE.md, section 7; spec/API.md, section 9).

Arguments are grouped by kind (a duration, a name or key, a count, a job id, a payload), and
every argument of a kind is tried with every bad value of that kind.
"""

from __future__ import annotations

import functools
import math
import reprlib
import threading
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from routines import durable

from helpers import ASYNC_HANDLERS

HUGE_INT = 10**400  # not representable as a float
NAN, INF = math.nan, math.inf


class Bad(NamedTuple):
    value: object
    error: type[Exception]


DURATION = [
    Bad(-1, ValueError),
    Bad(NAN, ValueError),
    Bad(INF, ValueError),
    Bad(HUGE_INT, ValueError),
    Bad(threading.TIMEOUT_MAX, ValueError),
    Bad(timedelta(seconds=-1), ValueError),
    Bad(timedelta.max, ValueError),
    Bad(True, TypeError),
    Bad("1", TypeError),
    Bad([1], TypeError),
]
REQUIRED_DURATION = [*DURATION, Bad(None, TypeError)]
TEXT = [  # queue names and keys
    Bad("", ValueError),
    Bad("x" * 201, ValueError),
    Bad("nul\x00inside", ValueError),
    Bad("lone \ud800 surrogate", ValueError),
    Bad(1, TypeError),
    Bad(b"emails", TypeError),
    Bad(["emails"], TypeError),
]
REQUIRED_TEXT = [*TEXT, Bad(None, TypeError)]
JOB_ID = [
    Bad(0, ValueError),
    Bad(-1, ValueError),
    Bad(2**63, ValueError),
    Bad(True, TypeError),
    Bad(1.0, TypeError),
    Bad("1", TypeError),
    Bad(None, TypeError),
]
PRIORITY = [
    Bad(2**31, ValueError),
    Bad(-(2**31) - 1, ValueError),
    Bad(True, TypeError),
    Bad(1.5, TypeError),
    Bad("1", TypeError),
    Bad(None, TypeError),
]
MAX_ATTEMPTS = [
    Bad(0, ValueError),
    Bad(-1, ValueError),
    Bad(2**31, ValueError),
    Bad(False, TypeError),
    Bad(3.0, TypeError),
    Bad(None, TypeError),
]
RUN_AT = [
    Bad(datetime(2030, 1, 1), ValueError),  # naive: which zone?
    Bad(date(2030, 1, 1), TypeError),
    Bad("2030-01-01T00:00:00Z", TypeError),
    Bad(1893456000, TypeError),
    Bad(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))), ValueError),  # year 0 in UTC
]
circular: list[object] = []
circular.append(circular)
PAYLOAD = [
    Bad(object(), TypeError),
    Bad({"when": datetime.now(timezone.utc)}, TypeError),
    Bad({"tags": {"a", "b"}}, TypeError),
    Bad(NAN, TypeError),
    Bad([1.0, INF], TypeError),
    Bad({(1, 2): "tuple key"}, TypeError),
    Bad(circular, TypeError),
    Bad(b"bytes", TypeError),
    # Deeper than a worker may be able to decode: it killed the worker that claimed it.
    Bad(functools.reduce(lambda inner, _: [inner], range(250), 1), TypeError),
    Bad({"a": functools.reduce(lambda inner, _: {"k": inner}, range(201), 1)}, TypeError),
]
PAYLOADS = [Bad("abc", TypeError), Bad(b"abc", TypeError), Bad(5, TypeError), Bad(None, TypeError)]
PURGE_STATES = [
    Bad("completed", TypeError),
    Bad(None, TypeError),
    Bad(5, TypeError),
    Bad([1], TypeError),
    Bad((), ValueError),
    Bad(("queued",), ValueError),
    Bad(("processing",), ValueError),
    Bad(("errored",), ValueError),
    Bad(("completed", "done"), ValueError),
]
LIST_STATES = [  # jobs(state=...): one state or several
    Bad("done", ValueError),
    Bad(("failed", "done"), ValueError),
    Bad((), ValueError),
    Bad(5, TypeError),
    Bad([1], TypeError),
    Bad(b"failed", TypeError),
    Bad({"failed": 1}, TypeError),
]
RETRY_STATES = [
    *LIST_STATES,
    Bad("queued", ValueError),
    Bad(("failed", "completed"), ValueError),
    Bad(None, TypeError),
]
CANCEL_STATES = [
    *LIST_STATES,
    Bad("completed", ValueError),
    Bad(("queued", "canceled"), ValueError),
    Bad(None, TypeError),
]
LIMIT = [Bad(0, ValueError), Bad(1001, ValueError), Bad(True, TypeError), Bad(5.0, TypeError)]
BEFORE = [b for b in JOB_ID if b.value is not None]
SCHEMA = [
    Bad("", ValueError),
    Bad("Routines", ValueError),
    Bad("1routines", ValueError),
    Bad("my-app", ValueError),
    Bad("a b", ValueError),
    Bad('x"; DROP TABLE jobs; --', ValueError),
    Bad("pg_routines", ValueError),
    Bad("s" * 51, ValueError),
    Bad(None, TypeError),
    Bad(1, TypeError),
]
TIMEOUT = [
    *REQUIRED_DURATION,
    Bad(0, ValueError),
    Bad(timedelta(0), ValueError),
    Bad(86401, ValueError),
]
URL = [
    Bad(None, TypeError),
    Bad(b"sqlite:///x.db", TypeError),
    Bad("", ValueError),
    Bad("routines.db", ValueError),
    Bad("mysql://db/app", ValueError),
    Bad("sqlite://host/x.db", ValueError),
    Bad("sqlite:///", ValueError),
    Bad("sqlite:///:memory:", ValueError),
    Bad("sqlite:///x.db?mode=ro", ValueError),
    Bad("postgresql://[::1/app", ValueError),
    # A NUL cut the URL short in C: this opened database "x".
    Bad("sqlite:///x.db\x00.other", ValueError),
    Bad("postgresql://127.0.0.1/x\x00ignored", ValueError),
]
CONNECTION = [  # not a connection at all: the wrong kinds, closed and foreign ones are in
    # test_app_transactions.py
    Bad("sqlite:///x.db", TypeError),
    Bad(1, TypeError),
    Bad(b"connection", TypeError),
]


class Case(NamedTuple):
    name: str
    arg: str
    call: Callable[[durable.Store, Any], object]
    bad: list[Bad]


def queue_method(method: str, arg: str, **fixed: object) -> Callable[[durable.Store, Any], object]:
    def call(store: durable.Store, value: object) -> object:
        return getattr(store.queue("emails"), method)(**{arg: value, **fixed})

    return call


def option_cases(method: str, first: str, first_value: object) -> list[Case]:
    """Each enqueue option of `enqueue` or `enqueue_many`."""

    def with_option(arg: str) -> Callable[[durable.Store, Any], object]:
        def call(store: durable.Store, value: object) -> object:
            return getattr(store.queue("emails"), method)(first_value, **{arg: value})

        return call

    return [
        Case(f"{method}-delay", "delay", with_option("delay"), DURATION),
        Case(f"{method}-run_at", "run_at", with_option("run_at"), RUN_AT),
        Case(f"{method}-priority", "priority", with_option("priority"), PRIORITY),
        Case(f"{method}-max_attempts", "max_attempts", with_option("max_attempts"), MAX_ATTEMPTS),
        Case(f"{method}-key", "key", with_option("key"), TEXT),
    ]


CASES = [
    Case("open_store-url", "url", lambda _store, value: durable.open_store(value), URL),
    Case(
        "open_store-timeout",
        "timeout",
        lambda store, value: durable.open_store(store.url, timeout=value),
        TIMEOUT,
    ),
    Case(
        "open_store-schema",
        "schema",
        lambda store, value: durable.open_store(store.url, schema=value),
        SCHEMA,
    ),
    Case("queue-name", "name", lambda store, value: store.queue(value), REQUIRED_TEXT),
    Case(
        "enqueue-payload",
        "payload",
        lambda store, value: store.queue("emails").enqueue(value),
        PAYLOAD,
    ),
    *option_cases("enqueue", "payload", {"ok": 1}),
    Case(
        "enqueue_many-payloads",
        "payloads",
        lambda store, value: store.queue("emails").enqueue_many(value),
        PAYLOADS,
    ),
    Case(
        "enqueue_many-payload",
        "payload",
        lambda store, value: store.queue("emails").enqueue_many([1, value, 3]),
        PAYLOAD,
    ),
    *option_cases("enqueue_many", "payloads", [1, 2]),
    Case(
        "enqueue-connection",
        "connection",
        lambda store, value: store.queue("emails").enqueue(1, connection=value),
        CONNECTION,
    ),
    Case(
        "enqueue_many-connection",
        "connection",
        lambda store, value: store.queue("emails").enqueue_many([1, 2], connection=value),
        CONNECTION,
    ),
    Case("get-job_id", "job_id", queue_method("get", "job_id"), JOB_ID),
    Case("store.job-job_id", "job_id", lambda store, value: store.job(value), JOB_ID),
    Case("cancel-job_id", "job_id", queue_method("cancel", "job_id"), JOB_ID),
    Case("retry-job_id", "job_id", queue_method("retry", "job_id"), JOB_ID),
    Case(
        "purge-older_than",
        "older_than",
        queue_method("purge", "older_than"),
        REQUIRED_DURATION,
    ),
    Case("purge-states", "states", queue_method("purge", "states", older_than=0), PURGE_STATES),
    Case("jobs-state", "state", queue_method("jobs", "state"), LIST_STATES),
    Case("jobs-task", "task", queue_method("jobs", "task"), TEXT),
    Case("jobs-limit", "limit", queue_method("jobs", "limit"), [*LIMIT, Bad(None, TypeError)]),
    Case("jobs-before", "before", queue_method("jobs", "before"), BEFORE),
    Case("retry_all-state", "state", queue_method("retry_all", "state"), RETRY_STATES),
    Case("cancel_all-state", "state", queue_method("cancel_all", "state"), CANCEL_STATES),
    Case("run_now-job_id", "job_id", queue_method("run_now", "job_id"), JOB_ID),
    Case(
        "QueueWorker-max_resets",
        "max_resets",
        lambda store, value: durable.QueueWorker(store.queue("emails"), print, max_resets=value),
        [Bad(-1, ValueError), Bad(2**31, ValueError), Bad(True, TypeError), Bad(1.0, TypeError)],
    ),
    Case("Retry-after", "after", lambda _store, value: durable.Retry(value), DURATION),
    Case(
        "Fail-message",
        "message",
        lambda _store, value: durable.Fail(value),
        [Bad(None, TypeError), Bad(1, TypeError), Bad(ValueError("x"), TypeError)],
    ),
]

PARAMS = [
    pytest.param(case, bad, id=f"{case.name}-{reprlib.repr(bad.value)}")
    for case in CASES
    for bad in case.bad
]


def shows(message: str, value: object) -> bool:
    return repr(value) in message or reprlib.repr(value) in message


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path: Path = tmp_path_factory.mktemp("bad-input") / "store.db"
    with durable.open_store(f"sqlite:///{path}") as opened:
        yield opened


@pytest.mark.parametrize(("case", "bad"), PARAMS)
def test_bad_input_is_refused_at_the_call_naming_the_argument_and_value(
    store: durable.Store, case: Case, bad: Bad
) -> None:
    with pytest.raises(bad.error) as caught:
        case.call(store, bad.value)
    message = str(caught.value)
    assert case.arg in message
    assert shows(message, bad.value), message
    assert store.queue("emails").counts() == dict.fromkeys(
        ("queued", "processing", "completed", "errored", "failed", "canceled"), 0
    )


def test_delay_and_run_at_together_are_refused(store: durable.Store) -> None:
    run_at = datetime(2030, 1, 1, tzinfo=timezone.utc)
    for call in (
        lambda: store.queue("emails").enqueue(1, delay=5, run_at=run_at),
        lambda: store.queue("emails").enqueue_many([1], delay=0, run_at=run_at),
    ):
        with pytest.raises(ValueError, match=r"delay or run_at, not both.*delay=.*run_at="):
            call()
    assert store.queue("emails").counts()["queued"] == 0


def test_an_unknown_scheme_names_the_supported_schemes() -> None:
    with pytest.raises(ValueError, match=r"sqlite:///, postgresql:// or postgres://"):
        durable.open_store("redis://localhost")


def test_valid_edge_values_are_accepted(store: durable.Store) -> None:
    queue = store.queue("q" * 200)
    ids = [
        queue.enqueue(1, priority=2**31 - 1, max_attempts=2**31 - 1, key="k" * 200),
        queue.enqueue(1, priority=-(2**31), delay=0),
        queue.enqueue(1, delay=timedelta(0)),
        queue.enqueue(1, run_at=datetime(1970, 1, 1, tzinfo=timezone.utc)),
    ]
    assert len(set(ids)) == 4
    assert queue.purge(older_than=0, states=("canceled",)) == 0
    deepest = functools.reduce(lambda inner, _: [inner], range(200), "[{a quoted bracket")
    job = queue.get(queue.enqueue(deepest))
    assert job is not None
    assert job.payload == deepest


# Issue 25.11, OPERATIONS.md section 8: an async def handler would never be awaited.
ASYNC_TAKERS = {
    "QueueWorker-handle": (
        lambda store, fn: durable.QueueWorker(store.queue("emails"), fn),
        "handle",
    ),
    "Scheduled-handler": (
        lambda store, fn: durable.Scheduled(fn, store, every=60, name="digest"),
        "handler",
    ),
}


@pytest.mark.parametrize("handler", ASYNC_HANDLERS.values(), ids=ASYNC_HANDLERS.keys())
@pytest.mark.parametrize(("take", "arg"), ASYNC_TAKERS.values(), ids=ASYNC_TAKERS.keys())
def test_an_async_handler_is_refused_naming_the_argument(
    store: durable.Store, take: Callable[[durable.Store, object], object], arg: str, handler: object
) -> None:
    with pytest.raises(TypeError, match=r"must be a plain function, not an async one") as raised:
        take(store, handler)
    assert str(raised.value).startswith(f"{arg} must be"), raised.value
    assert repr(handler) in str(raised.value)
