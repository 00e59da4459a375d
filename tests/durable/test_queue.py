"""Durable queues on both backends: enqueue, get, cancel, retry, counts and purge."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone

import pytest

from routines import durable
from routines.durable._model import Claim, Claimer, Outcome

from .conftest import Target
from .support import backend_of, finish_program, start_program

EVERY_STATE = ("queued", "processing", "completed", "errored", "failed", "canceled")
LONG_AGO = datetime(2000, 1, 1, tzinfo=timezone.utc)
FAR_AHEAD = datetime(2999, 1, 1, tzinfo=timezone.utc)


def claim_one(queue: durable.Queue) -> Claim:
    claims = backend_of(queue.store).claim(queue.name, Claimer("test-worker", 3600.0, 3), 1)
    assert len(claims) == 1
    return claims[0]


def test_enqueue_stores_a_queued_job_due_now(store: durable.Store, queue: durable.Queue) -> None:
    job_id = queue.enqueue({"to": "ada@example.com"})
    job = queue.get(job_id)
    assert job is not None
    assert (job.id, job.queue, job.payload, job.state) == (
        job_id,
        "emails",
        {"to": "ada@example.com"},
        "queued",
    )
    assert (job.priority, job.attempts, job.max_attempts, job.resets) == (0, 0, 5, 0)
    assert (job.key, job.worker, job.last_error, job.result) == (None, None, None, None)
    assert (job.started_at, job.finished_at, job.heartbeat_at) == (None, None, None)
    assert job.cancel_requested is False
    assert job.run_after == job.enqueued_at
    assert job.enqueued_at <= backend_of(store).now()


def test_job_times_are_aware_utc(queue: durable.Queue) -> None:
    job = queue.get(queue.enqueue(1))
    assert job is not None
    assert job.enqueued_at.tzinfo is timezone.utc
    assert job.run_after.tzinfo is timezone.utc


def test_ids_increase(queue: durable.Queue) -> None:
    first, second = queue.enqueue(1), queue.enqueue(2)
    assert isinstance(first, int)
    assert second > first


PAYLOADS = [
    None,
    True,
    0,
    -(10**30),
    1.5,
    "text",
    "émoji 🎉 and a NUL \x00 and a lone surrogate \ud800",
    [],
    {},
    {"b": 1, "a": [1, 2.5, None, {"nested": True}]},
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=repr)
def test_payloads_come_back_as_they_went_in(queue: durable.Queue, payload: object) -> None:
    job = queue.get(queue.enqueue(payload))
    assert job is not None
    assert job.payload == payload
    assert json.dumps(job.payload) == json.dumps(payload)  # dict keys keep their order


def test_a_batch_comes_back_as_it_went_in_in_order_each_job_with_its_task(
    queue: durable.Queue,
) -> None:
    """enqueue_many's batch path (on PostgreSQL, the payloads as one JSON array and the tasks
    beside them) keeps each payload's text, its order and its task."""
    calls = [
        {"task": "mail.send", "args": ["\x00"], "kwargs": {}},
        {"task": "mail.send", "args": [], "kwargs": {"to": "\ud800"}},
    ]
    payloads = [calls[0], *PAYLOADS, calls[1]]
    made = queue.enqueue_many(payloads)
    assert made == sorted(made)
    jobs = [queue.get(job_id) for job_id in made]
    assert [json.dumps(job.payload if job else "missing") for job in jobs] == [
        json.dumps(payload) for payload in payloads
    ]
    assert [job.id for job in queue.jobs(task="mail.send")] == [made[-1], made[0]]
    queue.enqueue_many([*PAYLOADS, {"task": "mail", "args": []}])  # no task at all
    assert [job.id for job in queue.jobs(task="mail.send")] == [made[-1], made[0]]
    assert queue.jobs(task="mail") == []


