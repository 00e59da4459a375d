"""`routines.prometheus.MonitorCollector`: metrics read at scrape time, parsed back with the
official client's parser; and the observability example's endpoints, scraped for real."""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import routines
from routines import durable
from routines.prometheus import MonitorCollector

from helpers import WAIT, Example, LogWatcher

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def registry_of(monitor: routines.Monitor) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(MonitorCollector(monitor))
    return registry


def scrape(registry: CollectorRegistry) -> Samples:
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, tuple(sorted(labels.items()))]


def test_a_scrape_shows_every_routine_metric_with_plausible_values() -> None:
    ran = threading.Semaphore(0)
    runs = iter([None, ValueError("flaky"), None])

    def tick() -> None:
        error = next(runs, None)
        ran.release()
        if error is not None:
            raise error

    pool: routines.WorkerPool[int, int] = routines.WorkerPool(lambda n: n, name="pool")
    periodic = routines.PeriodicRoutine(tick, name="tick", interval=0.01, fixed_rate=True)
    monitor = routines.Monitor(periodic, pool, signals=())
    registry = registry_of(monitor)
    with LogWatcher():
        monitor.start()
        try:
            for _ in range(3):
                assert ran.acquire(timeout=WAIT)
            assert pool.submit(1).result(WAIT) == 1
            samples = scrape(registry)
        finally:
            monitor.shutdown()
            assert monitor.wait(WAIT) is not None
    assert value(samples, "routines_healthy") == 1.0
    assert value(samples, "routines_routine_up", routine="tick") == 1.0
    assert value(samples, "routines_routine_state", routine="tick", state="running") == 1.0
    assert value(samples, "routines_routine_state", routine="tick", state="failed") == 0.0
    assert value(samples, "routines_runs_total", routine="tick") >= 3
    assert value(samples, "routines_failures_total", routine="tick") == 1
    assert value(samples, "routines_runs_total", routine="pool") == 1
    assert value(samples, "routines_restarts_total", routine="pool") == 0
    assert value(samples, "routines_missed_runs_total", routine="tick") >= 0
    assert value(samples, "routines_overdue_runs_total", routine="tick") == 0
    assert value(samples, "routines_queued_items", routine="pool") == 0
    count = value(samples, "routines_run_duration_seconds_count", routine="tick")
    assert count >= 3
    assert (
        value(samples, "routines_run_duration_seconds_bucket", routine="tick", le="+Inf") == count
    )
    assert (
        value(samples, "routines_run_duration_seconds_bucket", routine="tick", le="300.0") == count
    )
    assert value(samples, "routines_last_run_timestamp_seconds", routine="tick") > 1.7e9
    assert value(samples, "routines_next_run_timestamp_seconds", routine="tick") > 1.7e9
    names = {name for name, _ in samples}
    assert all(name.startswith("routines_") for name in names)


