"""`QueueWorker` against the faults an adversarial review found (issue 25), on both backends:
a payload that can't be decoded, a result whose encoding raises, a claim whose reply was lost,
and the WARNING each attempt that did not complete logs."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import pytest

from routines import durable
from routines.durable._model import Claim, Claimer

from .conftest import Target
from .support import backend_of
from .test_worker import FAST, Handler, Running, final, run, store
from helpers import WAIT, LogWatcher

__all__ = ["run", "store"]  # the fixtures this module takes from test_worker.py


def unavailable(target: Target) -> Exception:
    """What the driver raises when a connection breaks after the server got the statement."""
    if target.kind == "sqlite":
        return sqlite3.OperationalError("database is locked")
    import psycopg

    return psycopg.OperationalError("server closed the connection unexpectedly")


def test_a_job_whose_payload_cant_be_decoded_fails_and_the_worker_goes_on(
    store: durable.Store, queue: durable.Queue, run: Callable[..., Running]
) -> None:
    # Written past enqueue's bound (as an older version could): deeper than the worker's stack.
    deep = queue.enqueue(1)
    backend_of(store).driver.run(
        lambda session: session.count(
            "UPDATE {jobs} SET payload = :payload{as_json} WHERE id = :id",
            {"payload": "[" * 2500 + "]" * 2500, "id": deep},
        ),
        transaction=False,
    )
    plain = queue.enqueue(2)
    running = run(durable.QueueWorker(queue, Handler(), **FAST))
    failed = final(queue, deep)
    assert failed.state == "failed"
    assert "can't be decoded" in (failed.last_error or "")
    assert final(queue, plain).state == "completed"
    assert running.finish() is None  # the worker never died


class Mutating(dict[str, Any]):
    """A dict that another thread changes while it is encoded."""

    def items(self) -> Any:
        msg = "dictionary changed size during iteration"
        raise RuntimeError(msg)


def test_a_result_whose_encoding_raises_fails_its_job_not_the_worker(
    queue: durable.Queue, run: Callable[..., Running]
) -> None:
    results = iter([Mutating(a=1), "fine"])
    running = run(durable.QueueWorker(queue, Handler(lambda job: next(results)), **FAST))
    broken, fine = queue.enqueue(1), queue.enqueue(2)
    job = final(queue, broken)
    assert job.state == "failed"
    assert "result is not JSON" in (job.last_error or "")
    assert final(queue, fine).state == "completed"
    assert running.finish() is None


def lose_a_reply(
    target: Target, store: durable.Store, monkeypatch: pytest.MonkeyPatch, *, when: str
) -> list[int]:
    """Make the first of the worker's exchanges that `when` ("claims", or "writes and claims")
    commit and then lose its reply; the ids of the jobs that exchange claimed."""
    backend = backend_of(store)
    exchange = backend.exchange
    lost: list[int] = []

    def then_lose_the_reply(
        queue: str, claimer: Claimer, **given: Any
    ) -> tuple[list[bool], list[Claim], bool]:
        written, claims, paused = exchange(queue, claimer, **given)
        wanted = bool(claims) and (when == "claims" or bool(given.get("outcomes")))
        if wanted and not lost:
            lost.extend(claim.id for claim in claims)
            raise unavailable(target)
        return written, claims, paused

    monkeypatch.setattr(backend, "exchange", then_lose_the_reply)
    return lost


def test_jobs_of_a_claim_whose_reply_was_lost_are_run_with_no_attempt_or_reset_spent(
    target: Target,
    store: durable.Store,
    queue: durable.Queue,
    run: Callable[..., Running],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The claim commits and its reply never arrives: the worker does not know it holds the job.
    # With max_resets=0 the stalled sweep used to fail it ("the worker died 1 time") unrun.
    lost = lose_a_reply(target, store, monkeypatch, when="claims")
    job_id = queue.enqueue("once")
    handler = Handler()
    run(durable.QueueWorker(queue, handler, **{**FAST, "max_resets": 0}))
    job = final(queue, job_id)
    assert lost == [job_id]
    assert (job.state, job.attempts, job.resets) == ("completed", 1, 0)
    assert [seen.id for seen in handler.jobs] == [job_id]


def test_outcomes_and_a_claim_whose_reply_was_lost_are_each_written_once(
    target: Target,
    store: durable.Store,
    queue: durable.Queue,
    run: Callable[..., Running],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The outcome is written again and finds its own earlier write; the job claimed with it is
    # handed back and runs once.
    release = threading.Event()
    first = queue.enqueue(1)
    handler = Handler(lambda job: release.wait(WAIT) if job.payload == 1 else "done")
    running = run(durable.QueueWorker(queue, handler, **{**FAST, "max_resets": 0, "prefetch": 0}))
    handler.wait_started()
    lost = lose_a_reply(target, store, monkeypatch, when="writes and claims")
    second = queue.enqueue(2)  # no handler is free: claimed with the first one's outcome
    release.set()
    assert (final(queue, first).state, final(queue, first).attempts) == ("completed", 1)
    job = final(queue, second)
    assert lost == [second]
    assert (job.state, job.attempts, job.resets) == ("completed", 1, 0)
    assert sorted(seen.id for seen in handler.jobs) == [first, second]
    assert running.finish() is None


def attempt_records(logs: LogWatcher, job_id: int) -> list[logging.LogRecord]:
    return [
        record
        for record in logs.records
        if getattr(record, "job_id", None) == job_id and getattr(record, "attempt", None)
    ]


def test_each_attempt_that_did_not_complete_is_logged_once_at_warning(
    queue: durable.Queue, run: Callable[..., Running]
) -> None:
    def handle(job: durable.Job) -> object:
        msg = "boom\nand a second line"
        raise ValueError(msg)

    with LogWatcher() as logs:
        running = run(durable.QueueWorker(queue, Handler(handle), **FAST, retry_backoff=0))
        call = {"task": "mail.send", "args": ["ada"], "kwargs": {}}
        job_id = queue.enqueue(call, max_attempts=2)
        assert final(queue, job_id).state == "failed"
        logs.wait_for("attempt 2 of 2")
        running.finish()
    records = attempt_records(logs, job_id)
    assert [(r.levelno, r.event, r.attempt) for r in records] == [  # type: ignore[attr-defined]
        (logging.WARNING, "attempt_errored", 1),
        (logging.WARNING, "attempt_failed", 2),
    ]
    for record in records:
        assert record.name == "routines.durable.worker"
        fields = {key: getattr(record, key) for key in ("queue", "task", "error")}
        assert fields == {"queue": "emails", "task": "mail.send", "error": "ValueError: boom"}


def test_a_reset_by_the_sweep_is_logged_once_with_its_fields(
    store: durable.Store, queue: durable.Queue, run: Callable[..., Running]
) -> None:
    job_id = queue.enqueue("plain")
    [dead] = backend_of(store).claim("emails", Claimer("dead:1:x", 0.001, 3), 1)
    with LogWatcher() as logs:
        running = run(durable.QueueWorker(queue, Handler(), **FAST))
        assert final(queue, job_id).state == "completed"
        running.finish()
    [record] = [r for r in attempt_records(logs, job_id) if r.event == "stalled_reset"]  # type: ignore[attr-defined]
    assert (record.levelno, record.queue, record.task, record.attempt) == (  # type: ignore[attr-defined]
        logging.WARNING,
        "emails",
        None,
        dead.job.attempts,
    )
