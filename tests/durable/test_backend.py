"""The database operations the queue worker is built from, tested directly on both backends:
claim, heartbeat, the outcome writes (each conditional on the claim's token), the stalled sweep,
the database's clock and the ready count.

Decisions taken on the database's clock are tested with it: a job claimed with a tiny
`stalled_after` is polled (bounded) until the sweep finds it stalled; one claimed with an hour's
is not stalled at once.
"""

from __future__ import annotations

import dataclasses
import threading
from datetime import datetime, timedelta, timezone

import pytest

from routines import durable
from routines.durable._model import Backlog, Claim, Claimer, Outcome
from routines.durable._sqlstore import SQLStore as Backend

from .conftest import Target
from .support import backend_of, poll
from helpers import WAIT

HOUR = 3600.0
STALLS_AT_ONCE = 0.001  # a stalled_after that is past a few milliseconds after the claim


@pytest.fixture
def backend(store: durable.Store) -> Backend:
    return backend_of(store)


def claim(
    backend: Backend,
    *,
    limit: int = 1,
    stalled_after: float = HOUR,
    max_resets: int = 3,
    worker_id: str = "host:1:abc",
) -> list[Claim]:
    return backend.claim("emails", Claimer(worker_id, stalled_after, max_resets), limit)


def claim_one(
    backend: Backend, *, stalled_after: float = HOUR, max_resets: int = 3, worker_id: str = "w"
) -> Claim:
    claims = claim(backend, stalled_after=stalled_after, max_resets=max_resets, worker_id=worker_id)
    assert len(claims) == 1
    return claims[0]


def stale(claim_: Claim) -> Claim:
    """The same job under a token that is not its own."""
    return dataclasses.replace(claim_, token="not-the-token")


def job(queue: durable.Queue, job_id: int) -> durable.Job:
    found = queue.get(job_id)
    assert found is not None
    return found


def sweep_until_changed(backend: Backend) -> int:
    """How many jobs the first sweep that changed some changed."""
    return len(poll(lambda: backend.sweep_stalled("emails")))


# -- the clock ----------------------------------------------------------------------------------


def test_now_is_the_databases_clock_as_aware_utc(backend: Backend) -> None:
    first = backend.now()
    second = backend.now()
    assert first.tzinfo is timezone.utc
    assert first <= second
    # The database runs on this host: its clock agrees with ours to well within a minute.
    assert abs(first - datetime.now(timezone.utc)) < timedelta(minutes=1)


def test_the_backlog_counts_the_queued_and_errored_jobs_that_are_due(
    backend: Backend, queue: durable.Queue
) -> None:
    queue.enqueue_many([1, 2, 3])
    queue.enqueue(4, delay=HOUR)
    queue.enqueue(5, run_at=backend.now() - timedelta(seconds=1))
    assert backend.backlog("emails") == Backlog(ready=4, paused=False)
    first = claim_one(backend)
    assert backend.backlog("emails").ready == 3
    assert backend.finish(first, Outcome.errored("boom", 0.0))
    assert backend.backlog("emails").ready == 4
    assert backend.backlog("sms") == Backlog(ready=0, paused=False)


def test_the_backlog_says_whether_the_queue_is_paused(
    backend: Backend, queue: durable.Queue
) -> None:
    queue.enqueue(1)
    queue.pause()
    assert backend.backlog("emails") == Backlog(ready=1, paused=True)
    assert claim(backend) == []  # the claim itself takes nothing of a paused queue
    queue.resume()
    assert backend.backlog("emails") == Backlog(ready=1, paused=False)
    assert len(claim(backend)) == 1


# -- claim --------------------------------------------------------------------------------------


def test_claim_marks_the_job_processing_for_this_worker(
    backend: Backend, queue: durable.Queue
) -> None:
    job_id = queue.enqueue({"to": "ada"})
    before = backend.now()
    claimed = claim_one(backend, worker_id="web-1:4242:9f3c")
    stored = job(queue, job_id)
    assert claimed.job == stored
    assert (stored.state, stored.attempts, stored.worker) == ("processing", 1, "web-1:4242:9f3c")
    assert stored.started_at is not None
    assert stored.heartbeat_at == stored.started_at
    assert before <= stored.started_at <= backend.now()
    assert stored.payload == {"to": "ada"}


