"""Figure 15: what flow control costs: processing throughput of N trivial jobs already queued,
worked by one `QueueWorker(concurrency=4)`, with no limits and with each kind of limit set so
high that it never holds a job back, so what is measured is the limited claim itself (its lock
on the queue's row, its counts, and claiming for free handlers only: no prefetch).

Every trial starts on a new, empty database, sets the limits, enqueues the N jobs untimed with
the batch API (in 50 groups), then times from starting the worker until the last job's outcome
is stored, as figure 8 does. The ratio is each limit's throughput against no limits on the same
backend.
"""

from __future__ import annotations

from typing import Any

from _common import Figure, Settings, Side, measure
from _durable import fresh_store_url, postgres_missing, process_backlog

from routines import durable

HANDLERS = 4
GROUPS = 50
# Each limit, never reached by one worker of 4 handlers.
LIMITS: dict[str, dict[str, Any]] = {
    "no limits": {},
    "max_running=1000": {"max_running": 1000},
    f"group_running=1000, {GROUPS} groups": {"group_running": 1000},
    "rate=(1000000, 1.0)": {"rate": (1_000_000, 1.0)},
}


def routines(backend: str, n: int, limits: dict[str, Any]) -> dict[str, float]:
    with fresh_store_url(backend) as url, durable.open_store(url) as store:
        queue = store.queue("bench")
        if limits:
            queue.set_limits(**limits)
        per_group = -(-n // GROUPS)
        for group in range(GROUPS):
            queue.enqueue_many(range(per_group), group=f"group:{group}")
        total = per_group * GROUPS
        return {"throughput": process_backlog(queue, total, handlers=HANDLERS)}


def run(settings: Settings) -> list[Figure]:
    n = settings.durable_jobs
    figures = []
    for letter, backend in (("a", "sqlite"), ("b", "postgres")):
        engine = "SQLite" if backend == "sqlite" else "PostgreSQL"
        title = f"Processing with limits that hold nothing back, on {engine}"
        if backend == "postgres" and (missing := postgres_missing()) is not None:
            figures.append(Figure.skipped_because(f"15{letter}", title, missing))
            continue
        sides = [
            Side(f"routines, {name}" if not limits else f"with {name}")
            for name, limits in LIMITS.items()
        ]
        trials = [
            lambda e=backend, limits=limits: routines(e, n, limits) for limits in LIMITS.values()
        ]
        measure(sides, trials, settings.durable_repeats, warmups=0)
        figures.append(
            Figure(
                number=f"15{letter}",
                title=title,
                workload=(
                    f"{n:,} trivial jobs in {GROUPS} groups, QueueWorker(concurrency={HANDLERS}); "
                    "ratio: each limit's throughput against no limits"
                ),
                metrics=["throughput"],
                unit="jobs/s",
                better="higher",
                sides=sides,
                speedup=True,
            )
        )
    return figures
