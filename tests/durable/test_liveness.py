"""Liveness marks and doorbells (issue 32), with real processes on both backends.

A worker SIGKILLed mid-job has its job started elsewhere within 2 s at the default settings (its
process's mark is free at once, where its heartbeat would take `stalled_after`); a worker
frozen by SIGSTOP keeps its mark, so only `stalled_after` takes its job, and not before; a
worker whose liveness session is cut while it lives loses its jobs to a sweeper and its late
outcomes are refused by the claim token, so each job ends once; and on SQLite an enqueue rings
the doorbell of an idle worker in another process, which polls only once a minute.
"""

from __future__ import annotations

import collections
import functools
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from routines import durable
from routines._flag import Flag
from routines.durable._model import Claimer, has_mark, holder_id, marked_holder_id
from routines.durable._sqlite_host import FileMark, HostDirectory, SocketDoorbell

from .conftest import Target
from .proxy import proxy_to, through
from .support import backend_of, driver_of, finish_program, path_of, poll
from .test_worker_processes import Workers
from helpers import WAIT, LogWatcher, join

# The library's defaults, but for the store's timeout: a worker process at these recovers a
# killed worker's job by its mark alone (stalled_after is 30 s).
DEFAULTS = "{}"
# A frozen worker is taken for dead by its heartbeat: stalled after 3 s, while the survivor
# tests marks every second.
FROZEN_STALLED_AFTER = 3.0
FROZEN = '{"timeout": 1.0, "poll_interval": 0.1, "heartbeat_interval": 0.5, "stalled_after": 3.0}'
ODD_QUEUE = ("q/ü ' \\ %s " * 20)[:200]  # a queue name of the longest length, of odd characters


@contextmanager
def worker_processes(target: Target, tmp_path: Path) -> Iterator[Workers]:
    """Worker processes, all killed at the end. A killed worker's doorbell stays until an
    enqueue finds it stale: where the database's path is too long for a socket's address, that
    is in the temporary directory, removed here."""
    made = Workers(target, tmp_path)
    try:
        yield made
    finally:
        made.close()
        if target.kind == "sqlite":
            bell = HostDirectory(str(path_of(target)), target.schema).bell
            if bell is not None and not Path(bell).is_relative_to(tmp_path):
                shutil.rmtree(bell, ignore_errors=True)


@pytest.fixture
def workers(target: Target, tmp_path: Path) -> Iterator[Workers]:
    with worker_processes(target, tmp_path) as made:
        yield made


@pytest.fixture
def sqlite_workers(sqlite_target: Target, tmp_path: Path) -> Iterator[Workers]:
    with worker_processes(sqlite_target, tmp_path) as made:
        yield made


def processing(queue: durable.Queue, job_id: int) -> durable.Job | None:
    job = queue.get(job_id)
    return job if job is not None and job.state == "processing" else None


def completed(queue: durable.Queue, job_id: int) -> bool:
    job = queue.get(job_id)
    return job is not None and job.state == "completed"


def test_a_sigkilled_workers_job_starts_elsewhere_within_2s_at_the_default_settings(
    target: Target, workers: Workers
) -> None:
    queue = target.open().queue("jobs")
    victim = workers.start("hang", settings=DEFAULTS)
    job_id = queue.enqueue("the job")
    held = poll(lambda: processing(queue, job_id))
    assert held is not None
    assert held.worker is not None
    assert has_mark(held.worker), held.worker  # claimed under its process's liveness mark
    survivor = workers.start("hang", settings=DEFAULTS)
    victim.kill()
    killed = time.monotonic()
    victim.communicate(timeout=WAIT)

    again = poll(lambda: (job := queue.get(job_id)) is not None and job.attempts == 2 and job)
    took = time.monotonic() - killed
    assert again, queue.get(job_id)
    assert took < 2.0, f"it took {took:.2f}s"
    assert (again.state, again.resets) == ("processing", 1)
    assert again.worker is not None
    assert again.worker != held.worker
    assert poll(lambda: (job_id, 2) in workers.starts())  # its handler started in the survivor
    survivor.send_signal(signal.SIGTERM)
    finish_program(survivor)


