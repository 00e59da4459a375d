"""Flow control in one process, on both backends (spec/OPERATIONS.md section 5): limits stored
with the queue and checked at the call, a job's group, the limited claim's rules, `Snooze`, and
the wake-ups that start a held-back job as soon as a limit allows. test_limit_processes.py holds
the same promises with real processes."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest

from routines import durable
from routines.durable._model import Claim, Claimer, Outcome

from .conftest import Target
from .support import backend_of, poll
from helpers import WAIT

CLAIMER = Claimer("w", 3600.0, 3)


def claim(queue: durable.Queue, limit: int = 10) -> list[Claim]:
    return backend_of(queue.store).claim(queue.name, CLAIMER, limit, limited=True)


def finish(queue: durable.Queue, claims: list[Claim]) -> None:
    backend = backend_of(queue.store)
    for each in claims:
        assert backend.finish(each, Outcome.completed("null"))


# -- the limits, stored ---------------------------------------------------------------------------


def test_limits_are_stored_with_the_queue_and_seen_by_every_store(
    queue: durable.Queue, target: Target
) -> None:
    assert queue.limits == durable.QueueLimits()
    assert not queue.limits.limited
    queue.set_limits(max_running=5, group_running=1, rate=(10, 1.5))
    seen = target.open().queue("emails").limits
    assert seen == durable.QueueLimits(max_running=5, group_running=1, rate=(10, 1.5))
    assert seen.limited
    [info] = queue.store.queues()
    assert (info.name, info.limits) == ("emails", seen)
    assert queue.store.queue("sms").limits == durable.QueueLimits()  # one queue's, not the store's


def test_set_limits_sets_all_three_and_an_omitted_one_is_removed(queue: durable.Queue) -> None:
    queue.set_limits(max_running=5, rate=(10, 1.0))
    queue.set_limits(group_running=2)
    assert queue.limits == durable.QueueLimits(group_running=2)
    queue.set_limits()
    assert queue.limits == durable.QueueLimits()
    assert queue.store.queues()[0].limits == durable.QueueLimits()


@pytest.mark.parametrize(
    ("options", "error", "named"),
    [
        ({"max_running": 0}, ValueError, "max_running"),
        ({"max_running": "2"}, TypeError, "max_running"),
        ({"max_running": True}, TypeError, "max_running"),
        ({"group_running": -1}, ValueError, "group_running"),
        ({"group_running": 2**31}, ValueError, "group_running"),
        ({"rate": 10}, TypeError, "rate"),
        ({"rate": [10, 1.0]}, TypeError, "rate"),
        ({"rate": (10,)}, TypeError, "rate"),
        ({"rate": (0, 1.0)}, ValueError, "rate count"),
        ({"rate": (10, 0)}, ValueError, "rate per_seconds"),
        ({"rate": (10, float("inf"))}, ValueError, "rate per_seconds"),
        ({"rate": (10, "1")}, TypeError, "rate per_seconds"),
    ],
)
def test_bad_limits_are_refused_at_the_call_and_change_nothing(
    queue: durable.Queue, options: dict[str, Any], error: type[Exception], named: str
) -> None:
    queue.set_limits(max_running=3)
    with pytest.raises(error, match=named):
        queue.set_limits(**options)
    assert queue.limits == durable.QueueLimits(max_running=3)


# -- a job's group -------------------------------------------------------------------------------


def test_a_job_keeps_its_group_from_enqueue_enqueue_many_and_a_task(
    store: durable.Store, queue: durable.Queue
) -> None:
    one = queue.enqueue("a", group="customer:1")
    many = queue.enqueue_many(["b", "c"], group="customer:2")
    mixed = queue.enqueue_many(["d"], priority=3, group="customer:3")
    plain = queue.enqueue("e")
    tasks = durable.Tasks(store, queue="emails")

    @tasks.task(name="send", group="customer:4")
    def send(to: str) -> None: ...

    by_task = send.enqueue("x")
    configured = send.configure(group="customer:5").enqueue("y")
    groups = [
        queue.get(job_id).group for job_id in (one, *many, *mixed, plain, by_task, configured)
    ]  # type: ignore[union-attr]
    assert groups == [
        "customer:1",
        "customer:2",
        "customer:2",
        "customer:3",
        None,
        "customer:4",
        "customer:5",
    ]


@pytest.mark.parametrize(
    ("group", "error"), [("", ValueError), (42, TypeError), ("x" * 201, ValueError)]
)
def test_a_bad_group_is_refused_and_nothing_is_written(
    queue: durable.Queue, group: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match="group"):
        queue.enqueue("job", group=group)  # type: ignore[arg-type]
    with pytest.raises(error, match="group"):
        queue.enqueue_many(["job"], group=group)  # type: ignore[arg-type]
    assert queue.counts()["queued"] == 0


# -- the limited claim ---------------------------------------------------------------------------


def test_a_plain_claim_takes_nothing_from_a_limited_queue(queue: durable.Queue) -> None:
    queue.enqueue_many(range(3))
    queue.set_limits(max_running=10)
    assert backend_of(queue.store).claim("emails", CLAIMER, 10) == []
    assert backend_of(queue.store).backlog("emails").limited
    assert len(claim(queue)) == 3


def test_max_running_counts_the_processing_jobs_of_the_queue(queue: durable.Queue) -> None:
    ids = queue.enqueue_many(range(5))
    queue.set_limits(max_running=2)
    first = claim(queue)
    assert [c.id for c in first] == ids[:2]
    assert claim(queue) == []  # both slots taken
    finish(queue, first[:1])
    assert [c.id for c in claim(queue)] == ids[2:3]


def test_group_running_takes_the_next_job_whose_group_is_free(queue: durable.Queue) -> None:
    a1, a2 = queue.enqueue_many(["a1", "a2"], group="a")
    b1, b2 = queue.enqueue_many(["b1", "b2"], group="b")
    loose = queue.enqueue("no group")
    queue.set_limits(group_running=1)
    first = claim(queue)
    assert [c.id for c in first] == [a1, b1, loose]  # one of each group; no group: no limit
    assert claim(queue) == []
    finish(queue, [c for c in first if c.id == a1])
    assert [c.id for c in claim(queue)] == [a2]
    assert b2 not in [c.id for c in claim(queue)]


def test_a_rate_counts_the_starts_of_its_window_and_says_when_it_opens(
    queue: durable.Queue,
) -> None:
    queue.enqueue_many(range(5))
    queue.set_limits(rate=(3, 3600.0))
    started = claim(queue, limit=2)
    assert len(started) == 2
    finish(queue, started)  # ended jobs still count: the rate counts starts
    assert len(claim(queue)) == 1
    assert claim(queue) == []
    backlog = backend_of(queue.store).backlog("emails")
    assert backlog.opens_in is not None
    assert 3500 < backlog.opens_in <= 3600
    queue.set_limits(rate=(5, 3600.0))  # a change counts the same starts
    assert len(claim(queue)) == 2


def test_limits_hold_back_no_job_of_a_paused_queue(queue: durable.Queue) -> None:
    queue.enqueue("job")
    queue.set_limits(max_running=1)
    queue.pause()
    assert claim(queue) == []
    queue.resume()
    assert len(claim(queue)) == 1


# -- Snooze ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("after", "error"), [(-1, ValueError), ("1", TypeError), (float("nan"), ValueError)]
)
def test_a_bad_snooze_names_after(after: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="after"):
        durable.Snooze(after)  # type: ignore[arg-type]


def run_worker(worker: durable.QueueWorker) -> threading.Thread:
    thread = threading.Thread(target=worker.start, name=f"routine:{worker.name}")
    thread.start()
    return thread


def stop(*workers: tuple[durable.QueueWorker, threading.Thread]) -> None:
    for worker, _ in workers:
        worker.stop()
    for _, thread in workers:
        thread.join(WAIT)
        assert not thread.is_alive()


def test_a_snoozed_job_is_due_again_after_its_wait_with_its_attempt_given_back(
    queue: durable.Queue,
) -> None:
    runs: list[tuple[int, int, float]] = []

    def handle(job: durable.Job) -> str:
        runs.append((job.attempts, job.snoozes, time.monotonic()))
        if job.snoozes < 3:
            raise durable.Snooze(0.1)
        return "done"

    job_id = queue.enqueue("job", max_attempts=1)  # a spent attempt would fail it
    worker = durable.QueueWorker(queue, handle, poll_interval=0.05)
    running = (worker, run_worker(worker))
    try:
        assert poll(lambda: queue.get(job_id).state == "completed")  # type: ignore[union-attr]
    finally:
        stop(running)
    job = queue.get(job_id)
    assert job is not None
    assert (job.attempts, job.snoozes, job.result) == (1, 3, "done")
    assert [(attempts, snoozes) for attempts, snoozes, _ in runs] == [
        (1, 0),
        (1, 1),
        (1, 2),
        (1, 3),
    ]
    assert all(later[2] - earlier[2] >= 0.09 for earlier, later in itertools.pairwise(runs))
    assert worker.outcome_counts()["snoozed"] == 3


# -- wake-ups -------------------------------------------------------------------------------------


def test_a_job_that_ends_wakes_the_workers_of_other_stores_held_back_by_the_limit(
    target: Target,
) -> None:
    queues = [target.open().queue("emails") for _ in range(2)]
    queue = queues[0]
    queue.set_limits(max_running=1)
    release = threading.Event()
    started: list[tuple[int, float]] = []

    def handle(job: durable.Job) -> None:
        started.append((job.id, time.monotonic()))
        if job.payload == "first":
            assert release.wait(WAIT)

    first = queue.enqueue("first")
    workers = [durable.QueueWorker(each, handle, poll_interval=3600) for each in queues]
    running = [(worker, run_worker(worker)) for worker in workers]
    try:
        assert poll(lambda: [job_id for job_id, _ in started] == [first])
        second = queue.enqueue("second")  # wakes both; the limit holds it back
        assert poll(lambda: queue.counts()["queued"] == 1)
        released = time.monotonic()
        release.set()
        # The worker that ran the first (or the other, woken through the database) starts the
        # second at once: an hour's poll would never get there.
        assert poll(lambda: len(started) == 2), queue.counts()
        assert started[1][0] == second
        assert started[1][1] - released < WAIT
    finally:
        stop(*running)


def test_a_rate_limited_worker_wakes_when_the_window_opens(queue: durable.Queue) -> None:
    queue.set_limits(rate=(1, 0.5))
    started: list[float] = []
    worker = durable.QueueWorker(
        queue, lambda job: started.append(time.monotonic()), poll_interval=3600
    )
    queue.enqueue_many(range(3))
    running = (worker, run_worker(worker))
    try:
        assert poll(lambda: len(started) == 3), queue.counts()
    finally:
        stop(running)
    gaps = [later - earlier for earlier, later in itertools.pairwise(started)]
    assert all(0.45 <= gap < 2.0 for gap in gaps), gaps
