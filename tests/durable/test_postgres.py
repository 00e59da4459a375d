"""The PostgreSQL backend: NOTIFY on enqueue, lock and connection waits bounded by the store's
timeout, and lost connections (killed by the server, or cut by a proxy of the test's own)
raising `StoreUnavailable` and recovering once the server answers again. Nothing here stops the
shared server."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import errors as pg_errors

from routines import durable
from routines.durable._model import Claimer
from routines.durable._postgres import PostgresDriver

from .conftest import Target
from .proxy import TcpProxy
from .support import backend_of, driver_of, poll
from helpers import WAIT, LogWatcher, join


def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    extra = "&".join(f"{name}={value}" for name, value in params.items())
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


@pytest.fixture
def admin(postgres_target: Target) -> Iterator[psycopg.Connection[Any]]:
    """A plain connection of the test's own, outside any store."""
    with psycopg.connect(postgres_target.url, autocommit=True) as connection:
        yield connection


def open_named(target: Target, *, timeout: float = WAIT) -> tuple[durable.Store, str]:
    """A store whose connections carry an application_name of their own, so that the test can
    find them (and only them: other tests share the server)."""
    name = f"routines-test-{secrets.token_hex(4)}"
    store = durable.open_store(
        with_query(target.url, application_name=name), timeout=timeout, schema=target.schema
    )
    target._opened.append(store)
    return store, name


def backend_pids(admin: psycopg.Connection[Any], name: str, *, waiting: bool = False) -> list[int]:
    condition = " AND wait_event_type = 'Lock'" if waiting else ""
    rows = admin.execute(
        f"SELECT pid FROM pg_stat_activity WHERE application_name = %s{condition}", [name]
    ).fetchall()
    return [pid for (pid,) in rows]


# -- NOTIFY -------------------------------------------------------------------------------------


def test_enqueue_notifies_the_schemas_channel_with_the_queue_name(
    postgres_target: Target, admin: psycopg.Connection[Any]
) -> None:
    store = postgres_target.open()
    channel = f"{postgres_target.schema}_jobs"
    admin.execute(f'LISTEN "{channel}"')
    store.queue("emails").enqueue(1)
    store.queue("sms").enqueue_many([1, 2])
    received = [(note.channel, note.payload) for note in admin.notifies(timeout=WAIT, stop_after=2)]
    assert received == [(channel, "emails"), (channel, "sms")]


def test_an_enqueue_that_writes_nothing_notifies_nothing(
    postgres_target: Target, admin: psycopg.Connection[Any]
) -> None:
    store = postgres_target.open()
    store.queue("emails").enqueue(1, key="k")
    admin.execute(f'LISTEN "{postgres_target.schema}_jobs"')
    store.queue("emails").enqueue(2, key="k")  # the key is live: nothing written
    store.queue("sms").enqueue(3)
    # Notifications arrive in commit order: the first one after LISTEN is the second enqueue's.
    first = next(iter(admin.notifies(timeout=WAIT, stop_after=1)))
    assert first.payload == "sms"


def test_a_sweep_that_fails_a_dead_workers_job_notifies_as_its_slot_is_free(
    postgres_target: Target, admin: psycopg.Connection[Any]
) -> None:
    # Not queued again (it died too often), but it held a slot of a limited queue.
    store = postgres_target.open()
    store.queue("emails").enqueue(1)
    backend = backend_of(store)
    assert backend.claim("emails", Claimer("w", 0.0, 0), 1)  # stalled at once, no reset left
    admin.execute(f'LISTEN "{postgres_target.schema}_jobs"')
    [reset] = backend.sweep_stalled("emails")
    assert reset.state == "failed"
    received = [note.payload for note in admin.notifies(timeout=WAIT, stop_after=1)]
    assert received == ["emails"]


def test_the_channel_name_fits_postgresql_identifiers_for_the_longest_schema() -> None:
    backend = PostgresDriver(
        "postgresql://h/db", shown="postgresql://h/db", timeout=1.0, schema="s" * 50
    )
    assert len(backend.channel.encode()) <= 63


# -- waits bounded by the timeout ---------------------------------------------------------------