def test_a_frozen_worker_is_taken_for_dead_by_stalled_after_and_not_before(
    target: Target, workers: Workers
) -> None:
    queue = target.open().queue("jobs")
    victim = workers.start("hang", settings=FROZEN)
    job_id = queue.enqueue("the job")
    assert poll(lambda: processing(queue, job_id))
    survivor = workers.start("hang", settings=FROZEN)  # tests the victim's mark every second
    victim.send_signal(signal.SIGSTOP)
    frozen = time.monotonic()
    try:
        beats: list[durable.Job] = []

        def reclaimed() -> durable.Job | None:
            job = queue.get(job_id)
            assert job is not None
            if not job.resets:  # still the victim's: its heartbeats
                beats.append(job)
                return None
            # Reset; taken again by the survivor once it started it (a claim ahead counts the
            # attempt when it starts).
            return job if job.attempts == 2 and job.started_at is not None else None

        again = poll(reclaimed, timeout=FROZEN_STALLED_AFTER * 2 + WAIT)
        took = time.monotonic() - frozen
    finally:
        victim.send_signal(signal.SIGCONT)
    assert again, queue.get(job_id)
    assert (again.attempts, again.resets) == (2, 1)
    last_beat = beats[-1].heartbeat_at
    assert last_beat is not None
    assert again.started_at is not None
    # Not before: its mark stayed held, so only its heartbeat's age (the database's clock) let
    # the sweep take it; and in time: one stalled sweep (every 1.5 s) after it aged.
    assert (again.started_at - last_beat).total_seconds() >= FROZEN_STALLED_AFTER
    assert took < FROZEN_STALLED_AFTER * 1.5 + 2.0, f"it took {took:.2f}s"
    for process in (victim, survivor):
        process.send_signal(signal.SIGTERM)
        finish_program(process)


def test_a_worker_whose_liveness_session_is_cut_ends_each_job_once(
    postgres_target: Target, tmp_path: Path
) -> None:
    """The worker's connections (its mark's among them) go through a proxy that cuts them
    while it runs two jobs; a sweeper connected directly finds its mark free and runs them
    again; the worker takes its mark back, its two late outcomes are refused, and every job
    completes exactly once."""
    direct = postgres_target.open().queue("jobs")
    release = threading.Event()
    seen: list[int] = []
    lock = threading.Lock()

    def handle(job: durable.Job) -> None:
        with lock:
            seen.append(job.id)
            first = len(seen) <= 2
        if first:  # the two jobs it holds when its session is cut
            release.wait(WAIT * 4)

    sweeper = Workers(postgres_target, tmp_path)
    with proxy_to(postgres_target.url) as proxy:
        url = through(proxy, postgres_target.url)
        store = durable.open_store(url, timeout=0.5, schema=postgres_target.schema)
        worker = durable.QueueWorker(
            store.queue("jobs"),
            handle,
            concurrency=2,
            poll_interval=0.1,
            heartbeat_interval=0.2,
            stalled_after=30.0,  # only its mark can get its jobs taken within this test
        )
        thread = threading.Thread(target=worker.start)
        with LogWatcher() as logs:
            thread.start()
            try:
                held = direct.enqueue_many(["a", "b"])
                jobs = [poll(functools.partial(processing, direct, job_id)) for job_id in held]
                assert all(job and job.worker and has_mark(job.worker) for job in jobs), jobs
                sweeper.start("fast", settings=FROZEN)
                proxy.cut()
                logs.wait_for("was lost while the process lives")

                def swept() -> bool:
                    found = [direct.get(job_id) for job_id in held]
                    return all(job and job.state == "completed" and job.resets for job in found)

                assert poll(swept, timeout=WAIT * 2), [direct.get(job_id) for job_id in held]
                proxy.resume()
                logs.wait_for("is taken again", timeout=WAIT * 2)
                release.set()  # its two handlers return: their outcomes come too late
                more = direct.enqueue_many(range(20))
                assert poll(lambda: direct.counts()["completed"] == 22, timeout=WAIT * 3)
            finally:
                proxy.resume()
                release.set()
                worker.stop()
                join(thread)
                store.close()
                sweeper.stop_all()
                sweeper.close()
    pid = sweeper.processes[0].pid
    for job_id in held:
        job = direct.get(job_id)
        assert job is not None
        assert (job.state, job.attempts, job.resets) == ("completed", 2, 1)
        assert job.result == f"done by {pid}"  # the sweeper's outcome, not overwritten
    counts = worker.outcome_counts()
    assert counts.get("lost") == 2, counts
    by_sweeper = [job_id for job_id, _ in sweeper.starts()]
    completed = collections.Counter(
        [job_id for job_id in more if (job := direct.get(job_id)) and job.result is None]
        + by_sweeper
    )
    assert set(completed) == set(held + more)
    assert set(completed.values()) == {1}  # each completed by one worker, once
    assert counts.get("completed", 0) + len(by_sweeper) == 22


def test_the_sqlite_doorbell_wakes_a_worker_of_another_process_that_polls_once_a_minute(
    sqlite_target: Target, sqlite_workers: Workers
) -> None:
    store = sqlite_target.open()
    queue = store.queue(ODD_QUEUE)
    host = HostDirectory(str(path_of(sqlite_target)), sqlite_target.schema)
    assert host.bell is not None
    part = host.queue_part(ODD_QUEUE)
    stale = _stale_doorbell(host.bell, f"{part}.00000000")
    process = sqlite_workers.start("fast", settings='{"poll_interval": 60}', queue=ODD_QUEUE)
    first = queue.enqueue("warm-up")  # the worker's first claim may take this one
    assert poll(lambda: completed(queue, first))
    assert not Path(stale).exists()  # refused by nobody listening, so removed
    for round_ in range(3):  # each enqueued while it is idle: only the doorbell wakes it
        assert poll(functools.partial(completed, queue, queue.enqueue(round_)))
    [bell] = [name for name in _names(host.bell) if name.startswith(part)]
    process.send_signal(signal.SIGTERM)
    finish_program(process)
    assert bell not in _names(host.bell)  # a worker that stops removes its doorbell


