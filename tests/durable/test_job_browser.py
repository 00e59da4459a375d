"""Seeing and acting on jobs, on both backends: `queue.jobs()` (filters, keyset pages),
`retry_all`, `cancel_all`, `run_now`, and the store's overviews `queues()`, `schedules()` and
`leases()` (spec/OPERATIONS.md, section 2)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from routines import durable
from routines.durable._model import Outcome, task_of

from .conftest import Target
from .support import backend_of, claim_jobs, end_jobs, fill_jobs, poll
from helpers import WAIT

ZEROS = dict.fromkeys(("queued", "processing", "completed", "errored", "failed", "canceled"), 0)
FAR_AHEAD = datetime(2999, 1, 1, tzinfo=timezone.utc)


def call(task: str, *args: object, **kwargs: object) -> dict[str, object]:
    """The payload of a task call (spec/OPERATIONS.md, section 1)."""
    return {"task": task, "args": list(args), "kwargs": kwargs}


def ids(jobs: list[durable.Job]) -> list[int]:
    return [job.id for job in jobs]


# -- listing ------------------------------------------------------------------------------------


def test_jobs_lists_the_queues_jobs_newest_first_as_get_gives_them(store: durable.Store) -> None:
    queue = store.queue("emails")
    made = queue.enqueue_many([{"n": n} for n in range(5)])
    store.queue("sms").enqueue("not this queue's")
    listed = queue.jobs()
    assert ids(listed) == made[::-1]
    assert listed == [queue.get(job_id) for job_id in made[::-1]]


def test_jobs_filters_by_one_state_or_several(queue: durable.Queue) -> None:
    queued = queue.enqueue_many(range(3))
    failed = end_jobs(queue, Outcome.failed("no"))
    errored = end_jobs(queue, Outcome.errored("boom", 3600.0))
    assert ids(queue.jobs(state="queued")) == [queued[2]]
    assert ids(queue.jobs(state="failed")) == failed
    assert ids(queue.jobs(state=["failed", "errored"])) == sorted(failed + errored, reverse=True)
    assert ids(queue.jobs(state=("completed",))) == []
    assert ids(queue.jobs(state=iter(["queued", "queued"]))) == [queued[2]]


def test_jobs_filters_by_task_whoever_enqueued_the_call(queue: durable.Queue) -> None:
    sends = queue.enqueue_many([call("mail.send", n, to="ada") for n in range(3)])
    other = queue.enqueue(call("mail.other"))
    near_misses = [
        {"task": "mail.send", "args": []},  # no kwargs
        {"task": "mail.send", "args": [], "kwargs": {}, "extra": 1},
        {"task": "mail.send", "args": {}, "kwargs": {}},  # args not a list
        {"task": 5, "args": [], "kwargs": {}},
        ["mail.send", [], {}],
        "mail.send",
    ]
    queue.enqueue_many(near_misses)
    assert ids(queue.jobs(task="mail.send")) == sends[::-1]
    assert ids(queue.jobs(task="mail.other")) == [other]
    assert ids(queue.jobs(task="mail.unknown")) == []
    end_jobs(queue, Outcome.failed("no"))  # the oldest send
    assert ids(queue.jobs(task="mail.send", state="failed")) == [sends[0]]
    assert ids(queue.jobs(task="mail.send", state=["queued", "canceled"])) == sends[:0:-1]


@pytest.mark.parametrize(
    ("payload", "task"),
    [
        (call("a.b"), "a.b"),
        ({"task": "a.b", "args": (1, 2), "kwargs": {"x": 1}}, "a.b"),
        ({"kwargs": {}, "args": [], "task": "a.b"}, "a.b"),
        ({"task": "", "args": [], "kwargs": {}}, None),
        ({"task": "x" * 201, "args": [], "kwargs": {}}, None),
        ({"task": "nul\x00", "args": [], "kwargs": {}}, None),
        ({"task": "a.b", "args": [], "kwargs": []}, None),
        ({"task": "a.b", "args": None, "kwargs": {}}, None),
        ({"task": "a.b"}, None),
        (None, None),
        (["a.b"], None),
    ],
)
def test_the_task_of_a_payload_is_that_of_a_call_of_exactly_that_shape(
    payload: object, task: str | None
) -> None:
    assert task_of(payload) == task


def test_a_page_is_at_most_limit_jobs_and_before_gives_the_next(queue: durable.Queue) -> None:
    made = queue.enqueue_many(range(7))
    first = queue.jobs(limit=3)
    assert ids(first) == made[:3:-1]
    second = queue.jobs(limit=3, before=first[-1].id)
    assert ids(second) == made[3:0:-1]
    assert ids(queue.jobs(limit=3, before=second[-1].id)) == [made[0]]
    assert queue.jobs(before=made[0]) == []
    assert ids(queue.jobs(limit=1000)) == made[::-1]


def test_pages_see_every_job_once_while_jobs_are_being_added(target: Target) -> None:
    """Keyset pages: new jobs have higher ids, so paging down while another thread enqueues
    (through a store of its own, as another process would) sees each job that was there when
    the listing began exactly once, and no job twice."""
    queue = target.open().queue("emails")
    fill_jobs(queue.store, 600, state="failed")
    queue.enqueue_many(range(150))  # and some in other states, interleaved with the failed
    fill_jobs(queue.store, 300, state="failed")
    there = set(ids(queue.jobs(limit=1000)))
    there |= set(ids(queue.jobs(limit=1000, before=min(there))))
    assert len(there) == 1050
    writer = target.open().queue("emails")
    stop = threading.Event()
    added: list[int] = []

    def add() -> None:
        while not stop.is_set() and len(added) < 5000:
            added.extend(writer.enqueue_many(range(10)))

    adding = threading.Thread(target=add, name="test-enqueuer")
    adding.start()
    seen: list[int] = []
    pages = 0
    try:
        assert poll(lambda: len(added) >= 20)  # the adding is under way
        page = queue.jobs(limit=37)
        while page:
            pages += 1
            seen += ids(page)
            page = queue.jobs(limit=37, before=page[-1].id)
            more = 20 * (pages + 1)
            poll(lambda more=more: len(added) >= more, timeout=1.0)  # more added meanwhile
    finally:
        stop.set()
        adding.join(WAIT)
    assert not adding.is_alive()
    assert len(seen) == len(set(seen)), "a job was seen twice"
    assert there <= set(seen), f"skipped: {sorted(there - set(seen))[:5]}"
    assert set(seen) <= there | set(added)
    assert seen == sorted(seen, reverse=True)
    assert pages >= 1050 // 37


# -- bulk actions -------------------------------------------------------------------------------


def test_retry_all_puts_1000_failed_jobs_back_in_one_call(queue: durable.Queue) -> None:
    fill_jobs(queue.store, 1000, state="failed")
    fill_jobs(queue.store, 10, state="canceled")
    fill_jobs(queue.store, 10, state="completed")
    assert queue.retry_all() == 1000
    assert queue.counts() == {**ZEROS, "queued": 1000, "canceled": 10, "completed": 10}
    put_back = queue.jobs(state="queued", limit=1000)
    assert len(put_back) == 1000
    assert {(job.attempts, job.finished_at, job.last_error) for job in put_back} == {
        (0, None, "RuntimeError: boom")
    }
    assert queue.retry_all() == 0


def test_retry_all_takes_failed_or_canceled_jobs_as_asked(queue: durable.Queue) -> None:
    queue.enqueue_many(range(4))
    failed = end_jobs(queue, Outcome.failed("no"), limit=2)
    canceled = end_jobs(queue, Outcome.canceled())
    completed = end_jobs(queue, Outcome.completed("1"))
    assert queue.retry_all(state="canceled") == 1
    assert queue.retry_all(state=("failed", "canceled")) == 2
    for job_id in failed + canceled:
        job = queue.get(job_id)
        assert job is not None
        assert (job.state, job.attempts) == ("queued", 0)
    assert [queue.get(job_id).state for job_id in completed] == ["completed"]  # type: ignore[union-attr]


def test_retry_all_leaves_a_job_whose_key_is_live_and_puts_back_the_newest_of_a_key(
    queue: durable.Queue,
) -> None:
    made = {}
    for name, key in [("older", "k"), ("newer", "k"), ("held", "held"), ("plain", None)]:
        made[name] = queue.enqueue(name, key=key)
        end_jobs(queue, Outcome.failed("no"))  # its key is free again once it ended
    live = queue.enqueue("live", key="held")
    assert queue.retry_all() == 2
    states = {job.id: job.state for job in queue.jobs()}
    assert states[made["newer"]] == "queued"
    assert states[made["older"]] == "failed"  # "k" is live again: the newer job holds it
    assert states[made["held"]] == "failed"  # "held" is live: `live` holds it
    assert states[made["plain"]] == "queued"
    assert states[live] == "queued"


def test_cancel_all_cancels_waiting_jobs_and_asks_processing_ones_only_when_told(
    queue: durable.Queue,
) -> None:
    queue.enqueue_many(range(5))
    running = claim_jobs(queue)[0]
    errored = end_jobs(queue, Outcome.errored("boom", 3600.0))
    completed = end_jobs(queue, Outcome.completed("1"))
    assert queue.cancel_all() == 3  # two queued, one errored
    assert queue.counts() == {**ZEROS, "canceled": 3, "processing": 1, "completed": 1}
    assert queue.get(errored[0]).state == "canceled"  # type: ignore[union-attr]
    assert queue.cancel_all(state="processing") == 1
    job = queue.get(running.id)
    assert job is not None
    assert (job.state, job.cancel_requested) == ("processing", True)
    assert queue.get(completed[0]).state == "completed"  # type: ignore[union-attr]


def test_cancel_all_goes_through_more_than_one_batch(queue: durable.Queue) -> None:
    fill_jobs(queue.store, 1234, state="queued")
    fill_jobs(queue.store, 1100, state="processing")
    assert queue.cancel_all(state=("queued", "processing")) == 2334
    assert queue.counts() == {**ZEROS, "canceled": 1234, "processing": 1100}


def test_run_now_makes_an_errored_job_due_at_once_its_attempts_untouched(
    queue: durable.Queue,
) -> None:
    job_id = queue.enqueue("x")
    end_jobs(queue, Outcome.errored("boom", 3600.0))
    waiting = queue.get(job_id)
    assert waiting is not None
    assert (waiting.state, waiting.attempts) == ("errored", 1)
    assert claim_jobs(queue) == []  # due in an hour
    assert queue.run_now(job_id) is True
    made_due = queue.get(job_id)
    assert made_due is not None
    assert (made_due.state, made_due.attempts, made_due.last_error) == ("errored", 1, "boom")
    assert made_due.run_after < waiting.run_after
    claimed = claim_jobs(queue)
    assert [c.id for c in claimed] == [job_id]
    assert claimed[0].job.attempts == 2


def test_run_now_of_a_queued_job_makes_it_due_and_one_due_already_keeps_its_place(
    queue: durable.Queue,
) -> None:
    later = queue.enqueue("later", run_at=FAR_AHEAD)
    due = queue.enqueue("due", run_at=datetime(2000, 1, 1, tzinfo=timezone.utc))
    assert queue.run_now(later) is True
    assert queue.run_now(due) is True
    assert queue.get(due).run_after == datetime(2000, 1, 1, tzinfo=timezone.utc)  # type: ignore[union-attr]
    assert ids([c.job for c in claim_jobs(queue, 2)]) == [due, later]  # earliest run_after first


def test_run_now_is_false_for_a_job_that_is_not_waiting(store: durable.Store) -> None:
    queue = store.queue("emails")
    queue.enqueue_many([1, 2])
    running = claim_jobs(queue)[0]
    finished = end_jobs(queue, Outcome.completed("1"))[0]
    other = store.queue("sms").enqueue(3)
    assert queue.run_now(running.id) is False
    assert queue.run_now(finished) is False
    assert queue.run_now(other) is False  # another queue's
    assert queue.run_now(10**9) is False


def test_bulk_retry_wakes_this_process_workers(store: durable.Store) -> None:
    queue = store.queue("emails")
    ran = threading.Event()
    queue.enqueue("x")
    end_jobs(queue, Outcome.failed("no"))
    worker = durable.QueueWorker(queue, lambda job: ran.set(), poll_interval=3600)
    thread = threading.Thread(target=worker.start, name="routine:emails")
    thread.start()
    try:
        # Its claims are seen through its status: paused once a claim after the pause found
        # nothing, not paused once one after the resume did. Then it waits, for an hour.
        queue.pause()
        assert poll(lambda: worker.status().paused)
        queue.resume()
        assert poll(lambda: not worker.status().paused)
        assert queue.retry_all() == 1
        assert ran.wait(WAIT), "retry_all did not wake the worker (it polls once an hour)"
    finally:
        worker.stop()
        thread.join(WAIT)
    assert not thread.is_alive()


# -- the store's overviews ----------------------------------------------------------------------


def test_store_job_finds_a_job_by_its_id_whatever_its_queue(store: durable.Store) -> None:
    emails, sms = store.queue("emails"), store.queue("sms")
    first = emails.enqueue({"to": "ada"})
    second = sms.enqueue(call("sms.send", "+33"))
    assert store.job(first) == emails.get(first)
    found = store.job(second)
    assert found is not None
    assert (found.queue, found.task) == ("sms", "sms.send")
    assert found == sms.get(second)
    assert store.job(second + 1) is None
    assert sms.cancel(second)
    assert sms.purge(older_than=0, states=("canceled",)) == 1
    assert store.job(second) is None


def test_queues_lists_every_queue_with_a_job_or_a_pause(store: durable.Store) -> None:
    emails, sms = store.queue("emails"), store.queue("sms")
    emails.enqueue_many(range(3))
    end_jobs(emails, Outcome.failed("no"))
    emails.enqueue("later", delay=3600)
    sms.enqueue("x")
    store.queue("reports").pause()
    found = {info.name: info for info in store.queues()}
    assert [info.name for info in store.queues()] == ["emails", "reports", "sms"]
    assert found["emails"].counts == {**ZEROS, "queued": 3, "failed": 1}
    assert found["emails"].paused is False
    age = found["emails"].oldest_ready_age
    assert age is not None
    assert 0 <= age < 60
    assert found["reports"] == durable.QueueInfo("reports", ZEROS, True, None)
    assert found["sms"].counts == {**ZEROS, "queued": 1}
    store.queue("reports").resume()
    assert [info.paused for info in store.queues()] == [False, False, False]


def test_queues_of_an_empty_store_is_empty(store: durable.Store) -> None:
    assert store.queues() == []


def test_schedules_lists_each_schedules_latest_run_and_its_kept_runs(store: durable.Store) -> None:
    backend = backend_of(store)
    start = datetime(2030, 1, 1, tzinfo=timezone.utc)
    for n, error in enumerate([None, "boom", None, "bang"]):
        tick = start + timedelta(minutes=n)
        assert backend.claim_tick("nightly", tick, "w", 60.0) == "claimed"
        assert backend.finish_run("nightly", tick, "w", error)
    assert backend.claim_tick("hourly", start, "w", 60.0) == "claimed"
    assert store.schedules()[0].name == "hourly"
    nightly = {info.name: info for info in store.schedules()}["nightly"]
    assert (nightly.runs, nightly.failures) == (4, 2)
    assert nightly.last_run == store.schedule_runs("nightly", limit=1)[0]
    assert nightly.last_run is not None
    assert (nightly.last_run.tick, nightly.last_run.error) == (start + timedelta(minutes=3), "bang")
    hourly = store.schedules()[0]
    assert (hourly.runs, hourly.failures) == (1, 0)
    assert hourly.last_run is not None
    assert hourly.last_run.state == "running"
    assert store.schedule_runs("no such schedule") == []


def test_leases_lists_each_lease_and_its_holder_while_it_holds(store: durable.Store) -> None:
    held = store.lease("billing", ttl=30)
    assert held.acquire()
    released = store.lease("backup", ttl=30)
    assert released.acquire()
    released.release()
    expiring = store.lease("short", ttl=0.05)
    assert expiring.acquire()
    found = {info.name: info for info in store.leases()}
    assert [info.name for info in store.leases()] == ["backup", "billing", "short"]
    billing = found["billing"]
    assert billing.holder is not None
    assert billing.token == held.token
    assert billing.expires_at is not None
    assert billing.expires_at > backend_of(store).now()
    assert found["backup"] == durable.LeaseInfo("backup", None, 1, None)
    expired = poll(lambda: {i.name: i for i in store.leases()}["short"].holder is None)
    assert expired, "an expired lease still shows its holder"
    short = {info.name: info for info in store.leases()}["short"]
    assert short.expires_at is not None
    assert short.token == 1
    held.release()


def test_the_info_types_are_frozen(store: durable.Store) -> None:
    store.queue("emails").enqueue(1)
    info = store.queues()[0]
    with pytest.raises(AttributeError):
        info.paused = True  # type: ignore[misc]
