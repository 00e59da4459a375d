"""The SQLite backend: WAL, waits for a lock instead of "database is locked", a connection per
thread, and many processes writing one file at once."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from routines import durable
from routines.durable._model import Claimer, Outcome
from routines.durable._sqlite import SQLiteDriver

from .conftest import Target
from .support import backend_of, driver_of, finish_program, path_of, start_program, write_lock
from helpers import WAIT


class InThread:
    """Runs `call` on a thread and keeps what it returned or raised."""

    def __init__(self, call: Callable[[], object]) -> None:
        self.result: object = None
        self.error: BaseException | None = None
        self.took = 0.0
        self._call = call
        self.thread = threading.Thread(target=self._run, name="test-caller")
        self.thread.start()

    def _run(self) -> None:
        started = time.monotonic()
        try:
            self.result = self._call()
        except BaseException as error:
            self.error = error
        self.took = time.monotonic() - started

    def still_waiting_after(self, seconds: float) -> bool:
        self.thread.join(seconds)
        return self.thread.is_alive()

    def join(self) -> None:
        self.thread.join(2 * WAIT)
        assert not self.thread.is_alive(), "the call did not return"


def test_the_file_is_in_wal_mode(sqlite_target: Target) -> None:
    sqlite_target.open()
    connection = sqlite3.connect(path_of(sqlite_target))
    try:
        assert connection.execute("PRAGMA journal_mode").fetchall() == [("wal",)]
    finally:
        connection.close()


def test_a_write_waits_for_a_lock_that_frees_within_the_timeout(sqlite_target: Target) -> None:
    queue = sqlite_target.open(timeout=WAIT).queue("emails")
    with write_lock(path_of(sqlite_target)):
        enqueue = InThread(lambda: queue.enqueue(1))
        assert enqueue.still_waiting_after(0.3)
    enqueue.join()
    assert enqueue.error is None
    assert isinstance(enqueue.result, int)


def test_reads_do_not_wait_for_the_write_lock(sqlite_target: Target) -> None:
    queue = sqlite_target.open(timeout=WAIT).queue("emails")
    queue.enqueue(1)
    with write_lock(path_of(sqlite_target)):
        assert queue.counts()["queued"] == 1


def test_a_lock_held_past_the_timeout_is_unavailable(sqlite_target: Target) -> None:
    queue = sqlite_target.open(timeout=0.3).queue("emails")
    with write_lock(path_of(sqlite_target)):
        started = time.monotonic()
        with pytest.raises(durable.StoreUnavailable, match="database is locked") as caught:
            queue.enqueue(1)
        took = time.monotonic() - started
    assert 0.3 <= took < 0.3 + 2.0
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    assert queue.enqueue(1) > 0  # works again once the lock is free


@contextmanager
def writer_on_a_rollback_journal(path: Path) -> Iterator[sqlite3.Connection]:
    """A file in SQLite's default (rollback journal) mode, and a connection in the middle of a
    write to it: switching to WAL then fails at once, without waiting in the busy handler."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("CREATE TABLE app (x INTEGER)")
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO app VALUES (1)")
        yield connection
    finally:
        connection.close()


def test_switching_to_wal_is_retried_until_the_file_is_free(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with writer_on_a_rollback_journal(path) as writer:
        opening = InThread(lambda: durable.open_store(f"sqlite:///{path}", timeout=WAIT))
        assert opening.still_waiting_after(0.3)
        writer.execute("COMMIT")
        opening.join()
    assert opening.error is None
    assert isinstance(opening.result, durable.Store)
    opening.result.close()


def test_a_file_held_past_the_timeout_makes_open_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with writer_on_a_rollback_journal(path):
        started = time.monotonic()
        with pytest.raises(durable.StoreUnavailable, match="locked"):
            durable.open_store(f"sqlite:///{path}", timeout=0.3)
        assert 0.3 <= time.monotonic() - started < 0.3 + 2.0


def test_close_closes_the_connection_of_every_thread(sqlite_target: Target) -> None:
    store = sqlite_target.open()
    queue = store.queue("emails")
    go = threading.Barrier(3, timeout=WAIT)

    def use() -> None:
        go.wait()  # three threads alive at once: three connections
        queue.enqueue(1)

    threads = [threading.Thread(target=use) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    queue.counts()
    wal = path_of(sqlite_target).with_name("store.db-wal")
    assert wal.exists()
    store.close()
    # SQLite removes the WAL file when the last connection to the database closes.
    assert not wal.exists()


def test_connections_of_threads_that_ended_are_closed(sqlite_target: Target) -> None:
    store = sqlite_target.open()
    backend = driver_of(store)
    assert isinstance(backend, SQLiteDriver)
    for _ in range(5):
        thread = threading.Thread(target=store.queue("emails").counts)
        thread.start()
        thread.join(WAIT)
    store.queue("emails").counts()
    # The main thread's, and at most the last ended thread's until another thread connects.
    assert len(backend._connections) <= 2


def test_processes_writing_at_once_never_see_database_is_locked(sqlite_target: Target) -> None:
    # Four processes open a fresh file at once and enqueue one job per call while this process
    # claims and completes them: every call waits its turn, none fails.
    per_process = 150
    processes = [
        start_program("enqueue", sqlite_target.url, sqlite_target.schema, "busy", str(per_process))
        for _ in range(4)
    ]
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    store = sqlite_target.open()
    backend = backend_of(store)
    completed: list[int] = []
    deadline = time.monotonic() + 30.0
    pause = threading.Event()
    while len(completed) < 4 * per_process and time.monotonic() < deadline:
        claims = backend.claim("busy", Claimer("main", 60.0, 3), 5)
        for claim in claims:
            assert backend.finish(claim, Outcome.completed("null"))
            completed.append(claim.id)
        if not claims:
            if all(process.poll() is not None for process in processes):
                break  # the queue is empty and nobody enqueues any more
            pause.wait(0.002)
    enqueued = []
    for process in processes:
        out, err = finish_program(process)
        assert "locked" not in err
        enqueued += json.loads(out)
    assert sorted(completed) == sorted(enqueued)
    assert len(set(completed)) == 4 * per_process
    assert store.queue("busy").counts()["completed"] == 4 * per_process
