"""What each page shows, read through the public API of `routines.durable` and of the Monitor
(no SQL, nothing private of the store): what a user's script could read, shaped for a template.

Every call here is one of the short reads of docs/durable.md, "Seeing and acting on jobs": a
page reads a page of jobs, never a table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any, Final, get_args

from typing_extensions import final

from .. import Monitor, RoutineStatus
from .._status import error_text
from ..durable import Job, JobState, Queue, QueueInfo, Store
from ._http import BadRequest, Urls

__all__ = [
    "BACKLOG_AFTER",
    "JOB_STATES",
    "NOTICES",
    "PAGE_SIZE",
    "SHOWN_STATES",
    "Alert",
    "id_arg",
    "job_page",
    "notice",
    "overview_page",
    "queue_of",
    "queue_page",
    "routine_time",
    "schedule_page",
]

JOB_STATES: Final[tuple[JobState, ...]] = get_args(JobState)
# The order the pages show the states in: what may need a hand first, so that a phone, which
# shows the first columns of a table, shows those.
SHOWN_STATES: Final[tuple[JobState, ...]] = (
    "failed",
    "errored",
    "queued",
    "processing",
    "completed",
    "canceled",
)
PAGE_SIZE: Final = 50  # jobs on a page of a queue
RUNS_SHOWN: Final = 50  # runs on a schedule's page, at first; "more" doubles it
MOST_RUNS: Final = 1000  # the runs a store keeps of a schedule
# A queue whose longest-waiting ready job has been due this long stands out as backlogged:
# its workers are too few, stuck, or gone.
BACKLOG_AFTER: Final = 60.0
# States a reader scanning the overview must see at once when they are not zero.
_ALARMING: Final = ("failed", "errored")

# What an action did, shown on the page it redirects to (`?done=<code>`): fixed texts, so
# nothing from the URL is written into the page.
NOTICES: Final[dict[str, tuple[str, str]]] = {
    "retried": ("ok", "The job went back to queued, due now, its attempts from 0."),
    "not-retried": (
        "warn",
        "Nothing done: only a failed or canceled job goes back to queued, and not while "
        "another job with its key is live.",
    ),
    "canceled": (
        "ok",
        "Canceled (a running job was asked to stop: it ends canceled when its handler returns).",
    ),
    "not-canceled": ("warn", "Nothing done: the job had already ended."),
    "run-now": ("ok", "The job is due now: the next free worker takes it."),
    "not-waiting": ("warn", "Nothing done: the job is not waiting (queued or errored)."),
    "paused": (
        "ok",
        "Paused: no worker of the fleet claims from this queue until it is resumed; "
        "running jobs finish and enqueue goes on.",
    ),
    "resumed": ("ok", "Resumed: the workers claim from this queue again."),
    "retried-all": ("ok", "{count} failed jobs went back to queued."),
}


@final
@dataclass(frozen=True)
class Alert:
    """One line of the overview's "needs attention" list, with the page that shows more."""

    text: str
    href: str
    level: str  # "bad" (something failed) or "warn" (held back, behind)


@final
@dataclass(frozen=True)
class QueueRow:
    info: QueueInfo
    total: int
    backlogged: bool

    @property
    def name(self) -> str:
        return self.info.name


def notice(code: str | None, count: str | None) -> tuple[str, str] | None:
    """The notice of `?done=code` (and `&count=`), or None for none or an unknown code."""
    if code is None or code not in NOTICES:
        return None
    kind, text = NOTICES[code]
    if "{count}" in text:
        number = int(count) if count is not None and count.isdigit() else 0
        text = text.format(count=f"{number:,}")
    return kind, text