def test_claim_gives_each_attempt_a_fresh_random_token(
    backend: Backend, queue: durable.Queue
) -> None:
    queue.enqueue_many([1, 2])
    first, second = claim(backend, limit=2)
    assert first.token != second.token
    assert len(first.token) >= 32
    assert backend.finish(first, Outcome.errored("boom", 0.0))
    again = claim_one(backend)
    assert again.id == first.id
    assert again.token not in (first.token, second.token)
    assert again.job.attempts == 2


def test_claim_takes_the_highest_priority_then_earliest_due_then_lowest_id(
    backend: Backend, queue: durable.Queue
) -> None:
    now = backend.now()
    low = queue.enqueue("low", priority=-1)
    later = queue.enqueue("later", run_at=now - timedelta(seconds=1))
    earlier = queue.enqueue("earlier", run_at=now - timedelta(seconds=2))
    first_plain, second_plain = queue.enqueue_many(["plain-1", "plain-2"], run_at=now)
    high = queue.enqueue("high", priority=5)
    claimed = [c.id for c in claim(backend, limit=10)]
    assert claimed == [high, earlier, later, first_plain, second_plain, low]


def test_claim_takes_at_most_limit_jobs_in_order(backend: Backend, queue: durable.Queue) -> None:
    ids = queue.enqueue_many(range(5))
    assert [c.id for c in claim(backend, limit=2)] == ids[:2]
    assert [c.id for c in claim(backend, limit=2)] == ids[2:4]
    assert [c.id for c in claim(backend, limit=2)] == ids[4:]
    assert claim(backend, limit=2) == []


def test_claim_leaves_jobs_that_are_not_due_or_not_waiting(
    backend: Backend, store: durable.Store, queue: durable.Queue
) -> None:
    queue.enqueue(1, delay=HOUR)
    queue.cancel(queue.enqueue(2))
    store.queue("sms").enqueue(3)
    assert claim(backend, limit=10) == []


def test_an_errored_job_is_claimed_again_once_due(backend: Backend, queue: durable.Queue) -> None:
    job_id = queue.enqueue(1)
    assert backend.finish(claim_one(backend), Outcome.errored("boom", 0.05))
    again = poll(lambda: claim(backend))
    assert [c.id for c in again] == [job_id]
    assert again[0].job.attempts == 2
    assert again[0].job.last_error == "boom"


def test_an_errored_job_is_not_claimed_before_its_delay(
    backend: Backend, queue: durable.Queue
) -> None:
    queue.enqueue(1)
    assert backend.finish(claim_one(backend), Outcome.errored("boom", HOUR))
    assert claim(backend) == []


def test_concurrent_claims_never_take_the_same_job(
    target: Target, store: durable.Store, queue: durable.Queue
) -> None:
    ids = set(queue.enqueue_many(range(60)))
    # Two stores (two pools, or two sets of SQLite connections) and two threads each.
    stores = [store, target.open()]
    taken: list[list[int]] = [[] for _ in range(4)]
    errors: list[BaseException] = []
    go = threading.Barrier(4, timeout=WAIT)

    def work(index: int) -> None:
        backend = backend_of(stores[index % 2])
        try:
            go.wait()
            while claims := claim(backend, limit=3):
                taken[index] += [c.id for c in claims]
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(4 * WAIT)
    assert not errors
    every = [job_id for ids_ in taken for job_id in ids_]
    assert sorted(every) == sorted(ids)


# -- heartbeat ----------------------------------------------------------------------------------


def test_heartbeat_moves_heartbeat_at_and_reports_nothing_wrong(
    backend: Backend, queue: durable.Queue
) -> None:
    queue.enqueue_many([1, 2])
    claims = claim(backend, limit=2)
    first_beat = job(queue, claims[0].id).heartbeat_at
    assert first_beat is not None

    def moved() -> bool:
        backend.heartbeat(claims)
        beat = job(queue, claims[0].id).heartbeat_at
        return beat is not None and beat > first_beat

    assert poll(moved)
    beat = backend.heartbeat(claims)
    assert (beat.gone, beat.cancel_requested) == (frozenset(), frozenset())


def test_heartbeat_of_no_claims_is_empty(backend: Backend) -> None:
    beat = backend.heartbeat([])
    assert (beat.gone, beat.cancel_requested) == (frozenset(), frozenset())


def test_heartbeat_reports_the_jobs_whose_cancel_was_asked(
    backend: Backend, queue: durable.Queue
) -> None:
    queue.enqueue_many([1, 2])
    first, second = claim(backend, limit=2)
    queue.cancel(second.id)
    beat = backend.heartbeat([first, second])
    assert beat.cancel_requested == {second.id}
    assert beat.gone == frozenset()


