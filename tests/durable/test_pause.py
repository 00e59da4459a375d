"""Pausing a queue, on both backends (spec/OPERATIONS.md, section 3): stored and fleet-wide,
enforced in the claim itself, running jobs finish, enqueue goes on, resume wakes the workers;
seen in `store.queues()`, in a worker's status, and (tests/test_prometheus.py) the metrics.
Four worker processes show that no claim starts after the pause, by the database's clock."""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from routines import durable
from routines.durable._model import Claimer

from .conftest import Target
from .support import ProgramGroup, backend_of, finish_program, poll
from helpers import WAIT


@pytest.fixture
def other(target: Target) -> durable.Queue:
    """The same queue through a store of its own: as another process sees it."""
    return target.open().queue("emails")


def test_pause_is_stored_and_seen_by_every_store(
    queue: durable.Queue, other: durable.Queue
) -> None:
    assert (queue.paused, other.paused) == (False, False)
    queue.pause()
    assert (queue.paused, other.paused) == (True, True)
    assert queue.store.queue("sms").paused is False  # one queue's pause, not the store's
    other.resume()
    assert (queue.paused, other.paused) == (False, False)


def test_pause_and_resume_are_idempotent(queue: durable.Queue) -> None:
    queue.resume()  # never paused: nothing to undo, and no queue made of it
    assert queue.store.queues() == []
    queue.pause()
    queue.pause()
    assert queue.paused
    queue.resume()
    queue.resume()
    assert not queue.paused


def test_a_paused_queue_still_takes_jobs_and_no_claim_takes_them(queue: durable.Queue) -> None:
    queue.pause()
    job_id = queue.enqueue("kept")
    assert queue.enqueue_many([1, 2]) != []
    backend = backend_of(queue.store)
    claimer = Claimer("w", 3600.0, 3)
    assert backend.claim("emails", claimer, 10) == []
    assert queue.counts()["queued"] == 3
    queue.resume()
    assert job_id in [claim.id for claim in backend.claim("emails", claimer, 10)]


def run_worker(worker: durable.QueueWorker) -> threading.Thread:
    thread = threading.Thread(target=worker.start, name=f"routine:{worker.name}")
    thread.start()
    return thread


def test_a_worker_finishes_its_running_job_claims_nothing_more_and_says_paused(
    queue: durable.Queue,
) -> None:
    started: list[int] = []
    release = threading.Event()

    def handle(job: durable.Job) -> None:
        started.append(job.id)
        assert release.wait(WAIT)

    first = queue.enqueue("running when paused")
    worker = durable.QueueWorker(queue, handle, poll_interval=3600)
    thread = run_worker(worker)
    try:
        assert poll(lambda: started == [first])
        queue.pause()
        waiting = queue.enqueue_many(range(3))
        release.set()  # the running job finishes
        said = poll(lambda: (status := worker.status()).paused and status.queued == 3)
        assert said, f"the worker never said paused with 3 waiting: {worker.status()}"
        assert worker.status().state == "running"
        assert poll(lambda: queue.get(first).state == "completed")  # type: ignore[union-attr]
        assert started == [first]
        assert queue.counts()["queued"] == 3
        queue.resume()  # wakes it: it polls once an hour
        assert poll(lambda: queue.counts()["completed"] == 4), queue.counts()
        assert started == [first, *waiting]
        assert not worker.status().paused
    finally:
        worker.stop()
        thread.join(WAIT)
    assert not thread.is_alive()


def test_pause_and_resume_reach_the_workers_of_other_stores(
    target: Target, other: durable.Queue
) -> None:
    """PostgreSQL announces both (NOTIFY): a worker that polls once a minute hears them at once.
    SQLite has no announcements across stores: its workers see them within poll_interval."""
    poll_interval = 60.0 if target.kind == "postgres" else 0.05
    ran = threading.Event()
    worker = durable.QueueWorker(other, lambda job: ran.set(), poll_interval=poll_interval)
    thread = run_worker(worker)
    queue = target.open().queue("emails")
    try:
        assert poll(lambda: worker.status().state == "running")
        queue.pause()
        assert poll(lambda: worker.status().paused), "the pause did not reach the worker"
        queue.enqueue("held")
        queue.resume()
        assert ran.wait(WAIT), "the resume did not reach the worker"
        assert not worker.status().paused
    finally:
        worker.stop()
        thread.join(WAIT)
    assert not thread.is_alive()


# -- four worker processes ----------------------------------------------------------------------


class Workers(ProgramGroup):
    """Worker processes (programs/worker.py, slow mode: each job takes half a second), each
    recording the jobs it starts and its paused status."""

    def __init__(self, target: Target, directory: Path) -> None:
        super().__init__(directory, "worker")
        self.target = target

    def start(self) -> subprocess.Popen[str]:
        record = self.next_record()
        pauses = str(record.with_suffix(".pauses"))
        target = self.target
        return self.launch(
            "worker", target.url, target.schema, "emails", str(record), "slow", "1", "0.1", pauses
        )

    def paused(self) -> list[bool]:
        """Whether each worker's status last said paused."""
        said = []
        for number in range(len(self.processes)):
            path = self.directory / f"worker-{number}.pauses"
            lines = path.read_text().split() if path.exists() else []
            said.append(bool(lines) and lines[-1] == "paused")
        return said


@pytest.fixture
def workers(target: Target, tmp_path: Path) -> Iterator[Workers]:
    made = Workers(target, tmp_path)
    try:
        yield made
    finally:
        made.close()


def test_four_worker_processes_stop_claiming_at_the_pause_and_go_on_at_the_resume(
    target: Target, workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Claiming nothing ahead, so that every job a worker starts is one it claimed then (jobs
    # claimed ahead are given back at the pause: test_worker.py).
    monkeypatch.setenv("ROUTINES_TEST_PREFETCH", "0")
    store = target.open()
    queue = store.queue("emails")
    ids = queue.enqueue_many(range(16))
    for _ in range(4):
        workers.start()
    assert poll(lambda: queue.counts()["processing"] == 4), queue.counts()
    queue.pause()
    paused_at = backend_of(store).now()  # after pause() returned, on the database's clock
    running = [job.id for job in queue.jobs(state="processing")]
    # Each worker claimed again after the pause (its running job done) and found it paused.
    assert poll(lambda: all(workers.paused()), timeout=2 * WAIT), workers.paused()
    assert poll(lambda: queue.counts()["processing"] == 0)
    started = [job for job in queue.jobs() if job.started_at is not None]
    late = [(job.id, job.started_at) for job in started if job.started_at > paused_at]
    assert late == [], f"claimed after the pause at {paused_at}: {late}"
    assert all(queue.get(job_id).state == "completed" for job_id in running)  # type: ignore[union-attr]
    assert len(workers.record_lines()) == len(started) < 16
    assert queue.counts()["queued"] == 16 - len(started)
    queue.resume()
    assert poll(lambda: queue.counts()["completed"] == 16, timeout=4 * WAIT), queue.counts()
    assert not any(workers.paused())
    assert sorted(int(job_id) for job_id, _ in workers.record_lines()) == ids
    for process in workers.processes:
        process.send_signal(signal.SIGTERM)
    for process in workers.processes:
        out, _ = finish_program(process)
        assert ": ok" in out
