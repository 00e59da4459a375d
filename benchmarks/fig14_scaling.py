"""Figure 14: processing throughput as the fleet and the backlog grow: 1, 2 and 4 worker
processes (each a `QueueWorker(concurrency=4)`), on a backlog of 10,000 jobs and of 100,000.

Every trial starts on a new, empty database, enqueues the backlog untimed with the batch API,
starts the worker processes, and times from the moment all of them said they are ready until
the store counts every job completed (read every 50 ms). The ratio is throughput against one
process on the same backend and backlog: does throughput hold as processes are added, and as
the table grows and dead rows pile up?
"""

from __future__ import annotations

import time

from _common import Figure, Settings, Side, measure
from _durable import Child, fresh_store_url, postgres_missing

from routines import durable

HANDLERS = 4
PROCESSES = (1, 2, 4)
Rate = dict[str, float]


def routines(backend: str, backlog: int, processes: int) -> Rate:
    with fresh_store_url(backend) as url, durable.open_store(url) as store:
        queue = store.queue("bench")
        for start in range(0, backlog, 10_000):
            queue.enqueue_many(range(start, min(backlog, start + 10_000)))
        children = [Child("throughput", "routines", url=url, handlers=HANDLERS)]
        children += [
            Child("throughput", "routines", url=url, handlers=HANDLERS)
            for _ in range(processes - 1)
        ]
        try:
            for child in children:
                said = child.read(60.0)
                if said is None or said.get("event") != "ready":
                    msg = f"a worker process did not start: {said}"
                    raise RuntimeError(msg)
            began = time.perf_counter()
            deadline = time.monotonic() + 1200.0
            while queue.counts()["completed"] < backlog:
                if time.monotonic() > deadline:
                    msg = f"the backlog was not worked within 20 minutes: {queue.counts()}"
                    raise RuntimeError(msg)
                time.sleep(0.05)
            elapsed = time.perf_counter() - began
        finally:
            for child in children:
                child.kill()
        return {"throughput": backlog / elapsed}


def run(settings: Settings) -> list[Figure]:
    backlogs = (settings.durable_jobs, settings.scaling_jobs)
    figures = []
    for letter, backend in (("a", "sqlite"), ("b", "postgres")):
        engine = "SQLite" if backend == "sqlite" else "PostgreSQL"
        title = f"Throughput as processes are added, on {engine}"
        if backend == "postgres" and (missing := postgres_missing()) is not None:
            figures.append(Figure.skipped_because(f"14{letter}", title, missing))
            continue
        sides: list[Side] = []
        trials = []
        for backlog in backlogs:
            one = None
            for processes in PROCESSES:
                side = Side(f"{processes} process{'es' if processes > 1 else ''}, {backlog:,} jobs")
                side.against = one
                one = one or side
                sides.append(side)
                trials.append(lambda e=backend, b=backlog, p=processes: routines(e, b, p))
        measure(sides, trials, settings.durable_repeats, warmups=0)
        figures.append(
            Figure(
                number=f"14{letter}",
                title=title,
                workload=(
                    f"a backlog of {backlogs[0]:,} and of {backlogs[1]:,} trivial jobs, "
                    f"QueueWorker(concurrency={HANDLERS}) per process; ratio against 1 process"
                ),
                metrics=["throughput"],
                unit="jobs/s",
                better="higher",
                sides=sides,
                speedup=True,
            )
        )
    return figures
