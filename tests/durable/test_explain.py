"""Every query of the job browser is served by an index, on both backends: its plan (SQLite
`EXPLAIN QUERY PLAN`, PostgreSQL `EXPLAIN`), on a table of tens of thousands of jobs after the
planner's statistics were gathered (SQLite `ANALYZE`; PostgreSQL `VACUUM ANALYZE`, as its
autovacuum does), has no full scan of the jobs table (spec/OPERATIONS.md, section 2).

A plan is the planner's choice for these rows: it shows that an index can serve the query and
is chosen over reading the table, not what a page costs (benchmarks/fig12_listing.py has that).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from routines import durable
from routines.durable import _statements as sql
from routines.durable._model import ID_MAX, JOB_STATES

from .conftest import DRIVERS, make_target
from .support import driver_of, fill_jobs

Params = dict[str, Any]


FILL = [  # (count, queue, state, task)
    (20_000, "bulk", "completed", None),
    (2_000, "bulk", "failed", None),
    (2_000, "bulk", "queued", None),
    (1_000, "bulk", "failed", "mail.send"),
    (1_000, "bulk", "completed", "mail.send"),
    (500, "bulk", "canceled", None),
    (1_000, "other", "errored", None),
    (200, "other", "processing", None),
]


@pytest.fixture(scope="module", params=DRIVERS)
def big(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[durable.Store]:
    """A store of each backend with 27,700 jobs, its statistics gathered; filled once for the
    module (filling is the slow part)."""
    with make_target(request.param, tmp_path_factory.mktemp("explain")) as target:
        store = target.open()
        for count, queue, state, task in FILL:
            fill_jobs(store, count, queue=queue, state=state, task=task)
        store.queue("paused").pause()
        statistics = "ANALYZE" if target.kind == "sqlite" else "VACUUM ANALYZE {jobs}"
        driver_of(store).run(lambda session: session.count(statistics), transaction=False)
        yield store


def plan(store: durable.Store, template: str, params: Params) -> list[str]:
    """The lines of the statement's plan."""
    driver = driver_of(store)
    explain = "EXPLAIN QUERY PLAN " if driver.dialect.name == "sqlite" else "EXPLAIN "
    rows = driver.run(lambda session: session.rows(explain + template, params), transaction=False)
    return [str(row[-1]) for row in rows]


def full_scans(store: durable.Store, lines: list[str]) -> list[str]:
    """The lines that read the whole jobs table (or an alias of it) row by row."""
    if driver_of(store).dialect.name == "sqlite":
        jobs = {f"{store.schema}_jobs", "live"}
        return [
            line
            for line in lines
            if (found := re.match(r"\s*SCAN (\S+)", line))
            and found.group(1) in jobs
            and "USING" not in line
        ]
    return [line for line in lines if re.search(r"Seq Scan on jobs\b", line)]


def page_params(states: tuple[str, ...], *, through: int = ID_MAX) -> Params:
    states_given = {f"state_{n}": state for n, state in enumerate(states)}
    return {"queue": "bulk", "task": "mail.send", "limit": 50, "through": through, **states_given}


def batch_ids(store: durable.Store, state: str) -> list[int]:
    rows = driver_of(store).run(
        lambda session: session.rows(
            sql.BATCH, {"queue": "bulk", "state": state, "through": ID_MAX, "batch": 500}
        ),
        transaction=False,
    )
    return [int(row[0]) for row in rows]


def queries(store: durable.Store) -> list[tuple[str, str, Params]]:
    """Every query of the browser, named, with parameters that fit the table."""
    failed = batch_ids(store, "failed")
    queued = batch_ids(store, "queued")
    assert len(failed) == len(queued) == 500
    listed: list[tuple[str, str, Params]] = []
    for states in [("failed",), ("failed", "canceled"), JOB_STATES]:
        for task in (False, True):
            for through in (ID_MAX, failed[-1]):  # the first page, and one deeper down
                listed.append(
                    (
                        f"jobs(state={states}, task={task}, before={through})",
                        sql.job_page(len(states), task=task),
                        page_params(states, through=through),
                    )
                )
    batch = {"queue": "bulk", "state": "failed", "through": failed[-1], "batch": 500}
    retry = {"queue": "bulk", "states": ["failed"], "low": failed[-1], "high": failed[0]}
    cancel = {"queue": "bulk", "states": ["queued"], "low": queued[-1], "high": queued[0]}
    one = {"queue": "bulk", "states": ["failed", "canceled"], "low": failed[0], "high": failed[0]}
    return [
        *listed,
        ("a batch of retry_all/cancel_all", sql.BATCH, batch),
        ("retry_all's write of a batch", sql.RETRY, retry),
        ("cancel_all's write of a batch", sql.CANCEL, cancel),
        ("retry of one job", sql.RETRY, one),
        ("cancel of one job", sql.CANCEL, {**one, "states": ["queued", "errored"]}),
        ("run_now", sql.RUN_NOW, {"queue": "bulk", "id": queued[0]}),
        ("store.job: a job of any queue by its id", sql.JOB_OF_ANY_QUEUE, {"id": failed[0]}),
        ("queues: the counts", sql.ALL_COUNTS, {}),
        ("queues: the oldest ready ages", sql.ALL_OLDEST_READY_AGES, {}),
        ("a worker's backlog", sql.BACKLOG, {"queue": "bulk"}),
    ]


def test_no_query_of_the_job_browser_reads_the_whole_jobs_table(big: durable.Store) -> None:
    scans = {}
    for name, template, params in queries(big):
        lines = plan(big, template, params)
        assert lines, name
        found = full_scans(big, lines)
        if found:
            scans[name] = lines
    assert scans == {}


def test_the_check_finds_a_full_scan_where_there_is_one(big: durable.Store) -> None:
    """The detector itself: a query no index serves is reported."""
    lines = plan(big, "SELECT count(*) FROM {jobs} WHERE last_error = :error", {"error": "x"})
    assert full_scans(big, lines), lines


def test_the_listings_give_what_the_table_holds(big: durable.Store) -> None:
    """The big table is what the plans were read on: its listings are right too."""
    bulk = big.queue("bulk")
    page = bulk.jobs(state="failed", task="mail.send", limit=1000)
    assert len(page) == 1000
    assert {job.payload["task"] for job in page} == {"mail.send"}
    infos = {info.name: info for info in big.queues()}
    assert infos["bulk"].counts["completed"] == 21_000
    assert infos["other"].counts["errored"] == 1_000
    assert infos["paused"].paused
