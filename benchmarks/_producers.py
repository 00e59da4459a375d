"""Each library's side of figures 9 and 10 in the benchmark's process: a fresh database, the
library's schema, a producer that enqueues `_peer_tasks.report(n)`, and what a worker process
(`_child.py worker`) needs to find the same queue."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any, Protocol

from _durable import (
    REDIS_URL,
    fresh_database,
    fresh_directory,
    fresh_redis,
    fresh_store_url,
    procrastinate_app,
)
from _peer_tasks import report

from routines import durable


class Producer(Protocol):
    def enqueue(self, n: int) -> None: ...


class _Routines:
    def __init__(self, store: durable.Store) -> None:
        self.queue = store.queue("bench")

    def enqueue(self, n: int) -> None:
        self.queue.enqueue(n)


class _Procrastinate:
    def __init__(self, task: Any) -> None:
        self.task = task

    def enqueue(self, n: int) -> None:
        self.task.defer(n=n)


class _Pgqueuer:
    def __init__(self, loop: asyncio.AbstractEventLoop, queries: Any) -> None:
        self.loop = loop
        self.queries = queries

    def enqueue(self, n: int) -> None:
        self.loop.run_until_complete(self.queries.enqueue("report", str(n).encode()))


class _Huey:
    def __init__(self, path: str) -> None:
        from huey import SqliteHuey

        self.huey = SqliteHuey(filename=path)
        self.task = self.huey.task()(report)

    def enqueue(self, n: int) -> None:
        self.task(n)


class _Rq:
    def __init__(self, redis: Any) -> None:
        from rq import Queue

        self.queue = Queue("bench", connection=redis)

    def enqueue(self, n: int) -> None:
        self.queue.enqueue(report, n)


@contextlib.contextmanager
def environment(side: str) -> Iterator[tuple[Producer, str, dict[str, Any]]]:
    """For `side` (`routines-sqlite`, `routines-postgres`, `procrastinate`, `pgqueuer`, `huey`,
    `rq`): a producer, the worker library's name for `_child.py`, and the worker's config."""
    if side in ("routines-sqlite", "routines-postgres"):
        backend = side.removeprefix("routines-")
        with fresh_store_url(backend) as url, durable.open_store(url) as store:
            yield _Routines(store), "routines", {"url": url}
    elif side == "procrastinate":
        with procrastinate_app("report", report) as (url, app, task), app.open():
            yield _Procrastinate(task), "procrastinate", {"url": url}
    elif side == "pgqueuer":
        with fresh_database("pgqueuer") as url:
            loop = asyncio.new_event_loop()
            try:
                yield _pgqueuer(loop, url), "pgqueuer", {"url": url}
            finally:
                loop.run_until_complete(_close_pgqueuer(loop))
                loop.close()
    elif side == "huey":
        with fresh_directory() as directory:
            path = str(directory / "huey.db")
            producer_huey = _Huey(path)
            try:
                yield producer_huey, "huey", {"path": path}
            finally:
                producer_huey.huey.storage.close()
    elif side == "rq":
        with fresh_redis() as redis:
            yield _Rq(redis), "rq", {"redis": REDIS_URL}
    else:
        msg = f"unknown side {side!r}"
        raise ValueError(msg)


_connections: dict[asyncio.AbstractEventLoop, Any] = {}


def _pgqueuer(loop: asyncio.AbstractEventLoop, url: str) -> _Pgqueuer:
    import asyncpg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    connection = loop.run_until_complete(asyncpg.connect(url))
    _connections[loop] = connection
    queries = Queries(AsyncpgDriver(connection))
    loop.run_until_complete(queries.install())
    return _Pgqueuer(loop, queries)


async def _close_pgqueuer(loop: asyncio.AbstractEventLoop) -> None:
    connection = _connections.pop(loop, None)
    if connection is not None:
        await connection.close()
