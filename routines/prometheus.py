"""Prometheus metrics for a Monitor and its routines (extra `routines[prometheus]`).

```python
from prometheus_client import REGISTRY
from routines.prometheus import MonitorCollector

REGISTRY.register(MonitorCollector(monitor))
```

A custom collector: it reads the Monitor's statuses (and, for the durable tier, the store) when
Prometheus scrapes, so the routines pay nothing for it. Metric names start with `routines_`,
use base units and `_total` for counters; labels are few and bounded (`routine`, `state`,
`queue`, `outcome`, `schedule`, `migration`), never a job id.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Final, get_args

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from typing_extensions import final

from ._context import Routine
from ._monitor import Monitor
from ._status import DURATION_BUCKETS, RoutineState, RoutineStatus, describe_error

if TYPE_CHECKING:
    from .durable import MigrationRunner, QueueLimits, QueueWorker, Scheduled

__all__ = ["MonitorCollector"]

logger = logging.getLogger("routines.prometheus")

_STATES: Final[tuple[RoutineState, ...]] = get_args(RoutineState)


@final
class MonitorCollector(Collector):
    """Collects a Monitor's metrics at scrape time; register it with a `CollectorRegistry`.

    Per routine: `routines_routine_up` (1 while running or waiting to restart),
    `routines_routine_state` (1 for its state), `routines_restarts_total`, `routines_runs_total`,
    `routines_failures_total`, `routines_missed_runs_total`, `routines_overdue_runs_total`,
    `routines_run_duration_seconds` (a histogram), `routines_queued_items` (a pool's queue), and
    the last run, last success and next run as `routines_*_timestamp_seconds`;
    `routines_healthy` for the Monitor. Two routines of one name are told apart as `name` and
    `name#2`, in the Monitor's order.

    For the durable tier's routines (found among the Monitor's, and inside a `Singleton`):
    `routines_queue_jobs{queue,state}`, `routines_queue_oldest_ready_age_seconds`,
    `routines_queue_paused` (1 while the queue is paused, fleet-wide), its limits where they are
    set (`routines_queue_limit_max_running`, `routines_queue_limit_group_running`,
    `routines_queue_limit_rate` and `routines_queue_limit_rate_seconds`, the rate's count and
    window), `routines_queue_attempts_total{queue,outcome}`, `routines_queue_stalled_resets_total`,
    `routines_queue_lost_claims_total`, `routines_schedule_last_run_timestamp_seconds`
    `{schedule,outcome}` and `routines_migration_progress{migration}`. A store that can't be
    reached leaves its metrics out of that scrape (logged), never fails it.
    """

    def __init__(self, monitor: Monitor) -> None:
        if not isinstance(monitor, Monitor):
            msg = f"monitor must be a routines.Monitor, got {monitor!r}"
            raise TypeError(msg)
        self._monitor = monitor

    def describe(self) -> list[Metric]:
        # Registering must not scrape (and reach the store): the metrics are described by name
        # only when they are collected.
        return []

    def collect(self) -> Iterator[Metric]:
        statuses = self._monitor.status()
        yield from _routine_metrics(statuses)
        healthy = GaugeMetricFamily(
            "routines_healthy", "1 while every routine runs or waits to restart as it should"
        )
        healthy.add_metric([], 1.0 if self._monitor.healthy() else 0.0)
        yield healthy
        try:
            yield from _durable_metrics(self._monitor.routines)
        except Exception as error:  # noqa: BLE001 - a scrape must not fail: logged, left out
            logger.warning(
                "the durable tier's metrics are left out of this scrape: %s",
                describe_error(error),
                extra={"event": "metrics_failed"},
            )


def _routine_metrics(statuses: list[RoutineStatus]) -> Iterator[Metric]:
    up = GaugeMetricFamily(
        "routines_routine_up", "1 while the routine runs or waits to restart", labels=["routine"]
    )
    state = GaugeMetricFamily(
        "routines_routine_state", "1 for the routine's state", labels=["routine", "state"]
    )
    counters = {
        "restarts": CounterMetricFamily(
            "routines_restarts", "restarts by the restart policy", labels=["routine"]
        ),
        "runs": CounterMetricFamily(
            "routines_runs", "runs of a periodic routine, pool or worker", labels=["routine"]
        ),
        "failures": CounterMetricFamily(
            "routines_failures", "runs that failed", labels=["routine"]
        ),
        "missed_runs": CounterMetricFamily(
            "routines_missed_runs", "fixed-rate due times a long run overran", labels=["routine"]
        ),
        "overdue_runs": CounterMetricFamily(
            "routines_overdue_runs", "runs longer than their run_timeout", labels=["routine"]
        ),
    }
    queued = GaugeMetricFamily(
        "routines_queued_items", "items accepted by a pool and not started", labels=["routine"]
    )
    durations = HistogramMetricFamily(
        "routines_run_duration_seconds", "how long runs took", labels=["routine"]
    )
    times = {
        "last_run_at": GaugeMetricFamily(
            "routines_last_run_timestamp_seconds", "when the last run ended", labels=["routine"]
        ),
        "last_success_at": GaugeMetricFamily(
            "routines_last_success_timestamp_seconds",
            "when the last run that did not fail ended",
            labels=["routine"],
        ),
        "next_run_at": GaugeMetricFamily(
            "routines_next_run_timestamp_seconds", "when the next run is due", labels=["routine"]
        ),
    }
    for status, label in zip(statuses, _routine_labels(statuses), strict=True):
        name = [label]
        up.add_metric(name, 1.0 if status.state in ("running", "restarting") else 0.0)
        for each in _STATES:
            state.add_metric([label, each], 1.0 if status.state == each else 0.0)
        for field, family in counters.items():
            family.add_metric(name, float(getattr(status, field)))
        queued.add_metric(name, float(status.queued))
        histogram = status.run_durations
        if histogram is not None:
            buckets = [
                (str(bound), float(n))
                for bound, n in zip(DURATION_BUCKETS, histogram.counts, strict=True)
            ]
            buckets.append(("+Inf", float(histogram.count)))
            durations.add_metric(name, buckets, histogram.sum)
        for field, gauge in times.items():
            moment = getattr(status, field)
            if moment is not None:
                gauge.add_metric(name, moment)
    yield up
    yield state
    yield from counters.values()
    yield queued
    yield durations
    yield from times.values()


def _routine_labels(statuses: list[RoutineStatus]) -> list[str]:
    """The `routine` label of each status: its name, or, for a name the Monitor holds more than
    once (names need not be unique), "<name>#2", "#3"... in the Monitor's order, so that no two
    routines share a series."""
    names = {status.name for status in statuses}  # a routine's own name is never taken
    used: set[str] = set()
    labels: list[str] = []
    for status in statuses:
        label, count = status.name, 1
        while label in used or (count > 1 and label in names):
            count += 1
            label = f"{status.name}#{count}"
        used.add(label)
        labels.append(label)
    return labels


def _durable_metrics(routines: Iterable[Routine]) -> Iterator[Metric]:
    from .durable import MigrationRunner, QueueWorker, Scheduled, Singleton

    workers: list[QueueWorker] = []
    schedules: list[Scheduled] = []
    runners: list[MigrationRunner] = []
    for routine in routines:
        inner = routine.routine if isinstance(routine, Singleton) else routine
        if isinstance(inner, QueueWorker):
            workers.append(inner)
        elif isinstance(inner, Scheduled):
            schedules.append(inner)
        elif isinstance(inner, MigrationRunner):
            runners.append(inner)
    if workers:
        yield from _queue_metrics(workers)
    if schedules:
        yield _schedule_metric(schedules)
    if runners:
        yield _migration_metric(runners)


def _queue_metrics(workers: list[QueueWorker]) -> Iterator[Metric]:
    jobs = GaugeMetricFamily(
        "routines_queue_jobs", "jobs of a durable queue in each state", labels=["queue", "state"]
    )
    oldest = GaugeMetricFamily(
        "routines_queue_oldest_ready_age_seconds",
        "how long the longest-waiting ready job has been due",
        labels=["queue"],
    )
    paused = GaugeMetricFamily(
        "routines_queue_paused", "1 while the queue is paused (no worker claims)", labels=["queue"]
    )
    limits = {
        "max_running": GaugeMetricFamily(
            "routines_queue_limit_max_running",
            "the most jobs of the queue processing at once, fleet-wide (when that limit is set)",
            labels=["queue"],
        ),
        "group_running": GaugeMetricFamily(
            "routines_queue_limit_group_running",
            "the most jobs of one group processing at once (when that limit is set)",
            labels=["queue"],
        ),
        "rate": GaugeMetricFamily(
            "routines_queue_limit_rate",
            "the most job starts in any window of routines_queue_limit_rate_seconds",
            labels=["queue"],
        ),
        "rate_seconds": GaugeMetricFamily(
            "routines_queue_limit_rate_seconds",
            "the window of the queue's rate limit",
            labels=["queue"],
        ),
    }
    attempts = CounterMetricFamily(
        "routines_queue_attempts",
        "attempts that ended, by how (this process's workers)",
        labels=["queue", "outcome"],
    )
    resets = CounterMetricFamily(
        "routines_queue_stalled_resets",
        "jobs of dead workers put back by this process's sweeps",
        labels=["queue"],
    )
    lost = CounterMetricFamily(
        "routines_queue_lost_claims", "attempts whose claim was gone", labels=["queue"]
    )
    seen: set[str] = set()
    totals: dict[tuple[str, str], int] = {}
    for worker in workers:
        queue = worker.queue
        for outcome, count in worker.outcome_counts().items():
            totals[queue.name, outcome] = totals.get((queue.name, outcome), 0) + count
        if queue.name in seen:
            continue
        seen.add(queue.name)
        for state, count in queue.counts().items():
            jobs.add_metric([queue.name, state], float(count))
        age = queue.oldest_ready_age()
        oldest.add_metric([queue.name], 0.0 if age is None else age)
        paused.add_metric([queue.name], 1.0 if queue.paused else 0.0)
        _add_limits(limits, queue.name, queue.limits)
    for (queue_name, outcome), count in sorted(totals.items()):
        if outcome == "stalled_resets":
            resets.add_metric([queue_name], float(count))
        elif outcome == "lost":
            lost.add_metric([queue_name], float(count))
        else:
            attempts.add_metric([queue_name, outcome], float(count))
    yield from (jobs, oldest, paused, *limits.values(), attempts, resets, lost)


def _add_limits(families: dict[str, GaugeMetricFamily], queue: str, limits: QueueLimits) -> None:
    """A queue's limits, each in its family; none for a limit that is not set."""
    rate = limits.rate
    values = {
        "max_running": limits.max_running,
        "group_running": limits.group_running,
        "rate": None if rate is None else rate[0],
        "rate_seconds": None if rate is None else rate[1],
    }
    for limit, value in values.items():
        if value is not None:
            families[limit].add_metric([queue], float(value))


def _schedule_metric(schedules: list[Scheduled]) -> Metric:
    last = GaugeMetricFamily(
        "routines_schedule_last_run_timestamp_seconds",
        "when the latest tick that ended this way was (across the fleet)",
        labels=["schedule", "outcome"],
    )
    for name in sorted({scheduled.name for scheduled in schedules}):
        store = next(s for s in schedules if s.name == name).store
        latest: dict[str, float] = {}
        for run in store.schedule_runs(name, limit=100):
            latest.setdefault(run.state, run.tick.timestamp())
        for outcome, moment in sorted(latest.items()):
            last.add_metric([name, outcome], moment)
    return last


def _migration_metric(runners: list[MigrationRunner]) -> Metric:
    progress = GaugeMetricFamily(
        "routines_migration_progress",
        "an out-of-band migration's progress, 0 to 1",
        labels=["migration", "direction"],
    )
    done: set[str] = set()
    for runner in runners:
        for status in runner.store.migrations():
            if status.id in runner.migration_ids and status.id not in done:
                done.add(status.id)
                direction = "reverse" if status.reverse else "forward"
                progress.add_metric([status.id, direction], status.progress)
    return progress
