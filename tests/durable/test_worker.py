"""`QueueWorker` in this process, on both backends: outcomes, retries, cancel, max_runtime, a lost
claim, stop without spending an attempt, wake-ups, the stalled sweep, status, and life under a
Monitor, a restart policy and a CombinedRoutine. (Real processes: test_worker_processes.py.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

import routines
from routines import durable
from routines.durable._model import Claimer

from .conftest import Target
from .support import backend_of, poll
from helpers import WAIT, EventLog, LogWatcher, join


@pytest.fixture
def store(target: Target) -> durable.Store:
    """A store whose calls wait at most a second: small stalled_after values are allowed."""
    return target.open(timeout=1.0)


FAST = {"poll_interval": 0.05, "heartbeat_interval": 0.1, "stalled_after": 1.5}
QUIET = {"poll_interval": 30.0, "heartbeat_interval": 0.1, "stalled_after": 1.5}


class Handler:
    """Records each job it is given; `then` decides what it does with it."""

    def __init__(self, then: Callable[[durable.Job], object] = lambda job: "done") -> None:
        self.then = then
        self.jobs: list[durable.Job] = []
        self.started = threading.Semaphore(0)
        self.lock = threading.Lock()

    def __call__(self, job: durable.Job) -> object:
        with self.lock:
            self.jobs.append(job)
        self.started.release()
        return self.then(job)

    def wait_started(self, count: int = 1) -> None:
        for _ in range(count):
            assert self.started.acquire(timeout=WAIT), f"fewer than {count} jobs started"


class Running:
    """A worker started on a thread; `finish()` stops it and returns what start() raised."""

    def __init__(self, worker: durable.QueueWorker) -> None:
        self.worker = worker
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._start, name="test-worker")
        self.thread.start()

    def _start(self) -> None:
        try:
            self.worker.start()
        except BaseException as exc:
            self.error = exc

    def finish(self) -> BaseException | None:
        self.worker.stop()
        join(self.thread)
        return self.error


@pytest.fixture
def run() -> Iterator[Callable[[durable.QueueWorker], Running]]:
    started: list[Running] = []

    def start(worker: durable.QueueWorker) -> Running:
        started.append(Running(worker))
        return started[-1]

    yield start
    for each in started:
        each.worker.stop()
        each.thread.join(WAIT * 2)


def final(queue: durable.Queue, job_id: int, timeout: float = WAIT) -> durable.Job:
    """The job once it is in a final state (polled, bounded)."""

    def done() -> durable.Job | None:
        job = queue.get(job_id)
        return job if job is not None and job.state in ("completed", "failed", "canceled") else None

    job = poll(done, timeout=timeout)
    assert job is not None, f"job {job_id} is not final within {timeout}s: {queue.get(job_id)}"
    return job


def state_of(queue: durable.Queue, job_id: int) -> str:
    job = queue.get(job_id)
    assert job is not None
    return job.state


def test_a_job_is_completed_with_what_the_handler_returned(
    queue: durable.Queue, run: Callable[..., Running]
) -> None:
    handler = Handler(lambda job: {"sent": job.payload["to"]})
    run(durable.QueueWorker(queue, handler, **FAST))
    job = final(queue, queue.enqueue({"to": "ada@example.com"}))
    assert (job.state, job.result, job.attempts) == ("completed", {"sent": "ada@example.com"}, 1)
    assert handler.jobs[0].id == job.id


def test_an_enqueue_in_this_process_wakes_an_idle_worker_at_once(
    queue: durable.Queue, run: Callable[..., Running]
) -> None:
    handler = Handler()
    worker = durable.QueueWorker(queue, handler, **QUIET)
    run(worker)
    poll(lambda: worker.status().state == "running")
    began = time.monotonic()
    queue.enqueue("wake up")
    handler.wait_started()
    assert time.monotonic() - began < QUIET["poll_interval"] / 2  # woken, not polled


def test_jobs_run_on_concurrency_named_handler_threads(
    queue: durable.Queue, run: Callable[..., Running]
) -> None:
    release = threading.Event()
    names: set[str] = set()

    def handle(job: durable.Job) -> None:
        names.add(threading.current_thread().name)
        release.wait(WAIT)

    handler = Handler(handle)
    run(durable.QueueWorker(queue, handler, name="mail", concurrency=3, **FAST))
    queue.enqueue_many(range(3))
    handler.wait_started(3)
    release.set()
    assert names == {"routine:mail:handler-1", "routine:mail:handler-2", "routine:mail:handler-3"}


def test_retry_is_due_again_after_its_delay_and_fails_after_max_attempts(
    queue: durable.Queue, run: Callable[..., Running]
) -> None:
    handler = Handler(lambda job: (_ for _ in ()).throw(durable.Retry(after=0.05)))
    run(durable.QueueWorker(queue, handler, **FAST))
    job = final(queue, queue.enqueue("x", max_attempts=3))
    assert (job.state, job.attempts) == ("failed", 3)
    assert "Retry" in (job.last_error or "")
    assert len(handler.jobs) == 3


def test_an_exception_is_errored_with_its_traceback_and_the_backoff(
    queue: durable.Queue, run: Callable[..., Running]
) -> None:
    def handle(job: durable.Job) -> None:
        raise ValueError("smtp said no")

    handler = Handler(handle)
    run(durable.QueueWorker(queue, handler, retry_backoff=60, **FAST))
    job_id = queue.enqueue("x")
    handler.wait_started()
    job = poll(lambda: (j := queue.get(job_id)) and j.state == "errored" and j)
    assert job
    assert job.last_error is not None
    assert job.last_error.startswith("Traceback")
    assert "ValueError: smtp said no" in job.last_error
    assert job.started_at is not None
    assert (job.run_after - job.started_at).total_seconds() > 55  # the first backoff: 60 s


def test_fail_fails_at_once_with_its_message(
    queue: durable.Queue, run: Callable[..., Running]
) -> None:
    handler = Handler(lambda job: (_ for _ in ()).throw(durable.Fail("bad address")))
    run(durable.QueueWorker(queue, handler, **FAST))
    job = final(queue, queue.enqueue("x", max_attempts=5))
    assert (job.state, job.attempts, job.last_error) == ("failed", 1, "bad address")


def test_a_result_that_is_not_json_fails_the_job_with_a_type_error(
    queue: durable.Queue, run: Callable[..., Running]
) -> None:
    handler = Handler(lambda job: object())
    with LogWatcher() as logs:
        run(durable.QueueWorker(queue, handler, **FAST))
        job = final(queue, queue.enqueue("x"))
        logs.wait_for("not JSON")
    assert job.state == "failed"
    assert (job.last_error or "").startswith("TypeError")


def test_cancel_of_a_processing_job_stops_its_handler_and_ends_it_canceled(
    queue: durable.Queue, run: Callable[..., Running]
) -> None:
    def handle(job: durable.Job) -> str:
        while not routines.stopping():
            routines.sleep(0.01)
        return "noticed"

    handler = Handler(handle)
    run(durable.QueueWorker(queue, handler, **FAST))
    job_id = queue.enqueue("x")
    handler.wait_started()
    assert queue.cancel(job_id)
    job = final(queue, job_id)
    assert job.state == "canceled"


def test_max_runtime_stops_the_handler_and_errors_the_attempt(
    queue: durable.Queue, run: Callable[..., Running]
) -> None:
    def handle(job: durable.Job) -> str:
        routines.sleep(WAIT)  # returns early once stopping
        return "returned"

    handler = Handler(handle)
    with LogWatcher():
        run(durable.QueueWorker(queue, handler, max_runtime=0.2, retry_backoff=60, **FAST))
        job_id = queue.enqueue("x")
        job = poll(lambda: (j := queue.get(job_id)) and j.state == "errored" and j)
    assert job
    assert "max_runtime of 0.2s passed" in (job.last_error or "")


def test_a_lost_claim_stops_the_handler_and_writes_nothing(
    target: Target, queue: durable.Queue, run: Callable[..., Running]
) -> None:
    def handle(job: durable.Job) -> str:
        routines.sleep(WAIT)
        return "too late"

    handler = Handler(handle)
    with LogWatcher() as logs:
        run(durable.QueueWorker(queue, handler, **FAST))
        job_id = queue.enqueue("x")
        handler.wait_started()
        _take_the_row(target, job_id)
        logs.wait_for("claim is gone")
        logs.wait_for("its claim was lost")
    job = queue.get(job_id)
    assert job is not None
    assert job.result is None  # the handler's "too late" was never written


def test_a_job_put_back_while_its_handler_runs_may_run_again_in_the_same_worker(
    target: Target, queue: durable.Queue, run: Callable[..., Running]
) -> None:
    # As after an outage longer than stalled_after: a sweep puts back a job this worker is
    # still running, and its other handler claims it again beside the first.
    release = threading.Event()
    handler = Handler(lambda job: release.wait(WAIT) and "done")
    with LogWatcher() as logs:
        running = run(durable.QueueWorker(queue, handler, concurrency=2, **FAST))
        job_id = queue.enqueue("x")
        handler.wait_started()
        assert poll(lambda: (job := queue.get(job_id)) is not None and job.attempts == 1)
        _take_the_row(target, job_id, hold=False)  # once its start is written
        handler.wait_started()
        release.set()
        job = final(queue, job_id)
        logs.wait_for("its claim was lost")
        assert running.finish() is None
    assert [each.attempts for each in handler.jobs] == [1, 2]
    assert (job.state, job.result) == ("completed", "done")


def test_an_error_message_with_a_nul_character_is_stored_escaped(
    queue: durable.Queue, run: Callable[..., Running]
) -> None:
    def handle(job: durable.Job) -> None:
        raise ValueError("bad byte \x00 and a lone \ud800 in the input")

    run(durable.QueueWorker(queue, Handler(handle), **FAST))
    job = final(queue, queue.enqueue("x", max_attempts=1))
    assert job.state == "failed"
    assert "ValueError: bad byte \\x00 and a lone \\ud800 in the input" in (job.last_error or "")


def _take_the_row(target: Target, job_id: int, *, hold: bool = True) -> None:
    """Take the job from under its worker, as another worker's stalled sweep would (queued,
    token cleared), and with `hold` out of reach of a claim for an hour."""
    if target.kind == "sqlite":
        import sqlite3

        path = target.url.removeprefix("sqlite:///")
        later = " + 3600000000" if hold else ""
        with sqlite3.connect(path, timeout=WAIT) as connection:
            connection.execute(
                f"UPDATE {target.schema}_jobs SET state = 'queued', claim_token = NULL, "
                f"run_after = run_after{later} WHERE id = ?",
                [job_id],
            )
        return
    import psycopg

    later = "now() + interval '1 hour'" if hold else "now()"
    with psycopg.connect(target.url, autocommit=True) as connection:
        connection.execute(
            f"UPDATE \"{target.schema}\".jobs SET state = 'queued', claim_token = NULL, "
            f"run_after = {later} WHERE id = %s",
            [job_id],
        )


def test_a_handler_that_returns_after_the_stop_completes_its_job(
    queue: durable.Queue, run: Callable[..., Running]
) -> None:
    saw_stop = threading.Event()

    def handle(job: durable.Job) -> str:
        routines.sleep(WAIT)
        saw_stop.set()
        return "finished the work"

    handler = Handler(handle)
    running = run(durable.QueueWorker(queue, handler, **FAST))
    job_id = queue.enqueue("x")
    handler.wait_started()
    assert running.finish() is None
    assert saw_stop.is_set()
    job = queue.get(job_id)
    assert job is not None
    assert (job.state, job.result, job.attempts) == ("completed", "finished the work", 1)


def test_a_handler_that_raises_after_the_stop_hands_its_job_back_without_spending_it(
    queue: durable.Queue, run: Callable[..., Running]
) -> None:
    def handle(job: durable.Job) -> None:
        if routines.sleep(WAIT):
            raise durable.Retry  # even a Retry: a stop never spends an attempt

    handler = Handler(handle)
    running = run(durable.QueueWorker(queue, handler, **FAST))
    job_id = queue.enqueue("x")
    handler.wait_started()
    assert running.finish() is None
    job = queue.get(job_id)
    assert job is not None
    assert (job.state, job.attempts) == ("queued", 0)
    assert running.worker.status().runs == 0  # a hand-back is not a run


def test_fail_after_the_stop_still_fails(queue: durable.Queue, run: Callable[..., Running]) -> None:
    def handle(job: durable.Job) -> None:
        routines.sleep(WAIT)
        raise durable.Fail("gave up")

    handler = Handler(handle)
    running = run(durable.QueueWorker(queue, handler, **FAST))
    job_id = queue.enqueue("x")
    handler.wait_started()
    running.finish()
    assert state_of(queue, job_id) == "failed"


def test_the_stalled_sweep_puts_back_a_dead_workers_job_and_runs_it(
    queue: durable.Queue, run: Callable[..., Running]
) -> None:
    job_id = queue.enqueue("orphan")
    dead = backend_of(queue.store).claim(
        "emails", Claimer("dead:1:x", 0.2, 3), 1
    )  # never heartbeats
    assert [claim.id for claim in dead] == [job_id]
    handler = Handler()
    with LogWatcher() as logs:
        run(durable.QueueWorker(queue, handler, **FAST))
        job = final(queue, job_id)
        logs.wait_for("stalled sweep put back")
    assert (job.state, job.resets, job.attempts) == ("completed", 1, 2)


def test_status_counts_attempts_failures_and_ready_jobs(
    queue: durable.Queue, run: Callable[..., Running]
) -> None:
    outcomes = iter(["ok", durable.Fail("no"), "ok"])

    def handle(job: durable.Job) -> object:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    worker = durable.QueueWorker(queue, Handler(handle), name="mail", **FAST)
    assert worker.status().state == "idle"
    running = run(worker)
    ids = queue.enqueue_many(["a", "b", "c"])
    for job_id in ids:
        final(queue, job_id)
    status = worker.status()
    assert (status.name, status.state, status.runs, status.failures) == ("mail", "running", 3, 1)
    assert status.last_error == "Fail: no"
    assert status.last_run_duration is not None
    running.finish()
    assert worker.status().state == "stopped"


def test_status_says_limited_while_its_queue_has_limits(
    queue: durable.Queue, run: Callable[..., Running]
) -> None:
    worker = durable.QueueWorker(queue, Handler(), **FAST)
    assert not worker.status().limited
    run(worker)
    queue.set_limits(max_running=1)
    assert poll(lambda: worker.status().limited), worker.status()
    assert worker.status().state == "running"
    done = final(queue, queue.enqueue("under the limit"))
    assert done.state == "completed"
    queue.set_limits()  # every limit removed
    assert poll(lambda: not worker.status().limited), worker.status()


def test_it_runs_under_a_monitor_and_a_base_exception_restarts_it_by_policy(
    queue: durable.Queue,
) -> None:
    fatal_once = iter([True])

    def handle(job: durable.Job) -> str:
        if next(fatal_once, False):
            raise KeyboardInterrupt
        return "second time"

    events = EventLog()
    worker = durable.QueueWorker(queue, handle, name="mail", **FAST)
    policy = routines.RestartPolicy(backoff=0, max_backoff=0, jitter=0)
    monitor = routines.Monitor(worker, signals=(), restart=policy, on_event=events)
    with LogWatcher():
        monitor.start()
        job_id = queue.enqueue("x")
        events.wait_for("mail", "restarting")
        job = final(queue, job_id)
        (status,) = monitor.status()
        monitor.shutdown()
        report = monitor.wait(WAIT * 2)
    assert (job.state, job.result, job.attempts) == ("completed", "second time", 1)
    assert status.restarts == 1
    assert report is not None
    assert report.outcomes[0].state == "stopped"


def test_it_runs_in_a_combined_routine(queue: durable.Queue) -> None:
    handler = Handler()
    worker = durable.QueueWorker(queue, handler, **FAST)
    group = routines.CombinedRoutine(worker, routines.NoopRoutine())
    thread = threading.Thread(target=group.start)
    thread.start()
    try:
        final(queue, queue.enqueue("x"))
    finally:
        group.stop()
        join(thread)


def test_a_stop_before_start_returns_at_once_without_claiming(queue: durable.Queue) -> None:
    job_id = queue.enqueue("x")
    worker = durable.QueueWorker(queue, Handler(), **FAST)
    worker.stop()
    worker.start()
    assert state_of(queue, job_id) == "queued"


# -- claimed ahead (prefetch) ---------------------------------------------------------------------


def test_jobs_claimed_ahead_are_held_unstarted_and_kept_alive_by_heartbeats(
    queue: durable.Queue, run: Callable[..., Running]
) -> None:
    release = threading.Event()
    handler = Handler(lambda job: release.wait(WAIT))
    ids = queue.enqueue_many([1, 2, 3])
    running = run(durable.QueueWorker(queue, handler, prefetch=2, **FAST))
    handler.wait_started()
    assert poll(lambda: queue.counts()["processing"] == 3)
    ahead = [job for job in map(queue.get, ids[1:]) if job is not None]
    # Held, not started: no attempt counted, no start time.
    assert [(job.state, job.attempts, job.started_at) for job in ahead] == [
        ("processing", 0, None)
    ] * 2
    beats = {job.id: job.heartbeat_at for job in ahead}
    assert poll(
        lambda: all(
            (job := queue.get(job_id)) is not None and job.heartbeat_at != beat
            for job_id, beat in beats.items()
        )
    ), "the jobs claimed ahead are not heartbeated"
    release.set()
    assert [final(queue, job_id).attempts for job_id in ids] == [1, 1, 1]
    assert running.finish() is None


def test_a_stop_hands_back_the_jobs_claimed_ahead_with_no_attempt_spent(
    queue: durable.Queue, run: Callable[..., Running]
) -> None:
    handler = Handler(lambda job: routines.sleep(WAIT))  # returns early on the stop
    ids = queue.enqueue_many([1, 2, 3, 4])
    running = run(durable.QueueWorker(queue, handler, prefetch=3, **FAST))
    handler.wait_started()
    assert poll(lambda: queue.counts()["processing"] == 4)
    assert running.finish() is None
    jobs = [queue.get(job_id) for job_id in ids]
    # The running one completed (it returned on the stop); the three ahead went back unspent.
    assert [(job.state, job.attempts) for job in jobs if job] == [
        ("completed", 1),
        ("queued", 0),
        ("queued", 0),
        ("queued", 0),
    ]


def test_a_pause_gives_back_the_jobs_claimed_ahead(
    queue: durable.Queue, run: Callable[..., Running]
) -> None:
    release = threading.Event()
    handler = Handler(lambda job: release.wait(WAIT))
    first, *ahead = queue.enqueue_many([1, 2, 3])
    run(durable.QueueWorker(queue, handler, prefetch=2, **FAST))
    handler.wait_started()
    assert poll(lambda: queue.counts()["processing"] == 3)
    queue.pause()
    assert poll(lambda: queue.counts()["queued"] == 2), queue.counts()
    release.set()
    assert final(queue, first).state == "completed"
    assert [(job.state, job.attempts) for job in map(queue.get, ahead) if job] == [
        ("queued", 0)
    ] * 2
    assert [job.id for job in handler.jobs] == [first]


def test_a_job_claimed_ahead_whose_cancel_is_asked_ends_canceled_unstarted(
    queue: durable.Queue, run: Callable[..., Running]
) -> None:
    release = threading.Event()
    handler = Handler(lambda job: release.wait(WAIT))
    first, second = queue.enqueue_many([1, 2])
    run(durable.QueueWorker(queue, handler, prefetch=1, **FAST))
    handler.wait_started()
    assert poll(lambda: state_of(queue, second) == "processing")
    assert queue.cancel(second)
    job = final(queue, second)
    assert (job.state, job.attempts) == ("canceled", 0)
    release.set()
    assert final(queue, first).state == "completed"
    assert [job.id for job in handler.jobs] == [first]


def test_the_stalled_sweep_gives_back_unstarted_jobs_without_a_reset_or_an_attempt(
    store: durable.Store, queue: durable.Queue
) -> None:
    backend = backend_of(store)
    started, ahead = queue.enqueue_many([1, 2])
    [running] = backend.claim("emails", Claimer("dead:1:x", 0.001, 0), 1)
    assert running.id == started
    [claimed_ahead] = backend.exchange("emails", Claimer("dead:1:x", 0.001, 0), limit=1)[1]
    assert claimed_ahead.id == ahead
    swept: set[int] = set()

    def both_swept() -> bool:
        swept.update(reset.id for reset in backend.sweep_stalled("emails"))
        return swept == {started, ahead}

    assert poll(both_swept)
    died, unstarted = queue.get(started), queue.get(ahead)
    assert died is not None
    assert unstarted is not None
    assert (died.state, died.resets) == ("failed", 1)  # max_resets=0: its first death ends it
    assert (unstarted.state, unstarted.attempts, unstarted.resets) == ("queued", 0, 0)


def test_long_jobs_are_not_claimed_ahead_beyond_what_the_handlers_will_reach(
    queue: durable.Queue, run: Callable[..., Running]
) -> None:
    # Without prefetch, a worker holds about what its handlers finish during one of its rounds
    # (at most 8 per handler): for jobs far longer than a round, one each at most, so that other
    # workers get the rest. (Until a job's time is measured it holds one per handler.)
    handler = Handler(lambda job: routines.sleep(0.05))  # each job takes its time
    ids = queue.enqueue_many(range(12))
    run(durable.QueueWorker(queue, handler, concurrency=2, **FAST))  # at most 16 ahead
    held = []
    while len(held) < 500 and queue.counts()["completed"] < len(ids):
        held.append(queue.counts()["processing"])
    for job_id in ids:
        final(queue, job_id)
    assert max(held) <= 4, held  # two running, at most two ahead, never the 16 allowed
