"""`open_store` and `Store` on both backends: URLs, the versioned schema, close, the fork guard,
and driver errors turned into `StoreError`/`StoreUnavailable`."""

from __future__ import annotations

import json
import os
import select
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from routines import durable
from routines.durable import _sql, _statements
from routines.durable._store import redact

from .conftest import Target
from .support import backend_of, driver_of
from helpers import WAIT


def test_a_store_is_a_context_manager_that_closes(target: Target) -> None:
    with durable.open_store(target.url, schema=target.schema) as store:
        store.queue("emails").enqueue(1)
    with pytest.raises(RuntimeError, match="closed"):
        store.queue("emails")


@pytest.mark.parametrize(
    "call",
    [
        lambda store: store.queue("emails"),
        lambda store: store.queue("emails").enqueue(1),
        lambda store: store.queue("emails").counts(),
    ],
    ids=["queue", "enqueue", "counts"],
)
def test_calls_after_close_raise_a_clear_error(
    target: Target, call: Callable[[durable.Store], object]
) -> None:
    store = target.open()
    queue = store.queue("emails")
    store.close()
    with pytest.raises(RuntimeError, match=r"is closed: open a new one with durable\.open_store"):
        call(store)
    with pytest.raises(RuntimeError, match="is closed"):
        queue.get(1)


def test_close_twice_is_fine(store: durable.Store) -> None:
    store.close()
    store.close()
    with pytest.raises(RuntimeError, match="is closed"):
        store.queue("emails")


def test_a_reopened_store_sees_the_jobs(target: Target) -> None:
    with target.open() as store:
        job_id = store.queue("emails").enqueue({"kept": True})
    with target.open() as store:
        job = store.queue("emails").get(job_id)
    assert job is not None
    assert job.payload == {"kept": True}


def test_two_schemas_in_one_database_are_separate_stores(target: Target) -> None:
    first = target.open()
    other = Target(target.kind, target.url, f"{target.schema}_other")
    try:
        second = other.open()
        first.queue("emails").enqueue(1)
        assert second.queue("emails").counts()["queued"] == 0
    finally:
        other.close()
        if target.kind == "postgres":
            from .conftest import drop_schema

            drop_schema(target.url, other.schema)


def test_repr_shows_the_url_and_schema(store: durable.Store, target: Target) -> None:
    assert repr(store) == f"Store({target.url!r}, schema={target.schema!r})"


# -- URLs ---------------------------------------------------------------------------------------


def test_sqlite_relative_paths_are_resolved_once_at_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with durable.open_store("sqlite:///relative.db") as store:
        monkeypatch.chdir("/")  # a later chdir doesn't move the store
        store.queue("emails").enqueue(1)
    with durable.open_store(f"sqlite:///{tmp_path}/relative.db") as store:
        assert store.queue("emails").counts()["queued"] == 1


def test_the_postgres_scheme_is_an_alias(postgres_target: Target) -> None:
    url = "postgres://" + postgres_target.url.partition("://")[2]
    with durable.open_store(url, schema=postgres_target.schema) as store:
        assert store.queue("emails").counts()["queued"] == 0


def test_an_unknown_scheme_names_the_supported_ones() -> None:
    with pytest.raises(ValueError, match=r"sqlite:///, postgresql:// or postgres://.*mysql://db"):
        durable.open_store("mysql://db/app")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:s3cret@db.internal/app", "postgresql://app:***@db.internal/app"),
        ("postgresql://app@db/app?password=s3cret&sslmode=require", None),
        ("postgresql://app:p%40ss@h1:5432,h2:5433/app", "postgresql://app:***@h1:5432,h2:5433/app"),
        ("postgresql://app@db/app", "postgresql://app@db/app"),
        ("sqlite:////var/lib/app/routines.db", "sqlite:////var/lib/app/routines.db"),
    ],
)
def test_urls_are_shown_without_their_password(url: str, shown: str | None) -> None:
    assert "s3cret" not in redact(url)
    assert "p%40ss" not in redact(url)
    if shown is not None:
        assert redact(url) == shown


def test_errors_do_not_show_the_password(postgres_target: Target) -> None:
    url = postgres_target.url.replace("postgresql://postgres@", "postgresql://nobody:s3cret@")
    with pytest.raises(durable.StoreError) as caught:
        durable.open_store(url, schema=postgres_target.schema, timeout=1.0)
    assert "s3cret" not in str(caught.value)
    assert "nobody:***@" in str(caught.value)


# -- the schema ---------------------------------------------------------------------------------


LATER_STEP = ("CREATE TABLE {later} (x {integer})",)  # a harmless step, in the neutral spelling


@pytest.fixture
def later_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """A table the steps below may name."""
    monkeypatch.setattr(_sql, "TABLES", (*_sql.TABLES, "later"))


