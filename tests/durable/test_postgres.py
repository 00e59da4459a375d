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
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import errors as pg_errors

from routines import durable
from routines.durable._postgres import PostgresDriver

from .conftest import Target
from .proxy import TcpProxy
from .support import backend_of, driver_of, poll
from helpers import WAIT, join


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