def test_payloads_come_back_as_json_gives_them(queue: durable.Queue) -> None:
    job = queue.get(queue.enqueue({"pair": (1, 2), 3: "three"}))
    assert job is not None
    assert job.payload == {"pair": [1, 2], "3": "three"}


def test_get_of_an_unknown_job_or_another_queues_job_is_none(store: durable.Store) -> None:
    job_id = store.queue("emails").enqueue(1)
    assert store.queue("emails").get(job_id + 1000) is None
    assert store.queue("sms").get(job_id) is None


def test_delay_is_counted_from_the_databases_now(queue: durable.Queue) -> None:
    job = queue.get(queue.enqueue(1, delay=timedelta(hours=1)))
    assert job is not None
    assert job.run_after - job.enqueued_at == timedelta(hours=1)
    job = queue.get(queue.enqueue(1, delay=2.5))
    assert job is not None
    assert job.run_after - job.enqueued_at == timedelta(seconds=2.5)


def test_run_at_is_kept_to_the_microsecond_and_given_back_in_utc(queue: durable.Queue) -> None:
    paris_summer = timezone(timedelta(hours=2))
    run_at = datetime(2031, 7, 14, 9, 30, 15, 123456, tzinfo=paris_summer)
    job = queue.get(queue.enqueue(1, run_at=run_at))
    assert job is not None
    assert job.run_after == run_at
    assert job.run_after.tzinfo is timezone.utc
    assert job.run_after.hour == 7


def test_options_are_stored(queue: durable.Queue) -> None:
    job = queue.get(queue.enqueue(1, priority=-7, max_attempts=1, key="weekly-report"))
    assert job is not None
    assert (job.priority, job.max_attempts, job.key) == (-7, 1, "weekly-report")


def test_a_live_key_returns_the_live_job_and_writes_nothing(queue: durable.Queue) -> None:
    first = queue.enqueue({"v": 1}, key="user-42")
    assert queue.enqueue({"v": 2}, key="user-42", priority=9) == first
    job = queue.get(first)
    assert job is not None
    assert (job.payload, job.priority) == ({"v": 1}, 0)
    assert queue.counts()["queued"] == 1


def test_a_key_is_live_while_its_job_is_processing_or_errored(queue: durable.Queue) -> None:
    job_id = queue.enqueue(1, key="k")
    claim = claim_one(queue)
    assert queue.enqueue(2, key="k") == job_id  # processing
    assert backend_of(queue.store).finish(claim, Outcome.errored("boom", 3600.0))
    assert queue.enqueue(3, key="k") == job_id  # errored
    assert queue.counts()["errored"] == 1


def test_a_key_is_free_again_once_its_job_is_final(queue: durable.Queue) -> None:
    first = queue.enqueue(1, key="k")
    assert queue.cancel(first)
    second = queue.enqueue(2, key="k")
    assert second != first
    assert queue.enqueue(3, key="k") == second


def test_keys_belong_to_their_queue(store: durable.Store) -> None:
    assert store.queue("emails").enqueue(1, key="k") != store.queue("sms").enqueue(1, key="k")


def test_enqueue_many_returns_the_ids_in_order(queue: durable.Queue) -> None:
    ids = queue.enqueue_many(({"n": n} for n in range(300)), priority=3)
    assert len(set(ids)) == 300
    jobs = [queue.get(job_id) for job_id in ids]
    assert [job.payload["n"] for job in jobs if job] == list(range(300))
    assert {job.priority for job in jobs if job} == {3}


def test_enqueue_many_of_nothing_is_nothing(queue: durable.Queue) -> None:
    assert queue.enqueue_many([]) == []
    assert queue.counts()["queued"] == 0


def test_enqueue_many_with_a_key_makes_one_job(queue: durable.Queue) -> None:
    ids = queue.enqueue_many([1, 2, 3], key="k")
    assert len(set(ids)) == 1
    assert queue.counts()["queued"] == 1


