"""Figure 7: enqueue throughput, one job at a time and as one batch, from one thread.

Every trial starts on a new, empty database (a fresh SQLite file, a fresh PostgreSQL database,
an emptied Redis database), sets the library's schema up untimed, then times N single enqueues
and, after them, one batch of N. Payloads are small integers.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from _common import Figure, Goal, Settings, Side, measure
from _durable import (
    fresh_database,
    fresh_directory,
    fresh_redis,
    fresh_store_url,
    postgres_missing,
    procrastinate_app,
    redis_missing,
)

from routines import durable

METRICS = ["one at a time", "batch"]
Rates = dict[str, float]


def _rates(n: int, one: Callable[[int], object], batch: Callable[[int], object]) -> Rates:
    began = time.perf_counter()
    for i in range(n):
        one(i)
    middle = time.perf_counter()
    batch(n)
    ended = time.perf_counter()
    return {"one at a time": n / (middle - began), "batch": n / (ended - middle)}


def routines(backend: str, n: int) -> Rates:
    with fresh_store_url(backend) as url, durable.open_store(url) as store:
        queue = store.queue("bench")
        rates = _rates(n, queue.enqueue, lambda k: queue.enqueue_many(range(k)))
        _check(sum(queue.counts().values()), 2 * n)
        return rates


def huey_sqlite(n: int, *, fsync: bool = False) -> Rates:
    """huey as shipped (`fsync=False`: `PRAGMA synchronous = OFF`, a commit is not on disk when
    it returns), or with `fsync=True`: WAL and `synchronous = FULL`, the file settings of
    routines' store."""
    from huey import SqliteHuey

    with fresh_directory() as directory:
        huey = SqliteHuey(filename=str(directory / "huey.db"), fsync=fsync)
        task = huey.task()(_noop)
        began = time.perf_counter()
        for i in range(n):
            task(i)
        elapsed = time.perf_counter() - began
        _check(huey.pending_count(), n)
        huey.storage.close()
        return {"one at a time": n / elapsed, "batch": math.nan}


def procrastinate(n: int) -> Rates:
    with procrastinate_app("noop", _noop) as (_, app, task), app.open():
        return _rates(
            n,
            lambda i: task.defer(n=i),
            lambda k: task.batch_defer(*({"n": i} for i in range(k))),
        )


def pgqueuer(n: int) -> Rates:
    return asyncio.run(_pgqueuer(n))


async def _pgqueuer(n: int) -> Rates:
    import asyncpg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    with fresh_database("pgqueuer") as url:
        connection = await asyncpg.connect(url)
        try:
            queries = Queries(AsyncpgDriver(connection))
            await queries.install()
            began = time.perf_counter()
            for i in range(n):
                await queries.enqueue("noop", str(i).encode())
            middle = time.perf_counter()
            await queries.enqueue(["noop"] * n, [str(i).encode() for i in range(n)], [0] * n)
            ended = time.perf_counter()
            _check(await connection.fetchval("SELECT count(*) FROM pgqueuer"), 2 * n)
        finally:
            await connection.close()
        return {"one at a time": n / (middle - began), "batch": n / (ended - middle)}


def rq(n: int) -> Rates:
    from _peer_tasks import noop
    from rq import Queue

    with fresh_redis() as redis:
        queue = Queue("bench", connection=redis)
        rates = _rates(
            n,
            lambda i: queue.enqueue(noop, i),
            lambda k: queue.enqueue_many([Queue.prepare_data(noop, (i,)) for i in range(k)]),
        )
        _check(queue.count, 2 * n)
        return rates


def _noop(n: object = None) -> None:
    """The job: nothing."""


def _check(found: int, expected: int) -> None:
    if found != expected:
        msg = f"{found} jobs stored, expected {expected}"
        raise RuntimeError(msg)


def run(settings: Settings) -> list[Figure]:
    n = settings.durable_jobs
    workload = f"{n:,} trivial jobs from one thread, one at a time, then as one batch"
    sqlite_sides = [
        Side("routines: Queue.enqueue / enqueue_many"),
        Side("peer: huey SqliteHuey"),
        Side("peer: huey SqliteHuey(fsync=True)"),
    ]
    sqlite_sides[1].note = "no batch enqueue; synchronous=OFF, as shipped"
    sqlite_sides[2].note = "no batch enqueue; synchronous=FULL, routines' file settings"
    measure(
        sqlite_sides,
        [lambda: routines("sqlite", n), lambda: huey_sqlite(n), lambda: huey_sqlite(n, fsync=True)],
        settings.durable_repeats,
        warmups=0,
    )
    figures = [
        _figure("7a", "Enqueue on SQLite", workload, sqlite_sides, {("huey", "one at a time"): 1.2})
    ]
    missing = postgres_missing()
    if missing is None:
        sides = [
            Side("routines: Queue.enqueue / enqueue_many"),
            Side("peer: procrastinate defer / batch_defer"),
            Side("peer: pgqueuer (asyncpg) enqueue"),
        ]
        trials = [lambda: routines("postgres", n), lambda: procrastinate(n), lambda: pgqueuer(n)]
        if redis_missing() is None:
            sides.append(Side("reference: rq on Redis enqueue / enqueue_many"))
            trials.append(lambda: rq(n))
        measure(sides, trials, settings.durable_repeats, warmups=0)
        goals = {("pgqueuer", "one at a time"): 1.2, ("pgqueuer", "batch"): 2.0}
        figures.append(_figure("7b", "Enqueue on PostgreSQL", workload, sides, goals))
    else:
        figures.append(Figure.skipped_because("7b", "Enqueue on PostgreSQL", missing))
    return figures


def _figure(
    number: str,
    title: str,
    workload: str,
    sides: list[Side],
    goals: dict[tuple[str, str], float],
) -> Figure:
    """The figure, its goal: at least 1.0x every peer, and more against those `goals` names
    (issue 31: the peer's name, the metric, the ratio)."""
    figure = Figure(
        number=number,
        title=title,
        workload=workload,
        metrics=METRICS,
        unit="jobs/s",
        better="higher",
        sides=sides,
    )
    peers = [side for side in sides[1:] if side.name.startswith("peer")]
    missed, shown = [], []
    for side in peers:
        for metric in METRICS:
            ratio = figure.ratio(side, metric)
            if math.isnan(ratio):
                continue
            wanted = next(
                (want for (peer, of), want in goals.items() if peer in side.name and of == metric),
                1.0,
            )
            peer = side.name.removeprefix("peer: ").split()[0]
            shown.append(f"{peer} {metric} {ratio:.2f}x")
            if ratio < wanted:
                missed.append(f"{peer} {metric} {ratio:.2f}x < {wanted:g}x")
    wanted_text = ", ".join(f"{want:g}x {peer} {of}" for (peer, of), want in goals.items())
    figure.goal = Goal(
        f"at least 1.0x every peer on the same backend, and {wanted_text}",
        not missed,
        "; ".join(missed) if missed else ", ".join(shown),
    )
    return figure
