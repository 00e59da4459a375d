"""`QueueWorker`'s guarantees with real processes, on both backends: four workers share 2,000
jobs and run each once; a worker SIGKILLed mid-job has its job run again elsewhere within
stalled_after plus one sweep plus poll_interval; SIGTERM under a Monitor spends no attempt and
loses nothing; and (PostgreSQL) a worker rides out its connections being cut."""

from __future__ import annotations

import collections
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from routines import durable

from .conftest import Target
from .proxy import proxy_to, through
from .support import ProgramGroup, finish_program, poll
from helpers import WAIT, LogWatcher, join

# The worker program's settings (programs/worker.py).
STALLED_AFTER = 1.0
SWEEP_EVERY = STALLED_AFTER / 2
POLL_INTERVAL = 0.1


class Workers(ProgramGroup):
    """Worker processes of one test, each recording the jobs it starts; all killed at the end."""

    def __init__(self, target: Target, tmp_path: Path) -> None:
        super().__init__(tmp_path, "worker")
        self.target = target

    def start(
        self, mode: str, concurrency: int = 1, *, settings: str | None = None, queue: str = "jobs"
    ) -> subprocess.Popen[str]:
        """A worker process; `settings` (JSON) replaces the program's short intervals."""
        record = str(self.next_record())
        target = self.target
        extra = () if settings is None else (settings,)
        return self.launch(
            "worker", target.url, target.schema, queue, record, mode, str(concurrency), *extra
        )

    def starts(self) -> list[tuple[int, int]]:
        """Every (job id, attempt) any worker started, from their records."""
        return [(int(job_id), int(attempt)) for job_id, attempt in self.record_lines()]


@pytest.fixture
def workers(target: Target, tmp_path: Path) -> Iterator[Workers]:
    made = Workers(target, tmp_path)
    try:
        yield made
    finally:
        made.close()


def no_job_processing(queue: durable.Queue) -> bool:
    return queue.counts()["processing"] == 0


def test_four_worker_processes_run_each_of_2000_jobs_exactly_once(
    target: Target, workers: Workers
) -> None:
    queue = target.open().queue("jobs")
    ids = queue.enqueue_many(range(2000))
    processes = [workers.start("fast", concurrency=2) for _ in range(4)]
    assert poll(lambda: queue.counts()["completed"] == 2000, timeout=90), queue.counts()
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        out, _ = finish_program(process)
        assert ": ok" in out
    started = collections.Counter(job_id for job_id, _ in workers.starts())
    assert set(started) == set(ids)
    assert set(started.values()) == {1}, [i for i, n in started.items() if n > 1]
    assert no_job_processing(queue)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_job_whose_worker_is_sigkilled_runs_again_elsewhere_in_time(
    target: Target, workers: Workers, seed: int
) -> None:
    queue = target.open().queue("jobs")
    victim = workers.start("hang")
    job_id = queue.enqueue("the job")
    assert poll(lambda: (job := queue.get(job_id)) is not None and job.state == "processing")
    survivor = workers.start("fast")
    threading.Event().wait(random.Random(seed).uniform(0.0, 0.5))  # some moment mid-job
    victim.kill()
    killed = time.monotonic()
    victim.communicate(timeout=WAIT)

    def completed() -> durable.Job | None:
        job = queue.get(job_id)
        return job if job is not None and job.state == "completed" else None

    bound = STALLED_AFTER + SWEEP_EVERY + POLL_INTERVAL
    job = poll(completed, timeout=bound + WAIT)
    took = time.monotonic() - killed
    assert job is not None, queue.get(job_id)
    assert (job.attempts, job.resets) == (2, 1)
    # From the kill: its last heartbeat ages stalled_after, one sweep finds it, a poll claims it;
    # the margin is for the new attempt's handler and the test's own polling.
    assert took < bound + 1.5, f"it took {took:.2f}s, more than {bound}s and a margin"
    assert no_job_processing(queue)
    survivor.send_signal(signal.SIGTERM)
    finish_program(survivor)