@pytest.mark.usefixtures("later_step")
def test_an_older_schema_is_upgraded_by_the_new_steps_only(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    with target.open() as store:
        job_id = store.queue("emails").enqueue(1)
    monkeypatch.setattr(_statements, "SCHEMA", (*_statements.SCHEMA, LATER_STEP))
    with target.open() as store:  # the jobs table is not created again: it would fail
        assert store.queue("emails").get(job_id) is not None
    with target.open() as store:  # and now it is current: nothing to do
        assert store.queue("emails").counts()["queued"] == 1


# A job as version 3 of the schema wrote it: no task column yet.
_VERSION_3_JOB = """
    INSERT INTO {jobs} (queue, payload, priority, max_attempts, enqueued_at, run_after)
    VALUES ('emails', :payload{as_json}, 0, 5, {now}, {now})
"""


def test_a_store_of_version_3_is_upgraded_to_the_job_browser_with_its_jobs(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    current = _statements.SCHEMA
    call = '{"task": "mail.send", "args": [], "kwargs": {}}'
    with monkeypatch.context() as older:
        older.setattr(_statements, "SCHEMA", current[:3])
        with target.open() as store:
            driver_of(store).run(
                lambda session: session.count(_VERSION_3_JOB, {"payload": call}), transaction=True
            )
    with target.open() as store:
        queue = store.queue("emails")
        new = queue.enqueue({"task": "mail.send", "args": [], "kwargs": {}})
        assert [job.state for job in queue.jobs()] == ["queued", "queued"]
        # The task is written at enqueue: a job stored before the upgrade has none.
        assert [job.id for job in queue.jobs(task="mail.send")] == [new]
        queue.pause()
        assert [(info.name, info.paused) for info in store.queues()] == [("emails", True)]


@pytest.mark.usefixtures("later_step")
def test_a_schema_written_by_a_newer_version_is_refused(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    current = _statements.SCHEMA
    with monkeypatch.context() as newer:
        newer.setattr(_statements, "SCHEMA", (*current, LATER_STEP))
        target.open().close()
    newer_version = len(current) + 1
    with pytest.raises(
        durable.StoreError, match=rf"schema version {newer_version}, written by a newer version"
    ):
        target.open()


def test_many_processes_open_a_fresh_store_at_once(target: Target) -> None:
    # Covered with enqueues in test_queue.py; here only the opening, by four processes at once.
    from .support import finish_program, start_program

    processes = [start_program("enqueue", target.url, target.schema, "q", "0") for _ in range(4)]
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    for process in processes:
        out, err = finish_program(process)
        assert (out.strip(), err) == ("[]", "")


# -- errors -------------------------------------------------------------------------------------


def test_an_unreachable_postgresql_opens_and_its_calls_are_unavailable_within_the_timeout() -> None:
    # A web process boots while its database is down; each call that needs it raises.
    started = time.monotonic()
    store = durable.open_store("postgresql://postgres@127.0.0.1:9/test", timeout=0.5)
    try:
        assert time.monotonic() - started < 0.5 + 2.0
        for _ in range(2):
            started = time.monotonic()
            with pytest.raises(
                durable.StoreUnavailable, match=r"unavailable \(timeout 0.5s\).*refused"
            ):
                store.queue("emails").counts()
            assert time.monotonic() - started < 0.5 + 2.0
    finally:
        store.close()


def test_check_returns_when_the_database_answers_and_raises_when_it_does_not(
    store: durable.Store,
) -> None:
    store.check()
    away = durable.open_store("postgresql://postgres@127.0.0.1:9/test", timeout=0.5)
    with away, pytest.raises(durable.StoreUnavailable, match=r"check: the store .* unavailable"):
        away.check()


def test_a_sqlite_store_in_a_missing_directory_says_the_directory_does_not_exist(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "missing-directory"
    with pytest.raises(durable.StoreError, match="does not exist") as caught:
        durable.open_store(f"sqlite:///{missing}/store.db")
    assert f"the directory {missing} does not exist" in str(caught.value)
    assert not isinstance(caught.value, durable.StoreUnavailable)


def test_a_sqlite_file_that_cannot_be_opened_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "store.db").mkdir()  # a directory where the file should be
    with pytest.raises(durable.StoreError, match="unable to open database file") as caught:
        durable.open_store(f"sqlite:///{tmp_path}/store.db")
    assert not isinstance(caught.value, durable.StoreUnavailable)
    assert caught.value.__cause__ is not None  # the driver's error, kept


# -- fork ---------------------------------------------------------------------------------------


def test_a_forked_child_cannot_use_a_store_opened_before_the_fork(
    store: durable.Store, queue: durable.Queue
) -> None:
    queue.enqueue(1)
    calls: list[Callable[[], object]] = [
        queue.counts,
        lambda: queue.enqueue(2),
        lambda: store.queue("other"),
        lambda: backend_of(store),
        store.close,
    ]
    reader, writer = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() with threads
        pid = os.fork()
    if pid == 0:  # the child: report each call's error, and leave without any clean-up
        try:
            os.close(reader)
            seen = []
            for call in calls:
                try:
                    call()
                    seen.append("no error")
                except BaseException as error:
                    seen.append(f"{type(error).__name__}: {error}")
            os.write(writer, json.dumps(seen).encode())
        finally:
            os._exit(0)
    os.close(writer)
    try:
        report = read_all(reader)
    finally:
        os.close(reader)
        reap(pid)
    seen = json.loads(report)
    assert len(seen) == len(calls)
    for line in seen:
        assert line.startswith("RuntimeError: the store ")
        assert "open the store after forking" in line
        assert "post_worker_init" in line
    assert queue.counts()["queued"] == 1  # the parent's store is unharmed


def read_all(fd: int) -> bytes:
    chunks = []
    deadline = time.monotonic() + WAIT
    while True:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, "the child wrote nothing in time"
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def reap(pid: int) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        select.select([], [], [], 0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError("the forked child did not exit")