def test_enqueue_many_writes_nothing_when_one_payload_is_not_json(queue: durable.Queue) -> None:
    with pytest.raises(TypeError, match="payload"):
        queue.enqueue_many([1, 2, {"bad": object()}, 4])
    assert queue.counts()["queued"] == 0


def test_counts_name_every_state(queue: durable.Queue) -> None:
    assert queue.counts() == dict.fromkeys(EVERY_STATE, 0)
    assert tuple(queue.counts()) == EVERY_STATE


def test_counts_count_each_state_of_this_queue_only(store: durable.Store) -> None:
    queue = store.queue("emails")
    store.queue("sms").enqueue(1)
    queue.enqueue_many([1, 2, 3])
    claim_one(queue)
    queue.cancel(queue.enqueue(4))
    assert queue.counts() == {
        **dict.fromkeys(EVERY_STATE, 0),
        "queued": 2,
        "processing": 1,
        "canceled": 1,
    }


def test_the_oldest_ready_age_is_how_long_the_longest_waiting_due_job_has_been_due(
    store: durable.Store,
) -> None:
    queue = store.queue("emails")
    assert queue.oldest_ready_age() is None
    queue.enqueue(1, run_at=FAR_AHEAD)  # not due: not ready
    store.queue("sms").enqueue(2, run_at=LONG_AGO)  # another queue's
    assert queue.oldest_ready_age() is None
    queue.enqueue(3, run_at=datetime.now(timezone.utc) - timedelta(hours=1))
    queue.enqueue(4)
    age = queue.oldest_ready_age()
    assert age is not None
    assert 3600 - 0.01 <= age < 3600 + 60  # SQLite's clock reads milliseconds
    claim_one(queue)  # the hour-old job is claimed: it is no longer waiting
    age = queue.oldest_ready_age()
    assert age is not None
    assert 0 <= age < 60


def test_cancel_of_a_queued_job_cancels_it_at_once(queue: durable.Queue) -> None:
    job_id = queue.enqueue(1)
    assert queue.cancel(job_id) is True
    job = queue.get(job_id)
    assert job is not None
    assert (job.state, job.cancel_requested) == ("canceled", True)
    assert job.finished_at is not None


def test_cancel_of_an_errored_job_cancels_it_at_once(queue: durable.Queue) -> None:
    job_id = queue.enqueue(1)
    assert backend_of(queue.store).finish(claim_one(queue), Outcome.errored("boom", 60.0))
    assert queue.cancel(job_id) is True
    job = queue.get(job_id)
    assert job is not None
    assert job.state == "canceled"


def test_cancel_of_a_processing_job_asks_its_handler(queue: durable.Queue) -> None:
    job_id = queue.enqueue(1)
    claim_one(queue)
    assert queue.cancel(job_id) is True
    assert queue.cancel(job_id) is True  # still asking
    job = queue.get(job_id)
    assert job is not None
    assert (job.state, job.cancel_requested, job.finished_at) == ("processing", True, None)


def test_cancel_of_a_final_or_unknown_job_is_false(store: durable.Store) -> None:
    queue = store.queue("emails")
    job_id = queue.enqueue(1)
    assert backend_of(store).finish(claim_one(queue), Outcome.completed("null"))
    assert queue.cancel(job_id) is False
    assert queue.cancel(job_id + 1000) is False
    assert store.queue("sms").cancel(queue.enqueue(2)) is False
    job = queue.get(job_id)
    assert job is not None
    assert (job.state, job.cancel_requested) == ("completed", False)


def test_retry_puts_a_failed_job_back_with_its_attempts_from_zero(queue: durable.Queue) -> None:
    job_id = queue.enqueue(1, max_attempts=1, delay=0)
    assert backend_of(queue.store).finish(claim_one(queue), Outcome.errored("boom", 0.0))
    failed = queue.get(job_id)
    assert failed is not None
    assert (failed.state, failed.attempts) == ("failed", 1)
    assert queue.retry(job_id) is True
    job = queue.get(job_id)
    assert job is not None
    assert (job.state, job.attempts, job.resets, job.finished_at) == ("queued", 0, 0, None)
    assert job.run_after >= failed.finished_at  # type: ignore[operator]
    assert job.last_error == "boom"  # kept, for the record
    assert claim_one(queue).job.attempts == 1