def test_heartbeat_reports_claims_that_are_gone(backend: Backend, queue: durable.Queue) -> None:
    queue.enqueue_many(range(4))
    kept, finished, purged, stolen = claim(backend, limit=4)
    assert backend.finish(finished, Outcome.completed("null"))
    assert backend.finish(purged, Outcome.failed("no"))
    assert queue.purge(older_than=0, states=["failed"]) == 1
    before = job(queue, stolen.id).heartbeat_at
    beat = backend.heartbeat([kept, finished, purged, stale(stolen)])
    assert beat.gone == {finished.id, purged.id, stolen.id}
    assert job(queue, stolen.id).heartbeat_at == before  # a wrong token changes nothing


def test_heartbeat_handles_more_claims_than_one_statement_batch(
    backend: Backend, queue: durable.Queue
) -> None:
    queue.enqueue_many(range(450))
    claims = claim(backend, limit=450)
    assert len(claims) == 450
    beat = backend.heartbeat([*claims[:-1], stale(claims[-1])])
    assert beat.gone == {claims[-1].id}


# -- finish and claim the next in one write -----------------------------------------------------


def test_finish_and_claim_writes_the_outcome_and_claims_the_next_job(
    backend: Backend, queue: durable.Queue
) -> None:
    first, second = queue.enqueue(1), queue.enqueue(2, priority=5)
    third = queue.enqueue(3, priority=5)
    claimed = claim_one(backend)
    assert claimed.id == second  # the highest priority first
    written, following = backend.finish_and_claim(
        claimed, Outcome.completed("7"), Claimer("host:2:def", 60.0, 2)
    )
    assert written is True
    assert job(queue, second).state == "completed"
    assert following is not None
    assert following.id == third  # the same order as claim()
    taken = job(queue, third)
    assert (taken.state, taken.attempts, following.job) == ("processing", 1, taken)
    assert following.token != claimed.token
    assert job(queue, first).state == "queued"


def test_finish_and_claim_on_an_empty_queue_claims_nothing(
    backend: Backend, queue: durable.Queue
) -> None:
    job_id = queue.enqueue(1)
    written, following = backend.finish_and_claim(
        claim_one(backend), Outcome.failed("no"), Claimer("w", HOUR, 3)
    )
    assert (written, following) == (True, None)
    assert job(queue, job_id).state == "failed"


def test_finish_and_claim_under_a_lost_token_changes_that_job_and_still_claims(
    backend: Backend, queue: durable.Queue
) -> None:
    job_id = queue.enqueue(1)
    claimed = claim_one(backend)
    before = job(queue, job_id)
    waiting = queue.enqueue(2)
    written, following = backend.finish_and_claim(
        stale(claimed), Outcome.completed("1"), Claimer("w", HOUR, 3)
    )
    assert written is False
    assert job(queue, job_id) == before
    assert following is not None
    assert following.id == waiting


# -- outcomes -----------------------------------------------------------------------------------


def test_completed_stores_the_result(backend: Backend, queue: durable.Queue) -> None:
    job_id = queue.enqueue(1)
    assert backend.finish(claim_one(backend), Outcome.completed('{"sent": true}')) is True
    done = job(queue, job_id)
    assert (done.state, done.result, done.attempts) == ("completed", {"sent": True}, 1)
    assert done.finished_at is not None
    assert done.started_at is not None
    assert done.finished_at >= done.started_at


def test_errored_is_due_again_after_the_delay(backend: Backend, queue: durable.Queue) -> None:
    job_id = queue.enqueue(1)
    before = backend.now()
    assert backend.finish(claim_one(backend), Outcome.errored("ValueError: boom", 60.0)) is True
    errored = job(queue, job_id)
    assert (errored.state, errored.last_error, errored.finished_at) == (
        "errored",
        "ValueError: boom",
        None,
    )
    assert before + timedelta(seconds=60) <= errored.run_after
    assert errored.run_after <= backend.now() + timedelta(seconds=60)


def test_errored_is_failed_once_the_attempts_are_spent(
    backend: Backend, queue: durable.Queue
) -> None:
    job_id = queue.enqueue(1, max_attempts=2)
    assert backend.finish(claim_one(backend), Outcome.errored("first", 0.0))
    assert job(queue, job_id).state == "errored"
    assert backend.finish(claim_one(backend), Outcome.errored("second", 0.0))
    failed = job(queue, job_id)
    assert (failed.state, failed.attempts, failed.last_error) == ("failed", 2, "second")
    assert failed.finished_at is not None
    assert claim(backend) == []