@pytest.fixture
def locked_job(postgres_target: Target, admin: psycopg.Connection[Any]) -> Iterator[int]:
    """A job whose row another transaction holds locked until the test ends."""
    with postgres_target.open() as store:
        job_id = store.queue("emails").enqueue(1)
    locker = psycopg.connect(postgres_target.url)
    try:
        locker.execute(
            f'SELECT 1 FROM "{postgres_target.schema}".jobs WHERE id = %s FOR UPDATE', [job_id]
        )
        yield job_id
    finally:
        locker.close()


def test_a_row_lock_held_past_the_timeout_is_unavailable(
    postgres_target: Target, locked_job: int
) -> None:
    queue = postgres_target.open(timeout=0.5).queue("emails")
    started = time.monotonic()
    with pytest.raises(durable.StoreUnavailable, match="lock timeout") as caught:
        queue.cancel(locked_job)
    assert 0.5 <= time.monotonic() - started < 0.5 + 2.0
    assert isinstance(caught.value.__cause__, pg_errors.LockNotAvailable)


def test_a_rate_limited_claim_that_waited_for_the_queue_records_its_start_when_it_took_it(
    postgres_target: Target, admin: psycopg.Connection[Any]
) -> None:
    # now() is the moment the claim's transaction began, before it waited for the queue's row:
    # a start recorded at it would leave the rate's window early by as long as the wait.
    store, name = open_named(postgres_target)
    queue = store.queue("emails")
    queue.set_limits(rate=(5, 3600.0))
    queue.enqueue(1)
    schema = postgres_target.schema
    claimed: list[int] = []
    with psycopg.connect(postgres_target.url) as locker:
        locker.execute(f"SELECT 1 FROM \"{schema}\".queues WHERE name = 'emails' FOR UPDATE")
        thread = threading.Thread(
            target=lambda: claimed.extend(
                claim.id
                for claim in backend_of(store).claim(
                    "emails", Claimer("w", 60.0, 3), 1, limited=True
                )
            )
        )
        thread.start()
        try:
            assert poll(lambda: backend_pids(admin, name, waiting=True) != []), "not waiting"
            [(released,)] = locker.execute("SELECT clock_timestamp()").fetchall()
        finally:
            locker.rollback()
            join(thread)
    assert len(claimed) == 1
    [(recorded,)] = admin.execute(f'SELECT at FROM "{schema}".queue_starts').fetchall()
    assert recorded >= released


def test_a_connection_killed_by_the_server_mid_call_is_unavailable_then_replaced(
    postgres_target: Target,
    admin: psycopg.Connection[Any],
    locked_job: int,
) -> None:
    store, name = open_named(postgres_target)
    queue = store.queue("emails")
    outcome: list[BaseException | bool] = []

    def cancel() -> None:
        try:
            outcome.append(queue.cancel(locked_job))
        except BaseException as error:
            outcome.append(error)

    caller = threading.Thread(target=cancel)
    caller.start()
    waiting = poll(lambda: backend_pids(admin, name, waiting=True))
    assert len(waiting) == 1, "the cancel never waited for the row lock"
    admin.execute("SELECT pg_terminate_backend(%s)", waiting)  # as a server shutdown does
    caller.join(WAIT)
    assert not caller.is_alive()
    [error] = outcome
    assert isinstance(error, durable.StoreUnavailable)
    assert isinstance(error.__cause__, pg_errors.AdminShutdown)
    assert queue.counts()["queued"] == 1  # the next call works


def test_idle_connections_killed_by_the_server_are_replaced_unseen(
    postgres_target: Target, admin: psycopg.Connection[Any]
) -> None:
    # What a server restart does to a pool's idle connections.
    store, name = open_named(postgres_target)
    queue = store.queue("emails")
    queue.enqueue(1)
    pids = backend_pids(admin, name)
    assert pids
    for pid in pids:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    assert poll(lambda: not set(pids) & set(backend_pids(admin, name)))
    assert queue.counts()["queued"] == 1


