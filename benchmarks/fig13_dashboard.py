"""Figure 13: the dashboard (`routines.dashboard`) on a big store: the overview of 50 queues
and 100,000 jobs, a queue's page of failed jobs, and one job's page, rendered through the WSGI
application as a browser's request would be (no server, no network: the time is the page's).

Every trial starts on a new, empty database, filled untimed by one statement (a recursive CTE
numbering the rows, as in figure 12): 5% of the jobs failed, 5% queued, 5% errored, 2%
canceled, the rest completed, spread over 50 queues; then the planner's statistics. Each page
is the median of `_READS` requests after one untimed.
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable

from _common import Figure, Goal, Settings, Side, measure
from _durable import fresh_store_url, postgres_missing

from routines import durable
from routines.durable._sqlstore import SQLStore
from routines.durable._store import store_access

METRICS = ["overview", "queue page", "job page"]
QUEUES = 50
_READS = 15
_GOAL = 1.0  # seconds: the overview renders within this
_FILL = """
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count)
    INSERT INTO {jobs} (queue, payload, state, priority, attempts, max_attempts, enqueued_at,
                        run_after, started_at, finished_at, worker, last_error, task)
    SELECT 'queue-' || (i % :queues), :payload{as_json},
           CASE WHEN i % 20 = 0 THEN 'failed' WHEN i % 20 = 1 THEN 'queued'
                WHEN i % 20 = 2 THEN 'errored' WHEN i % 50 = 3 THEN 'canceled'
                ELSE 'completed' END,
           0, 1, 5, {now}, {now}, {now}, {now}, 'bench-worker:1:abc',
           CASE WHEN i % 20 IN (0, 2) THEN :error END, 'mail.send'
    FROM n
"""
_PAYLOAD = '{"task": "mail.send", "args": ["ada@example.com"], "kwargs": {"subject": "hi"}}'
_ERROR = (
    'Traceback (most recent call last):\n  File "app/mail.py", line 12, in send\n'
    "ConnectionRefusedError: [Errno 111] Connection refused"
)


def _fill(store: durable.Store, count: int) -> None:
    """`count` jobs over `QUEUES` queues, written by the database itself, and its statistics."""
    backend = store_access(store).backend()
    assert isinstance(backend, SQLStore)
    driver = backend.driver
    params = {"count": count, "queues": QUEUES, "payload": _PAYLOAD, "error": _ERROR}
    driver.run(lambda session: session.count(_FILL, params), transaction=True)
    statistics_of = "ANALYZE" if driver.dialect.name == "sqlite" else "VACUUM ANALYZE {jobs}"
    driver.run(lambda session: session.count(statistics_of), transaction=False)


def _get(app: Callable[..., object], path: str) -> bytes:
    """A GET of `path`, as a WSGI server would make it; the page (asserted to be served)."""
    query = ""
    if "?" in path:
        path, query = path.split("?", 1)
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "bench",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
    }
    answered: list[str] = []
    body = b"".join(app(environ, lambda status, headers: answered.append(status)))  # type: ignore[operator]
    if answered != ["200 OK"]:
        msg = f"GET {path}: {answered} {body[:300]!r}"
        raise RuntimeError(msg)
    return body


def _median_time(call: Callable[[], object]) -> float:
    call()
    times = []
    for _ in range(_READS):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def trial(backend: str, count: int) -> dict[str, float]:
    from routines import dashboard

    with fresh_store_url(backend) as url, durable.open_store(url, timeout=600.0) as store:
        _fill(store, count)
        app = dashboard.app(store)
        overview = _get(app, "/")
        if overview.count(b'<th scope="row">\n<a href="/queues/queue-') != QUEUES:
            msg = f"the overview does not show the {QUEUES} queues"
            raise RuntimeError(msg)
        failed = store.queue("queue-0").jobs(state="failed", limit=1)[0].id
        return {
            "overview": _median_time(lambda: _get(app, "/")),
            "queue page": _median_time(lambda: _get(app, "/queues/queue-0?state=failed")),
            "job page": _median_time(lambda: _get(app, f"/queues/queue-0/jobs/{failed}")),
        }


def run(settings: Settings) -> Figure:
    count = settings.dashboard_jobs
    title = "The dashboard's pages"
    try:
        import jinja2  # noqa: F401
    except ImportError:
        return Figure.skipped_because(
            13, title, "jinja2 is not installed (pip install -e '.[bench]')"
        )
    sides = [Side("SQLite")]
    trials = [lambda: trial("sqlite", count)]
    missing = postgres_missing()
    if missing is None:
        sides.append(Side("PostgreSQL"))
        trials.append(lambda: trial("postgres", count))
    measure(sides, trials, settings.durable_repeats, warmups=0)
    workload = (
        f"{count:,} jobs in {QUEUES} queues; a GET through the WSGI app, median of {_READS}"
        + ("" if missing is None else f"; PostgreSQL skipped: {missing}")
    )
    figure = Figure(
        number=13,
        title=title,
        workload=workload,
        metrics=METRICS,
        unit="s",
        better="lower",
        sides=sides,
        ratios=False,
    )
    slowest = max(side.median("overview") for side in sides)
    figure.goal = Goal(
        f"the overview of {QUEUES} queues and {count:,} jobs within {_GOAL:g} s",
        slowest <= _GOAL,
        f"slowest {slowest * 1000:.0f} ms",
    )
    return figure