def test_failed_is_final_whatever_the_attempts_left(backend: Backend, queue: durable.Queue) -> None:
    job_id = queue.enqueue(1, max_attempts=10)
    assert backend.finish(claim_one(backend), Outcome.failed("Fail: bounced")) is True
    failed = job(queue, job_id)
    assert (failed.state, failed.last_error, failed.attempts) == ("failed", "Fail: bounced", 1)
    assert failed.finished_at is not None


def test_canceled(backend: Backend, queue: durable.Queue) -> None:
    job_id = queue.enqueue(1)
    assert backend.finish(claim_one(backend), Outcome.canceled()) is True
    canceled = job(queue, job_id)
    assert canceled.state == "canceled"
    assert canceled.finished_at is not None


def test_hand_back_gives_the_attempt_back(backend: Backend, queue: durable.Queue) -> None:
    job_id = queue.enqueue(1)
    assert backend.finish(claim_one(backend), Outcome.errored("first", 0.0))
    assert backend.finish(claim_one(backend), Outcome.handed_back()) is True
    queued = job(queue, job_id)
    assert (queued.state, queued.attempts, queued.finished_at) == ("queued", 1, None)
    assert claim_one(backend).job.attempts == 2


OUTCOMES = [
    pytest.param(Outcome.completed('"done"'), "completed", id="completed"),
    pytest.param(Outcome.errored("boom", HOUR), "errored", id="errored"),
    pytest.param(Outcome.failed("no"), "failed", id="failed"),
    pytest.param(Outcome.canceled(), "canceled", id="canceled"),
    pytest.param(Outcome.handed_back(), "queued", id="handed_back"),
]


@pytest.mark.parametrize(("outcome", "state"), OUTCOMES)
def test_a_job_whose_cancel_was_asked_ends_canceled_whatever_the_outcome(
    backend: Backend, queue: durable.Queue, outcome: Outcome, state: str
) -> None:
    job_id = queue.enqueue(1)
    claimed = claim_one(backend)
    queue.cancel(job_id)
    assert backend.finish(claimed, outcome) is True
    canceled = job(queue, job_id)
    assert canceled.state == "canceled"
    assert canceled.finished_at is not None
    assert canceled.attempts == 1  # a hand-back that ends canceled keeps the attempt


@pytest.mark.parametrize(("outcome", "state"), OUTCOMES)
def test_an_outcome_written_twice_recognises_its_own_first_write(
    backend: Backend, queue: durable.Queue, outcome: Outcome, state: str
) -> None:
    # As when a connection broke after the commit and the worker wrote the outcome again.
    job_id = queue.enqueue(1)
    claimed = claim_one(backend)
    assert backend.finish(claimed, outcome) is True
    written = job(queue, job_id)
    assert written.state == state
    assert backend.finish(claimed, outcome) is True
    assert job(queue, job_id) == written


@pytest.mark.parametrize(("outcome", "state"), OUTCOMES)
def test_an_outcome_under_a_token_that_is_gone_changes_nothing(
    backend: Backend, queue: durable.Queue, outcome: Outcome, state: str
) -> None:
    job_id = queue.enqueue(1)
    claimed = claim_one(backend)
    before = job(queue, job_id)
    assert backend.finish(stale(claimed), outcome) is False
    assert job(queue, job_id) == before


@pytest.mark.parametrize(("outcome", "state"), OUTCOMES)
def test_an_outcome_after_the_sweep_reset_the_job_changes_nothing(
    backend: Backend, queue: durable.Queue, outcome: Outcome, state: str
) -> None:
    job_id = queue.enqueue(1)
    dead = claim_one(backend, stalled_after=STALLS_AT_ONCE)
    assert sweep_until_changed(backend) == 1
    live = claim_one(backend)
    assert backend.finish(dead, outcome) is False
    after = job(queue, job_id)
    assert (after.state, after.attempts) == ("processing", 2)
    assert backend.heartbeat([dead]).gone == {job_id}
    assert backend.heartbeat([live]).gone == frozenset()


@pytest.mark.parametrize(("outcome", "state"), OUTCOMES)
def test_an_outcome_of_a_purged_job_is_false(
    backend: Backend, queue: durable.Queue, outcome: Outcome, state: str
) -> None:
    job_id = queue.enqueue(1)
    claimed = claim_one(backend)
    assert backend.finish(claimed, Outcome.failed("no"))
    assert queue.purge(older_than=0) == 1
    assert backend.finish(claimed, outcome) is False
    assert queue.get(job_id) is None