def test_a_cut_connection_is_unavailable_within_the_timeout_and_recovers(
    postgres_target: Target,
) -> None:
    parts = urlsplit(postgres_target.url)
    assert parts.hostname is not None
    with TcpProxy((parts.hostname, parts.port or 5432)) as proxy:
        netloc = f"{parts.username}@127.0.0.1:{proxy.port}" if parts.username else ""
        url = urlunsplit(parts._replace(netloc=netloc or f"127.0.0.1:{proxy.port}"))
        timeout = 1.0
        store = durable.open_store(url, timeout=timeout, schema=postgres_target.schema)
        try:
            queue = store.queue("emails")
            queue.enqueue(1)
            # Eight idle connections in the pool, as after a busy moment: all die in the cut,
            # and more than the calls below come across.
            backend = driver_of(store)
            assert isinstance(backend, PostgresDriver)
            with ExitStack() as held:
                for _ in range(8):
                    held.enter_context(backend._connection())
            proxy.cut()
            for call in (queue.counts, lambda: queue.enqueue(2)):
                started = time.monotonic()
                with pytest.raises(durable.StoreUnavailable):
                    call()
                assert time.monotonic() - started < timeout + 2.0
            proxy.resume()
            assert queue.counts()["queued"] == 1  # the first call after the cut ended works
            assert queue.enqueue(3) > 0
        finally:
            store.close()


def test_backend_calls_raise_driver_errors_that_the_store_classifies(
    postgres_target: Target,
) -> None:
    backend = backend_of(postgres_target.open())
    assert backend.classify(pg_errors.AdminShutdown()) == "unavailable"
    assert backend.classify(pg_errors.LockNotAvailable()) == "unavailable"
    assert backend.classify(pg_errors.UndefinedTable()) == "error"
    assert backend.classify(ValueError("not the driver's")) is None


def test_a_stop_while_a_claim_waits_hands_its_job_back_unspent(
    postgres_target: Target, admin: psycopg.Connection[Any]
) -> None:
    store, name = open_named(postgres_target)
    queue = store.queue("emails")
    job_id = queue.enqueue("x")
    handled: list[durable.Job] = []
    worker = durable.QueueWorker(queue, handled.append, name="claimer")
    thread = threading.Thread(target=worker.start, name="test-worker")
    with admin.transaction():
        admin.execute(f'LOCK TABLE "{postgres_target.schema}".jobs IN ACCESS EXCLUSIVE MODE')
        thread.start()
        assert poll(lambda: backend_pids(admin, name, waiting=True))  # its claim waits
        worker.stop()
        # Its handlers end (nothing was claimed for them), then the claim gets the job.
        assert poll(
            lambda: (
                not any(
                    each.name.startswith("routine:claimer:handler")
                    for each in threading.enumerate()
                )
            )
        )
    join(thread)
    job = queue.get(job_id)
    assert job is not None
    assert (job.state, job.attempts, handled) == ("queued", 0, [])


# -- faults of issue 25 ---------------------------------------------------------------------------