def test_sigterm_under_a_monitor_hands_every_running_job_back_without_spending_it(
    target: Target, workers: Workers
) -> None:
    queue = target.open().queue("jobs")
    process = workers.start("interrupt", concurrency=3)
    ids = queue.enqueue_many(["a", "b", "c", "d"])
    assert poll(lambda: len(workers.starts()) == 3)  # every handler busy
    process.send_signal(signal.SIGTERM)
    out, _ = finish_program(process)
    assert "shutdown (received SIGTERM)" in out
    assert ": ok" in out
    jobs = [queue.get(job_id) for job_id in ids]
    assert [(job.state, job.attempts) for job in jobs if job] == [("queued", 0)] * 4
    assert len(workers.starts()) == 3


def test_a_worker_rides_out_its_connections_being_cut(postgres_target: Target) -> None:
    direct = postgres_target.open().queue("jobs")
    seen: list[int] = []
    lock = threading.Lock()

    def handle(job: durable.Job) -> None:
        with lock:
            seen.append(job.id)

    with proxy_to(postgres_target.url) as proxy:
        url = through(proxy, postgres_target.url)
        store = durable.open_store(url, timeout=0.5, schema=postgres_target.schema)
        worker = durable.QueueWorker(
            store.queue("jobs"),
            handle,
            concurrency=2,
            poll_interval=0.1,
            heartbeat_interval=0.2,
            stalled_after=2.0,
        )
        thread = threading.Thread(target=worker.start)
        with LogWatcher() as logs:
            thread.start()
            try:
                first = direct.enqueue_many(range(20))
                assert poll(lambda: direct.counts()["completed"] == 20)
                proxy.cut()
                logs.wait_for("trying again until the store is back")
                second = direct.enqueue_many(range(20, 40))  # straight to the database
                proxy.resume()
                assert poll(lambda: direct.counts()["completed"] == 40, timeout=WAIT * 3)
                logs.wait_for("works again")
            finally:
                worker.stop()
                join(thread)
                store.close()
    counted = collections.Counter(seen)
    assert set(counted) == set(first + second)
    assert set(counted.values()) == {1}
    assert no_job_processing(direct)


def test_jobs_claimed_ahead_by_a_sigkilled_worker_run_elsewhere_with_no_attempt_spent(
    target: Target, workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A full buffer: one job running, the worker's prefetch (4) claimed ahead and never started.
    monkeypatch.setenv("ROUTINES_TEST_PREFETCH", "4")
    queue = target.open().queue("jobs")
    victim = workers.start("hang")
    ids = queue.enqueue_many(range(5))
    assert poll(lambda: queue.counts()["processing"] == 5)
    assert len(workers.starts()) == 1
    [(running, _)] = workers.starts()
    assert poll(lambda: (job := queue.get(running)) is not None and job.started_at is not None)
    victim.kill()  # its start recorded: an attempt spent, a reset counted
    victim.communicate(timeout=WAIT)
    survivor = workers.start("fast")
    assert poll(lambda: queue.counts()["completed"] == 5, timeout=STALLED_AFTER + 2 * WAIT)
    jobs = {job_id: queue.get(job_id) for job_id in ids}
    assert {
        job_id: (job.attempts, job.resets) for job_id, job in jobs.items() if job is not None
    } == {job_id: (2, 1) if job_id == running else (1, 0) for job_id in ids}
    survivor.send_signal(signal.SIGTERM)
    finish_program(survivor)


def test_sigterm_with_a_full_buffer_hands_every_claimed_job_back_unspent(
    target: Target, workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROUTINES_TEST_PREFETCH", "4")
    queue = target.open().queue("jobs")
    process = workers.start("interrupt", concurrency=2)
    ids = queue.enqueue_many(range(6))  # two running, four claimed ahead
    assert poll(lambda: queue.counts()["processing"] == 6)
    assert poll(lambda: len(workers.starts()) == 2)
    process.send_signal(signal.SIGTERM)
    out, _ = finish_program(process)
    assert ": ok" in out
    jobs = [queue.get(job_id) for job_id in ids]
    assert [(job.state, job.attempts, job.resets) for job in jobs if job] == [("queued", 0, 0)] * 6
