"""Figure 12: the job browser on a big table: the first page of failed jobs, a page halfway
down, and `store.queues()`, with 1,000 jobs in the table and with 1,000,000.

Every trial starts on a new, empty database, fills it untimed with one statement (a recursive
CTE numbering the rows: no million enqueues), 90% of the jobs completed and 10% failed, and
gathers the planner's statistics (SQLite `ANALYZE`, PostgreSQL `VACUUM ANALYZE`, as autovacuum
would); then it times each call, the median of `_READS` calls after one untimed.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from _common import Figure, Goal, Settings, Side, measure
from _durable import fresh_store_url, postgres_missing

from routines import durable
from routines.durable._sqlstore import SQLStore
from routines.durable._store import store_access

METRICS = ["first page", "page halfway", "queues()"]
SMALL = 1_000
_READS = 25
_GOAL = 2.0  # the big table's first page within this many times the small one's
_FILL = """
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count)
    INSERT INTO {jobs} (queue, payload, state, priority, attempts, max_attempts, enqueued_at,
                        run_after, started_at, finished_at, worker, last_error)
    SELECT 'bench', :payload{as_json},
           CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'completed' END, 0, 1, 1, {now}, {now},
           {now}, {now}, 'bench-worker', CASE WHEN i % 10 = 0 THEN :error END
    FROM n
"""
_PAYLOAD = '{"task": "mail.send", "args": ["ada@example.com"], "kwargs": {"subject": "hi"}}'
_ERROR = "RuntimeError: the mail server said no\nTraceback (most recent call last): ..."


def _fill(store: durable.Store, count: int) -> None:
    """`count` jobs written by the database itself, and the planner's statistics of them."""
    backend = store_access(store).backend()
    assert isinstance(backend, SQLStore)
    driver = backend.driver
    params = {"count": count, "payload": _PAYLOAD, "error": _ERROR}
    driver.run(lambda session: session.count(_FILL, params), transaction=True)
    statistics_of = "ANALYZE" if driver.dialect.name == "sqlite" else "VACUUM ANALYZE {jobs}"
    driver.run(lambda session: session.count(statistics_of), transaction=False)


def _median_time(call: Callable[[], object]) -> float:
    call()
    times = []
    for _ in range(_READS):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def trial(backend: str, count: int) -> dict[str, float]:
    with fresh_store_url(backend) as url, durable.open_store(url, timeout=600.0) as store:
        _fill(store, count)
        queue = store.queue("bench")
        first = queue.jobs(state="failed")
        halfway = count // 2 + 1  # below it, count // 20 failed jobs: 50 at least
        deep = queue.jobs(state="failed", before=halfway)
        if len(first) != 50 or len(deep) != 50 or deep[0].id >= halfway:
            msg = f"{count} jobs: pages of {len(first)} and {len(deep)} failed jobs"
            raise RuntimeError(msg)
        return {
            "first page": _median_time(lambda: queue.jobs(state="failed")),
            "page halfway": _median_time(lambda: queue.jobs(state="failed", before=halfway)),
            "queues()": _median_time(store.queues),
        }


def run(settings: Settings) -> list[Figure]:
    big = settings.listing_jobs
    figures = []
    for number, backend, title in [("12a", "sqlite", "SQLite"), ("12b", "postgres", "PostgreSQL")]:
        title = f"Listing failed jobs on {title}"
        missing = postgres_missing() if backend == "postgres" else None
        if missing is not None:
            figures.append(Figure.skipped_because(number, title, missing))
            continue
        sides = [Side(f"{big:,} jobs in the table"), Side(f"{SMALL:,} jobs in the table")]
        sides[1].note = "ratio: how many times longer with the big table"
        measure(
            sides,
            [lambda b=backend: trial(b, big), lambda b=backend: trial(b, SMALL)],
            settings.durable_repeats,
            warmups=0,
        )
        workload = (
            f"queue.jobs(state='failed'), 50 a page, and store.queues(): median of {_READS} calls;"
            " 10% of the jobs failed, the rest completed"
        )
        figure = Figure(
            number=number,
            title=title,
            workload=workload,
            metrics=METRICS,
            unit="s",
            better="lower",
            sides=sides,
        )
        ratio = figure.ratio(sides[1], "first page")
        figure.goal = Goal(
            f"the first page with {big:,} jobs within {_GOAL:g}x of {SMALL:,}",
            ratio <= _GOAL,
            f"{ratio:.2f}x",
        )
        figures.append(figure)
    return figures