def test_a_scrape_shows_the_durable_tiers_metrics(tmp_path: Path) -> None:
    store = durable.open_store(f"sqlite:///{tmp_path / 'store.db'}", timeout=1.0)
    try:
        emails = store.queue("emails")
        emails.enqueue_many(range(3))
        done = threading.Semaphore(0)

        def send(job: durable.Job) -> None:
            done.release()
            if job.payload == 1:
                raise durable.Fail("bad address")

        class Backfill:
            id = "backfill"
            progress_value = 0.5

            def progress(self) -> float:
                return self.progress_value

            def up(self) -> None:
                self.progress_value = 1.0

            def down(self) -> None:
                self.progress_value = 0.0

        monitor = routines.Monitor(
            durable.QueueWorker(
                emails, send, poll_interval=0.05, heartbeat_interval=0.5, stalled_after=3
            ),
            durable.MigrationRunner(store, [Backfill()], interval=0.05),
            signals=(),
        )
        registry = registry_of(monitor)
        with LogWatcher():
            monitor.start()
            try:
                for _ in range(3):
                    assert done.acquire(timeout=WAIT)
                samples: Samples = {}
                key = (
                    "routines_migration_progress",
                    (("direction", "forward"), ("migration", "backfill")),
                )
                attempts = (("outcome", "completed"), ("queue", "emails"))
                failures = (("outcome", "failed"), ("queue", "emails"))
                for _ in range(200):  # until the last outcome is written and counted, and the batch
                    samples = scrape(registry)  # (the count follows the write's commit)
                    if (
                        value(samples, "routines_queue_jobs", queue="emails", state="completed")
                        == 2
                        and samples.get(("routines_queue_attempts_total", attempts)) == 2
                        and samples.get(("routines_queue_attempts_total", failures)) == 1
                        and samples.get(key) == 1.0
                    ):
                        break
                    threading.Event().wait(0.02)
            finally:
                monitor.shutdown()
                assert monitor.wait(WAIT) is not None
    finally:
        store.close()
    assert value(samples, "routines_queue_jobs", queue="emails", state="failed") == 1
    assert value(samples, "routines_queue_oldest_ready_age_seconds", queue="emails") == 0
    assert value(samples, "routines_queue_attempts_total", queue="emails", outcome="completed") == 2
    assert value(samples, "routines_queue_attempts_total", queue="emails", outcome="failed") == 1
    assert (
        value(samples, "routines_migration_progress", migration="backfill", direction="forward")
        == 1.0
    )


@pytest.fixture
def two_queues(tmp_path: Path) -> Iterator[tuple[durable.Queue, CollectorRegistry]]:
    """The queue emails of a store, and the registry of a Monitor (not started) with a worker
    of it and one of the queue sms."""
    with durable.open_store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        emails = store.queue("emails")
        monitor = routines.Monitor(
            durable.QueueWorker(emails, lambda job: None),
            durable.QueueWorker(store.queue("sms"), lambda job: None),
            signals=(),
        )
        yield emails, registry_of(monitor)


def test_a_paused_queue_shows_in_the_metrics(
    two_queues: tuple[durable.Queue, CollectorRegistry],
) -> None:
    emails, registry = two_queues
    assert value(scrape(registry), "routines_queue_paused", queue="emails") == 0
    emails.pause()
    samples = scrape(registry)
    assert value(samples, "routines_queue_paused", queue="emails") == 1
    assert value(samples, "routines_queue_paused", queue="sms") == 0
    emails.resume()
    assert value(scrape(registry), "routines_queue_paused", queue="emails") == 0


def test_a_queue_s_limits_show_in_the_metrics_only_where_they_are_set(
    two_queues: tuple[durable.Queue, CollectorRegistry],
) -> None:
    emails, registry = two_queues
    names = ("max_running", "group_running", "rate", "rate_seconds")
    assert not any(name.startswith("routines_queue_limit_") for name, _ in scrape(registry))
    emails.set_limits(max_running=5, group_running=1, rate=(10, 1.5))
    samples = scrape(registry)
    assert {
        name: value(samples, f"routines_queue_limit_{name}", queue="emails") for name in names
    } == {"max_running": 5, "group_running": 1, "rate": 10, "rate_seconds": 1.5}
    assert not any(
        name.startswith("routines_queue_limit_") and labels == (("queue", "sms"),)
        for name, labels in samples
    )
    emails.set_limits(rate=(100, 60))
    samples = scrape(registry)
    assert {
        name: samples.get((f"routines_queue_limit_{name}", (("queue", "emails"),)))
        for name in names
    } == {"max_running": None, "group_running": None, "rate": 100, "rate_seconds": 60}
    emails.set_limits()
    assert not any(name.startswith("routines_queue_limit_") for name, _ in scrape(registry))