def test_the_first_call_after_every_pooled_session_was_ended_gets_a_fresh_one_at_once(
    postgres_target: Target, admin: psycopg.Connection[Any]
) -> None:
    # A restart or a failover ends every session: the pool's own check met each dead one in
    # turn, with a backoff between them, and the first call spent its whole timeout and failed.
    store, name = open_named(postgres_target, timeout=2.0)
    queue = store.queue("emails")
    driver = driver_of(store)
    assert isinstance(driver, PostgresDriver)
    with ExitStack() as held:  # five idle connections in the pool, as after a busy moment
        for _ in range(5):
            held.enter_context(driver._connection())
    pids = backend_pids(admin, name)
    assert len(pids) >= 5
    for pid in pids:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    assert poll(lambda: not set(pids) & set(backend_pids(admin, name)))
    started = time.monotonic()
    assert queue.counts()["queued"] == 0
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    ("zone", "moment"),
    [
        ("America/New_York", datetime.min.replace(tzinfo=timezone.utc)),
        ("Asia/Tokyo", datetime.max.replace(tzinfo=timezone.utc)),
    ],
)
def test_times_read_back_whatever_the_sessions_time_zone(
    postgres_target: Target, zone: str, moment: datetime
) -> None:
    # In another zone the ends of Python's years 1 to 9999 do not fit a datetime: get() raised
    # DataError, and a worker's claim committed and then raised.
    url = with_query(postgres_target.url, options=f"-cTimeZone%3D{zone}")
    store = durable.open_store(url, schema=postgres_target.schema, timeout=WAIT)
    postgres_target._opened.append(store)
    queue = store.queue("emails")
    job_id = queue.enqueue("edge", run_at=moment)
    job = queue.get(job_id)
    assert job is not None
    assert job.run_after == moment
    if moment < datetime(2000, 1, 1, tzinfo=timezone.utc):  # due: a worker claims it
        [claim] = backend_of(store).claim("emails", Claimer("w", 60.0, 3), 1)
        assert claim.job.run_after == moment


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://postgres@127.0.0.1:abc/test", "port 'abc'"),
        ("postgresql://postgres@127.0.0.1:99999/test", "port '99999'"),
        ("postgresql://postgres@127.0.0.1:5432/test?sslmode=bogus", "sslmode='bogus'"),
        ("postgresql://postgres@127.0.0.1:5432/test?connect_timeout=soon", "connect_timeout"),
        ("postgresql://postgres@127.0.0.1:5432/test\x00ignored", "NUL"),
    ],
)
def test_a_malformed_url_is_a_value_error_naming_url(url: str, says: str) -> None:
    with pytest.raises(ValueError, match="url") as caught:
        durable.open_store(url)
    assert says in str(caught.value)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"user": "nobody_at_all"}, 'role "nobody_at_all" does not exist'),
        ({"dbname": "no_such_database"}, 'database "no_such_database" does not exist'),
        ({"options": "-cbogus%3D1"}, "unrecognized configuration parameter"),
    ],
)
def test_settings_the_server_refuses_are_a_store_error_not_an_outage(
    postgres_target: Target, change: dict[str, str], says: str
) -> None:
    parts = urlsplit(postgres_target.url)
    netloc = parts.netloc
    path = parts.path
    if "user" in change:
        netloc = f"{change['user']}@{parts.hostname}:{parts.port or 5432}"
    if "dbname" in change:
        path = f"/{change['dbname']}"
    url = urlunsplit(parts._replace(netloc=netloc, path=path))
    if "options" in change:
        url = with_query(url, options=change["options"])
    with pytest.raises(durable.StoreError, match=says) as caught:
        durable.open_store(url, timeout=WAIT, schema=postgres_target.schema)
    assert not isinstance(caught.value, durable.StoreUnavailable)


def test_a_worker_started_while_postgresql_is_down_waits_for_it(
    postgres_target: Target,
) -> None:
    parts = urlsplit(postgres_target.url)
    assert parts.hostname is not None
    with TcpProxy((parts.hostname, parts.port or 5432)) as proxy, LogWatcher() as logs:
        proxy.cut()  # down before anything opens
        netloc = f"{parts.username}@127.0.0.1:{proxy.port}" if parts.username else ""
        url = urlunsplit(parts._replace(netloc=netloc or f"127.0.0.1:{proxy.port}"))
        store = durable.open_store(url, timeout=1.0, schema=postgres_target.schema)
        postgres_target._opened.append(store)
        queue = store.queue("emails")
        with pytest.raises(durable.StoreUnavailable):  # each call says so while it is down
            queue.enqueue(1)
        done = threading.Event()
        worker = durable.QueueWorker(
            queue,
            lambda job: done.set(),
            poll_interval=0.1,
            heartbeat_interval=0.5,
            stalled_after=3.0,
        )
        thread = threading.Thread(target=worker.start)
        thread.start()
        try:
            logs.wait_for("trying again until the store is back")
            proxy.resume()
            queue.enqueue("now it answers")  # this call opens the store
            assert done.wait(WAIT)
        finally:
            worker.stop()
            join(thread)
        outages = [r for r in logs.records if "until the store is back" in r.getMessage()]
        # Once per loop of the worker (claims, heartbeats and sweeps, listening), as an outage
        # after the start is logged.
        doing = [tuple(record.getMessage().split(": ")[:2]) for record in outages]
        assert len(set(doing)) == len(doing), doing
