"""Figure 9: wake-up latency: from `enqueue` returning to the handler starting, in an idle
worker in another process, one job at a time (the next enqueued once the last one started).
A SQLite worker in another process is woken by its doorbell (a Unix datagram socket the enqueue
rings after its commit), with the default `poll_interval` (1 s) as the floor.

Both times are CLOCK_MONOTONIC (`time.monotonic()`), one clock for every process of the
machine. Each trial first runs one unmeasured job, so the worker is surely listening.
"""

from __future__ import annotations

import queue
import statistics
import threading
import time

from _common import Figure, Goal, Settings, Side, measure, percentile
from _durable import Child, fresh_directory, postgres_missing, redis_missing
from _producers import environment

from routines import durable

GOAL = 0.005  # seconds, the median on PostgreSQL and on SQLite, in one process and another
Latency = dict[str, float]


def _summary(latencies: list[float]) -> Latency:
    return {"median": statistics.median(latencies), "p99": percentile(latencies, 0.99)}


def other_process(side: str, n: int, **config: object) -> Latency:
    with (
        environment(side) as (producer, library, worker_config),
        Child("worker", library, **worker_config, **config) as child,
    ):
        child.expect("ready", 60.0)
        producer.enqueue(-1)
        child.expect("started", 60.0)
        latencies = []
        for i in range(n):
            producer.enqueue(i)
            enqueued = time.monotonic()
            line = child.expect("started", 60.0)
            if line["job"] != i:
                msg = f"{side}: job {line['job']} started where {i} was expected"
                raise RuntimeError(msg)
            latencies.append(line["at"] - enqueued)
        child.terminate()
    return _summary(latencies)


def same_process_sqlite(n: int) -> Latency:
    """The worker on a thread of the enqueuing process: woken in-process, no poll."""
    started: queue.SimpleQueue[tuple[object, float]] = queue.SimpleQueue()
    with fresh_directory() as directory:
        store = durable.open_store(f"sqlite:///{directory / 'jobs.db'}")
        jobs = store.queue("bench")
        worker = durable.QueueWorker(
            jobs, lambda job: started.put((job.payload, time.monotonic())), name="bench"
        )
        thread = threading.Thread(target=worker.start, name="bench-worker")
        thread.start()
        try:
            jobs.enqueue(-1)
            started.get(timeout=60.0)
            latencies = []
            for i in range(n):
                jobs.enqueue(i)
                enqueued = time.monotonic()
                payload, at = started.get(timeout=60.0)
                if payload != i:
                    msg = f"job {payload} started where {i} was expected"
                    raise RuntimeError(msg)
                latencies.append(at - enqueued)
        finally:
            worker.stop()
            thread.join(60.0)
            store.close()
    return _summary(latencies)


def run(settings: Settings) -> Figure:
    n = settings.wakeups
    sides = [
        Side("routines: SQLite, worker in the same process"),
        Side("routines: SQLite, worker in another process"),
        Side("peer: huey SqliteHuey consumer"),
    ]
    sides[1].note = "its doorbell, rung after the enqueue commits (poll_interval=1s, the default)"
    sides[2].note = "polls: its defaults, 0.1s growing x1.15 while idle"
    sides[2].against = sides[1]  # both from another process
    trials = [
        lambda: same_process_sqlite(n),
        lambda: other_process("routines-sqlite", n),
        lambda: other_process("huey", n),
    ]
    postgres = postgres_missing()
    if postgres is None:
        sides += [
            Side("routines: PostgreSQL (LISTEN/NOTIFY)"),
            Side("peer: procrastinate (LISTEN/NOTIFY)"),
            Side("peer: pgqueuer (LISTEN/NOTIFY)"),
        ]
        for peer in sides[4:]:
            peer.against = sides[3]
        trials += [
            lambda: other_process("routines-postgres", n),
            lambda: other_process("procrastinate", n),
            lambda: other_process("pgqueuer", n),
        ]
    if redis_missing() is None:
        sides.append(Side("reference: rq on Redis"))
        sides[-1].note = "blocking pop; forks a work horse per job"
        sides[-1].against = sides[3] if postgres is None else sides[1]
        trials.append(lambda: other_process("rq", n))
    measure(sides, trials, settings.durable_repeats, warmups=0)
    figure = Figure(
        number=9,
        title="Wake-up latency",
        workload=f"{n} jobs one at a time, from enqueue returning to the handler starting",
        metrics=["median", "p99"],
        unit="s",
        better="lower",
        sides=sides,
    )
    in_process = sides[0].median("median")
    other = sides[1].median("median")
    pg = sides[3].median("median") if postgres is None else float("nan")
    met = in_process < GOAL and other < GOAL and (postgres is not None or pg < GOAL)
    shown = f"SQLite in one process {in_process * 1e3:.2f} ms, from another {other * 1e3:.2f} ms"
    if postgres is None:
        shown += f", PostgreSQL {pg * 1e3:.2f} ms"
    figure.goal = Goal(
        f"median under {GOAL * 1e3:g} ms on PostgreSQL and on SQLite (in one process and from"
        " another)",
        met,
        shown,
    )
    return figure