def test_a_store_that_cannot_be_reached_leaves_its_metrics_out_and_the_scrape_succeeds(
    tmp_path: Path,
) -> None:
    store = durable.open_store(f"sqlite:///{tmp_path / 'store.db'}")
    monitor = routines.Monitor(
        durable.QueueWorker(store.queue("emails"), lambda job: None), signals=()
    )
    registry = registry_of(monitor)
    assert value(scrape(registry), "routines_queue_jobs", queue="emails", state="queued") == 0
    store.close()  # every call on it now raises StoreError
    with LogWatcher() as logs:
        samples = scrape(registry)
    record = logs.wait_for("left out of this scrape")
    assert (record.levelname, getattr(record, "event", None)) == ("WARNING", "metrics_failed")
    assert value(samples, "routines_routine_up", routine="emails") == 0
    assert not any(name.startswith("routines_queue_") for name, _ in samples)


def test_routines_of_one_name_get_series_of_their_own() -> None:
    from prometheus_client.openmetrics import exposition, parser

    monitor = routines.Monitor(
        routines.NoopRoutine("sync"), routines.NoopRoutine("sync"), routines.NoopRoutine("sync#2")
    )
    # OpenMetrics' parser refuses a series given twice, as a Prometheus server would.
    text = exposition.generate_latest(registry_of(monitor)).decode()
    up = next(f for f in parser.text_string_to_metric_families(text) if f.name.endswith("_up"))
    assert [sample.labels["routine"] for sample in up.samples] == ["sync", "sync#3", "sync#2"]


def test_a_collector_needs_a_monitor() -> None:
    with pytest.raises(TypeError, match="monitor"):
        MonitorCollector("not a monitor")  # type: ignore[arg-type]


EMAILS_COMPLETED = ("routines_queue_jobs", (("queue", "emails"), ("state", "completed")))
INBOX_FAILURES = ("routines_failures_total", (("routine", "inbox"),))
BACKFILL_PROGRESS = (
    "routines_migration_progress",
    (("direction", "forward"), ("migration", "backfill")),
)
DIGEST_COMPLETED = (
    "routines_schedule_last_run_timestamp_seconds",
    (("outcome", "completed"), ("schedule", "digest")),
)


def test_the_examples_health_endpoints_and_metrics_answer_for_real() -> None:
    with Example("observability.py", "--port", "0", "--seconds", "30") as example:
        line = example.expect("serving on", timeout=20)
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match is not None
        base = f"http://127.0.0.1:{match.group(1)}"

        def get(path: str) -> tuple[int, str]:
            try:
                with urllib.request.urlopen(base + path, timeout=WAIT) as answer:
                    return answer.status, answer.read().decode()
            except urllib.error.HTTPError as error:
                return error.code, error.read().decode()

        deadline = threading.Event()
        samples: Samples = {}
        for _ in range(100):  # a bounded poll: until the routines have done some work
            code, text = get("/metrics")
            assert code == 200
            samples = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
            }
            if (
                samples.get(EMAILS_COMPLETED) == 20
                and samples.get(INBOX_FAILURES, 0) >= 1
                and samples.get(BACKFILL_PROGRESS) == 1.0
                and DIGEST_COMPLETED in samples
                and get("/readyz")[0] == 200
            ):
                break
            deadline.wait(0.1)
        assert get("/healthz")[0] == 200
        assert get("/readyz")[0] == 200
        code, body = get("/status")
        assert code == 200
        statuses = json.loads(body)
        assert {status["name"] for status in statuses} >= {"inbox", "emails", "http"}
        example.send(15)
        assert example.wait(timeout=20) == 0
    assert value(samples, "routines_healthy") == 1.0
    assert value(samples, "routines_failures_total", routine="inbox") >= 1
    assert value(samples, "routines_queue_jobs", queue="emails", state="completed") == 20
    assert (
        value(samples, "routines_migration_progress", migration="backfill", direction="forward")
        == 1.0
    )
    assert samples[DIGEST_COMPLETED] > 1.7e9
