"""Figure 8: processing throughput: N trivial jobs already queued, worked by 4 handlers until
the last one is final.

Every trial starts on a new, empty database, enqueues the N jobs untimed with the library's
batch API, then times from starting the workers until the last job's outcome is stored.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import datetime, timedelta

from _common import Countdown, Figure, Goal, Settings, Side, measure
from _durable import (
    REDIS_URL,
    Child,
    fresh_database,
    fresh_directory,
    fresh_redis,
    fresh_store_url,
    postgres_missing,
    process_backlog,
    procrastinate_app,
    redis_missing,
)

from routines import durable

HANDLERS = 4
Rate = dict[str, float]


def routines(backend: str, n: int) -> Rate:
    with fresh_store_url(backend) as url, durable.open_store(url) as store:
        queue = store.queue("bench")
        queue.enqueue_many(range(n))
        return {"throughput": process_backlog(queue, n, handlers=HANDLERS)}


def huey_sqlite(n: int) -> Rate:
    from huey import SqliteHuey
    from huey.signals import SIGNAL_COMPLETE

    with fresh_directory() as directory:
        huey = SqliteHuey(filename=str(directory / "huey.db"))
        task = huey.task()(_noop)
        for i in range(n):  # huey has no batch enqueue
            task(i)
        ran = Countdown(n)
        huey.signal(SIGNAL_COMPLETE)(lambda *args, **kwargs: ran.arrive())
        consumer = huey.create_consumer(workers=HANDLERS, worker_type="thread", periodic=False)
        began = time.perf_counter()
        consumer.start()
        ran.wait(600.0)
        elapsed = time.perf_counter() - began
        consumer.stop(graceful=True)
        huey.storage.close()
        return {"throughput": n / elapsed}


def procrastinate(n: int) -> Rate:
    with procrastinate_app("noop", _noop) as (url, app, task):
        with app.open():
            task.batch_defer(*({"n": i} for i in range(n)))

        async def work() -> float:
            async with app.open_async():
                began = time.perf_counter()
                await app.run_worker_async(concurrency=HANDLERS, wait=False)
                return time.perf_counter() - began

        elapsed = asyncio.run(work())
        _check_postgres(
            url, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'", n
        )
        return {"throughput": n / elapsed}


def pgqueuer(n: int, *, capped: bool) -> Rate:
    return asyncio.run(_pgqueuer(n, capped=capped))


async def _pgqueuer(n: int, *, capped: bool) -> Rate:
    import asyncpg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.qm import QueueManager
    from pgqueuer.queries import Queries
    from pgqueuer.types import QueueExecutionMode

    with fresh_database("pgqueuer") as url:
        connection = await asyncpg.connect(url)
        try:
            queries = Queries(AsyncpgDriver(connection))
            await queries.install()
            await queries.enqueue(["noop"] * n, [str(i).encode() for i in range(n)], [0] * n)
            manager = QueueManager(queries)
            done = [0]

            @manager.entrypoint("noop")
            async def noop(job: object) -> None:
                done[0] += 1

            options = {"batch_size": 2, "max_concurrent_tasks": HANDLERS} if capped else {}
            began = time.perf_counter()
            await manager.run(
                mode=QueueExecutionMode.drain, dequeue_timeout=timedelta(seconds=1), **options
            )
            elapsed = time.perf_counter() - began
            left = await connection.fetchval("SELECT count(*) FROM pgqueuer")
        finally:
            await connection.close()
    if done[0] != n or left:
        msg = f"pgqueuer ran {done[0]} of {n} jobs and left {left}"
        raise RuntimeError(msg)
    return {"throughput": n / elapsed}


def rq(n: int) -> Rate:
    from _peer_tasks import noop
    from rq import Queue
    from rq.job import Job

    with fresh_redis() as redis:
        queue = Queue("bench", connection=redis)
        jobs = queue.enqueue_many([Queue.prepare_data(noop, (i,)) for i in range(n)])
        workers = [Child("rq-burst", "rq", queue="bench", redis=REDIS_URL) for _ in range(HANDLERS)]
        try:
            for worker in workers:
                worker.process.wait(600.0)
        finally:
            for worker in workers:
                worker.__exit__()
        fetched = Job.fetch_many([job.id for job in jobs], connection=redis)
        finished = [job for job in fetched if job is not None and job.is_finished]
        if len(finished) != n:
            msg = f"rq finished {len(finished)} of {n} jobs"
            raise RuntimeError(msg)
        began = min(_utc(job.started_at) for job in finished)
        ended = max(_utc(job.ended_at) for job in finished)
        return {"throughput": n / (ended - began).total_seconds()}


def _utc(moment: datetime | None) -> datetime:
    assert moment is not None
    return moment


def _noop(n: object = None) -> None:
    """The job: nothing."""


def _check_postgres(url: str, query: str, expected: int) -> None:
    import psycopg

    with psycopg.connect(url) as connection:
        row = connection.execute(query).fetchone()
    if row is None or row[0] != expected:
        msg = f"{query}: {row}, expected {expected}"
        raise RuntimeError(msg)


def run(settings: Settings) -> list[Figure]:
    n = settings.durable_jobs
    workload = f"{n:,} trivial jobs already queued, {HANDLERS} handlers, until the last is final"
    sqlite_sides = [
        Side(f"routines: QueueWorker(concurrency={HANDLERS})"),
        Side(f"peer: huey consumer, {HANDLERS} worker threads"),
    ]
    measure(
        sqlite_sides,
        [lambda: routines("sqlite", n), lambda: huey_sqlite(n)],
        settings.durable_repeats,
        warmups=0,
    )
    figures = [_figure("8a", "Processing on SQLite", workload, sqlite_sides)]
    missing = postgres_missing()
    if missing is not None:
        figures.append(Figure.skipped_because("8b", "Processing on PostgreSQL", missing))
        return figures
    sides = [
        Side(f"routines: QueueWorker(concurrency={HANDLERS})"),
        Side(f"peer: procrastinate worker, concurrency={HANDLERS}"),
        Side(f"peer: pgqueuer, max_concurrent_tasks={HANDLERS}"),
        Side("peer: pgqueuer, uncapped (batches of 10)"),
    ]
    sides[1].note = "sync job: a thread each"
    sides[2].note = "async job; forces batches of 2"
    sides[3].note = "async job; its default"
    trials = [
        lambda: routines("postgres", n),
        lambda: procrastinate(n),
        lambda: pgqueuer(n, capped=True),
        lambda: pgqueuer(n, capped=False),
    ]
    if redis_missing() is None:
        sides.append(Side(f"reference: rq on Redis, {HANDLERS} SimpleWorker processes"))
        sides[-1].note = "first start to last end, from rq's job records"
        trials.append(lambda: rq(n))
    measure(sides, trials, settings.durable_repeats, warmups=0)
    figures.append(_figure("8b", "Processing on PostgreSQL", workload, sides))
    return figures


def _figure(number: str, title: str, workload: str, sides: list[Side]) -> Figure:
    figure = Figure(
        number=number,
        title=title,
        workload=workload,
        metrics=["throughput"],
        unit="jobs/s",
        better="higher",
        sides=sides,
    )
    peers = [side for side in sides[1:] if side.name.startswith("peer")]
    fastest = max(peers, key=lambda side: side.median("throughput"))
    ratio = figure.ratio(fastest, "throughput")
    figure.goal = Goal(
        "at least 1.5x the fastest peer on the same backend (issue 31)",
        ratio >= 1.5 and not math.isnan(ratio),
        f"{ratio:.2f}x {fastest.name.removeprefix('peer: ')}",
    )
    return figure