# -- the stalled sweep --------------------------------------------------------------------------


def test_a_job_with_a_fresh_heartbeat_is_not_stalled(
    backend: Backend, queue: durable.Queue
) -> None:
    queue.enqueue(1)
    claim_one(backend)
    assert backend.sweep_stalled("emails") == []


def test_a_stalled_job_goes_back_to_queued_with_its_attempt_spent(
    backend: Backend, queue: durable.Queue
) -> None:
    job_id = queue.enqueue(1)
    dead = claim_one(backend, stalled_after=STALLS_AT_ONCE)
    assert sweep_until_changed(backend) == 1
    reset = job(queue, job_id)
    assert (reset.state, reset.resets, reset.attempts, reset.finished_at) == ("queued", 1, 1, None)
    assert backend.heartbeat([dead]).gone == {job_id}
    again = claim_one(backend)
    assert (again.job.attempts, again.job.resets) == (2, 1)


def test_each_job_is_judged_by_the_stalled_after_of_its_claimer(
    backend: Backend, queue: durable.Queue
) -> None:
    patient_id, hasty_id = queue.enqueue_many([1, 2])
    claim_one(backend, stalled_after=HOUR)
    claim_one(backend, stalled_after=STALLS_AT_ONCE)
    assert sweep_until_changed(backend) == 1
    assert job(queue, patient_id).state == "processing"
    assert job(queue, hasty_id).state == "queued"


def test_a_heartbeat_keeps_a_job_from_the_sweep(backend: Backend, queue: durable.Queue) -> None:
    job_id = queue.enqueue(1)
    # A heartbeat and the sweep right after it are never stalled_after apart, even when a
    # loaded machine's fsync takes most of a second.
    claimed = claim_one(backend, stalled_after=1.5)
    # Heartbeat well within stalled_after, for longer than stalled_after: never swept.
    deadline = backend.now() + timedelta(seconds=2)
    pause = threading.Event()
    while backend.now() < deadline:
        assert backend.heartbeat([claimed]).gone == frozenset()
        assert backend.sweep_stalled("emails") == []
        pause.wait(0.05)
    assert job(queue, job_id).state == "processing"


def test_a_stalled_job_whose_cancel_was_asked_is_canceled(
    backend: Backend, queue: durable.Queue
) -> None:
    job_id = queue.enqueue(1)
    claim_one(backend, stalled_after=STALLS_AT_ONCE)
    queue.cancel(job_id)
    assert sweep_until_changed(backend) == 1
    canceled = job(queue, job_id)
    assert (canceled.state, canceled.resets) == ("canceled", 1)
    assert canceled.finished_at is not None


def test_a_job_is_failed_at_the_death_after_max_resets(
    backend: Backend, queue: durable.Queue
) -> None:
    job_id = queue.enqueue(1, max_attempts=10)
    for death in (1, 2):
        claim_one(backend, stalled_after=STALLS_AT_ONCE, max_resets=2)
        assert sweep_until_changed(backend) == 1
        assert (job(queue, job_id).state, job(queue, job_id).resets) == ("queued", death)
    claim_one(backend, stalled_after=STALLS_AT_ONCE, max_resets=2)
    assert sweep_until_changed(backend) == 1
    failed = job(queue, job_id)
    assert (failed.state, failed.resets, failed.attempts) == ("failed", 3, 3)
    assert failed.last_error == "the worker died 3 times while running it"
    assert failed.finished_at is not None


def test_max_resets_zero_fails_a_job_at_its_first_death(
    backend: Backend, queue: durable.Queue
) -> None:
    job_id = queue.enqueue(1)
    claim_one(backend, stalled_after=STALLS_AT_ONCE, max_resets=0)
    assert sweep_until_changed(backend) == 1
    failed = job(queue, job_id)
    assert failed.state == "failed"
    assert failed.last_error == "the worker died 1 time while running it"


def test_the_sweep_touches_only_its_queue(store: durable.Store, backend: Backend) -> None:
    other = store.queue("sms").enqueue(1)
    backend.claim("sms", Claimer("w", STALLS_AT_ONCE, 3), 1)
    store.queue("emails").enqueue(2)
    claim_one(backend, stalled_after=STALLS_AT_ONCE)
    assert sweep_until_changed(backend) == 1
    sms = store.queue("sms").get(other)
    assert sms is not None
    assert sms.state == "processing"