def overview_page(store: Store, monitor: Monitor | None, urls: Urls) -> dict[str, Any]:
    """Every queue, schedule, migration and lease, and the Monitor's routines: what is on fire
    first."""
    rows = [
        QueueRow(
            info,
            sum(info.counts.values()),
            info.oldest_ready_age is not None and info.oldest_ready_age >= BACKLOG_AFTER,
        )
        for info in store.queues()
    ]
    schedules = store.schedules()
    migrations = store.migrations()
    leases = store.leases()
    statuses: list[RoutineStatus] | None = None
    healthy: bool | None = None
    if monitor is not None:
        statuses = monitor.status()
        healthy = monitor.healthy()
    alerts: list[Alert] = []
    for row in rows:
        href = urls.queue(row.name)
        for state in _ALARMING:
            count = row.info.counts.get(state, 0)
            if count:
                level = "bad" if state == "failed" else "warn"
                alerts.append(
                    Alert(
                        f"{row.name}: {count:,} {state}", urls.queue(row.name, state=state), level
                    )
                )
        if row.info.paused:
            alerts.append(Alert(f"{row.name}: paused", href, "warn"))
        if row.backlogged:
            alerts.append(Alert(f"{row.name}: backlogged", href, "warn"))
    for schedule in schedules:
        if schedule.last_run is not None and schedule.last_run.state == "failed":
            alerts.append(
                Alert(
                    f"schedule {schedule.name}: last run failed",
                    urls.schedule(schedule.name),
                    "bad",
                )
            )
    for migration in migrations:
        if migration.errors:
            alerts.append(Alert(f"migration {migration.id}: errors", "#migrations", "bad"))
    if statuses is not None:
        failing = [status for status in statuses if status.state in ("failed", "restarting")]
        for status in failing:
            alerts.append(Alert(f"routine {status.name}: {status.state}", "#routines", "bad"))
        if not healthy and not failing:
            alerts.append(Alert("routines of this process: not healthy", "#routines", "bad"))
    totals = {state: sum(row.info.counts.get(state, 0) for row in rows) for state in JOB_STATES}
    return {
        "queues": rows,
        "totals": totals,
        "alerts": alerts,
        "schedules": schedules,
        "migrations": migrations,
        "leases": leases,
        "routines": statuses,
        "healthy": healthy,
        "backlog_after": BACKLOG_AFTER,
    }


def _state_arg(value: str | None) -> JobState | None:
    if value is None:
        return None
    for state in JOB_STATES:
        if value == state:
            return state
    msg = f"state must be one of {', '.join(JOB_STATES)}, got {value!r}"
    raise BadRequest(msg)


def id_arg(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or not 0 < int(value) < 2**63:
        msg = f"{name} must be a job id (a positive whole number), got {value!r}"
        raise BadRequest(msg)
    return int(value)


def queue_page(
    store: Store, name: str, *, state: str | None, task: str | None, before: str | None
) -> dict[str, Any]:
    """A page of a queue's jobs, newest first, in one state (or all), of one task (or all):
    keyset-paged with `before`."""
    chosen = _state_arg(state)
    older_than = id_arg("before", before)
    queue = queue_of(store, name)
    try:
        listed = queue.jobs(state=chosen, task=task, limit=PAGE_SIZE + 1, before=older_than)
    except ValueError as error:  # a task name the store refuses (too long, NUL)
        raise BadRequest(error_text(error)) from None
    jobs = listed[:PAGE_SIZE]
    counts = queue.counts()
    return {
        "name": name,
        "state": chosen,
        "task": task,
        "before": older_than,
        "jobs": jobs,
        "next_before": jobs[-1].id if len(listed) > PAGE_SIZE else None,
        "counts": counts,
        "total": sum(counts.values()),
        "paused": queue.paused,
        "limits": queue.limits,
        "oldest_ready_age": queue.oldest_ready_age(),
        "backlog_after": BACKLOG_AFTER,
    }


def job_page(store: Store, queue_name: str, job_id: str) -> dict[str, Any]:
    """Every field of one job, its payload and result as JSON, its error as it was stored."""
    found = _find_job(store, queue_name, job_id)
    return {"job": found, "name": queue_name}


def _find_job(store: Store, queue_name: str, job_id: str) -> Job:
    number = id_arg("the job id", job_id)
    assert number is not None
    found = queue_of(store, queue_name).get(number)
    if found is None:
        msg = f"queue {queue_name!r} has no job {number} (it may have been purged)"
        raise BadRequest(msg, HTTPStatus.NOT_FOUND)
    return found


def schedule_page(store: Store, name: str, *, limit: str | None) -> dict[str, Any]:
    """A fleet-wide schedule's latest runs, newest tick first."""
    shown = RUNS_SHOWN
    if limit is not None:
        if not limit.isdigit() or not 0 < int(limit) <= MOST_RUNS:
            msg = f"limit must be a whole number from 1 to {MOST_RUNS}, got {limit!r}"
            raise BadRequest(msg)
        shown = int(limit)
    try:
        runs = store.schedule_runs(name, limit=shown + 1)
    except ValueError as error:
        raise BadRequest(error_text(error), HTTPStatus.NOT_FOUND) from None
    info = next((each for each in store.schedules() if each.name == name), None)
    more = min(MOST_RUNS, shown * 2) if len(runs) > shown and shown < MOST_RUNS else None
    return {"name": name, "info": info, "runs": runs[:shown], "more": more}


def queue_of(store: Store, name: str) -> Queue:
    try:
        return store.queue(name)
    except ValueError as error:  # a name no queue can have (too long, NUL)
        raise BadRequest(error_text(error), HTTPStatus.NOT_FOUND) from None


def routine_time(seconds: float | None) -> datetime | None:
    """A `RoutineStatus` time (wall-clock `time.time()` seconds) as a datetime, for `when`."""
    return None if seconds is None else datetime.fromtimestamp(seconds, timezone.utc)