def _names(directory: str) -> list[str]:
    return [path.name for path in Path(directory).iterdir()] if Path(directory).exists() else []


def _stale_doorbell(directory: str, name: str) -> str:
    """The socket of a worker that was killed: bound, closed, never removed."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    address = str(Path(directory) / name)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
    return address


# -- in one process ----------------------------------------------------------------------------


def test_free_marks_are_those_no_process_holds(target: Target) -> None:
    store = target.open()
    driver = driver_of(store)
    mark = driver.hold_mark()
    assert mark is not None
    assert mark.wait(WAIT, Flag())
    dead = marked_holder_id()  # a mark nobody ever took, as a killed process's
    alive = mark.worker_id

    def free(workers: list[str]) -> list[str]:
        return driver.run(lambda session: driver.free_marks(session, workers), transaction=True)

    assert free([alive, dead]) == [dead]
    mark.release()
    assert poll(lambda: free([alive]) == [alive])


def test_the_liveness_sweep_puts_back_only_the_jobs_of_free_marks(target: Target) -> None:
    store = target.open()
    backend = backend_of(store)
    queue = store.queue("emails")
    alive, dead, unmarked = queue.enqueue_many(["alive", "dead", "unmarked"])
    mark = backend.hold_mark()
    assert mark is not None
    assert mark.wait(WAIT, Flag())
    try:
        for worker in (mark.worker_id, marked_holder_id(), holder_id()):
            assert len(backend.claim("emails", Claimer(worker, 3600.0, 3), 1)) == 1
        [reset] = backend.sweep_dead("emails")
        assert (reset.id, reset.state, reset.resets, reset.worker_gone) == (dead, "queued", 1, True)
        assert backend.sweep_dead("emails") == []  # the rest: a held mark, and no mark at all
        states = {
            job_id: (job.state, job.resets)
            for job_id in (alive, unmarked)
            if (job := queue.get(job_id))
        }
        assert states == {alive: ("processing", 0), unmarked: ("processing", 0)}
    finally:
        mark.release()


def test_a_file_mark_is_held_until_released_and_then_free(tmp_path: Path) -> None:
    host = HostDirectory(str(tmp_path / "store.db"), "routines")
    mark = FileMark(host)
    try:
        assert mark.held()
        assert host.free_marks([mark.worker_id]) == []
        assert Path(host.mark_path(mark.worker_id)).exists()
    finally:
        mark.close()
    assert not Path(host.mark_path(mark.worker_id)).exists()  # removed on a clean release
    assert host.free_marks([mark.worker_id]) == [mark.worker_id]


def test_doorbells_of_a_database_on_a_long_path_fit_a_socket_address(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    deep.mkdir()
    host = HostDirectory(str(deep / "store.db"), "routines")
    assert host.bell is not None
    assert not Path(host.bell).is_relative_to(deep)  # in the temporary directory instead
    ringer = HostDirectory(str(deep / "store.db"), "routines")  # another process's store
    bell = SocketDoorbell(host, host.bell, ODD_QUEUE)
    try:
        assert bell.wait(0) == set()
        ringer.ring(ODD_QUEUE)
        ringer.ring(ODD_QUEUE)  # two rings, one wake-up
        assert bell.wait(WAIT) == {ODD_QUEUE}
        assert bell.wait(0) == set()
        ringer.ring("another queue")
        host.ring(ODD_QUEUE)  # its own store wakes its workers in-process instead
        assert bell.wait(0) == set()
        bell.close()  # as after an outage: it binds again at its next wait
        assert bell.wait(0) == set()
        ringer.ring(ODD_QUEUE)
        assert bell.wait(WAIT) == {ODD_QUEUE}
    finally:
        bell.close()
        host.close()
        ringer.close()
    assert not Path(host.bell).exists()  # emptied, so removed


def test_liveness_false_claims_under_the_workers_own_id(queue: durable.Queue) -> None:
    job_id = queue.enqueue("x")
    started = threading.Event()
    release = threading.Event()

    def handle(job: durable.Job) -> None:
        started.set()
        release.wait(WAIT)

    worker = durable.QueueWorker(queue, handle, liveness=False, poll_interval=0.05)
    thread = threading.Thread(target=worker.start)
    thread.start()
    try:
        assert started.wait(WAIT)
        job = queue.get(job_id)
        assert job is not None
        assert job.worker is not None
        assert not has_mark(job.worker)
    finally:
        release.set()
        worker.stop()
        join(thread)


def test_liveness_must_be_a_bool(queue: durable.Queue) -> None:
    with pytest.raises(TypeError, match="liveness"):
        durable.QueueWorker(queue, lambda job: None, liveness="yes")  # type: ignore[arg-type]