def test_retry_puts_a_canceled_job_back(queue: durable.Queue) -> None:
    job_id = queue.enqueue(1)
    queue.cancel(job_id)
    assert queue.retry(job_id) is True
    job = queue.get(job_id)
    assert job is not None
    assert (job.state, job.cancel_requested) == ("queued", False)


def test_retry_of_a_job_that_is_not_failed_or_canceled_is_false(queue: durable.Queue) -> None:
    queued = queue.enqueue(1, priority=-1)
    done = queue.enqueue(2)
    assert backend_of(queue.store).finish(claim_one(queue), Outcome.completed("null"))
    assert queue.retry(queued) is False
    assert queue.retry(done) is False
    assert queue.retry(done + 1000) is False


def test_retry_is_false_while_another_job_holds_the_key(queue: durable.Queue) -> None:
    old = queue.enqueue(1, key="k")
    queue.cancel(old)
    new = queue.enqueue(2, key="k")
    assert queue.retry(old) is False
    queue.cancel(new)
    assert queue.retry(old) is True


def finish(queue: durable.Queue, how: str) -> int:
    """A job of `queue` ended `how` (a final state) now."""
    job_id = queue.enqueue(how, priority=100)
    backend = backend_of(queue.store)
    if how == "canceled":
        queue.cancel(job_id)
    elif how == "completed":
        assert backend.finish(claim_one(queue), Outcome.completed("null"))
    else:
        assert backend.finish(claim_one(queue), Outcome.failed("no"))
    return job_id


def test_purge_deletes_final_jobs_finished_longer_ago_than_older_than(
    queue: durable.Queue,
) -> None:
    ended = [finish(queue, how) for how in ("completed", "failed", "canceled")]
    waiting = queue.enqueue(1)
    assert queue.purge(older_than=3600) == 0
    assert queue.purge(older_than=0) == 3
    assert [queue.get(job_id) for job_id in ended] == [None, None, None]
    assert queue.get(waiting) is not None


def test_purge_deletes_only_the_states_asked(queue: durable.Queue) -> None:
    completed = finish(queue, "completed")
    failed = finish(queue, "failed")
    assert queue.purge(older_than=timedelta(0), states=["completed"]) == 1
    assert queue.get(completed) is None
    assert queue.get(failed) is not None


def test_purge_leaves_other_queues_alone(store: durable.Store) -> None:
    other = finish(store.queue("sms"), "completed")
    assert store.queue("emails").purge(older_than=0) == 0
    assert store.queue("sms").get(other) is not None


def test_purge_deletes_more_than_one_batch(queue: durable.Queue) -> None:
    ids = queue.enqueue_many(range(1201))
    for job_id in ids:
        queue.cancel(job_id)
    assert queue.purge(older_than=0) == 1201
    assert queue.counts()["canceled"] == 0


def test_jobs_are_frozen(queue: durable.Queue) -> None:
    job = queue.get(queue.enqueue(1))
    assert job is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.state = "completed"  # type: ignore[misc]


def test_processes_racing_to_enqueue_the_same_keys_make_one_job_per_key(target: Target) -> None:
    # Four fresh processes open the store at the same moment (creating its tables) and enqueue
    # the same 40 keys in the same order, so every key is raced for.
    keys = 40
    processes = [
        start_program("enqueue", target.url, target.schema, "race", str(keys), "--keyed")
        for _ in range(4)
    ]
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    results = [json.loads(finish_program(process)[0]) for process in processes]
    assert all(ids == results[0] for ids in results)
    assert len(set(results[0])) == keys
    assert target.open().queue("race").counts()["queued"] == keys
