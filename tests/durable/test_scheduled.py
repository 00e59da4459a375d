"""`Scheduled` in this process, on both backends: ticks on the database's clock, each claimed
once, runs that never overlap (later ticks skipped and recorded), failures recorded, catch_up,
dead runs marked failed, and the tick arithmetic of `every` and `cron`.
(Three real processes, and a SIGKILL mid-run: test_fleet_processes.py.)"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import pytest

import routines
from routines import durable
from routines.durable._scheduled import _Cron, _Every, _zone

from .conftest import Target
from .support import backend_of, poll
from helpers import WAIT, LogWatcher, join


@pytest.fixture
def store(target: Target) -> durable.Store:
    return target.open(timeout=0.2)


@pytest.fixture
def run() -> Iterator[Callable[[routines.Routine], threading.Thread]]:
    started: list[tuple[routines.Routine, threading.Thread]] = []

    def start(routine: routines.Routine) -> threading.Thread:
        thread = threading.Thread(target=routine.start, name="test-scheduled")
        thread.start()
        started.append((routine, thread))
        return thread

    yield start
    for routine, thread in started:
        routine.stop()
        join(thread)


def states(store: durable.Store, name: str) -> list[str]:
    return [run.state for run in reversed(store.schedule_runs(name, limit=1000))]


def test_each_tick_runs_once_on_the_epoch_aligned_grid(
    store: durable.Store, run: Callable[..., threading.Thread]
) -> None:
    ticks: list[int] = []
    run(durable.Scheduled(lambda: ticks.append(1), store, every=0.2, name="tick"))
    assert poll(lambda: states(store, "tick").count("completed") >= 3)
    runs = store.schedule_runs("tick")
    for each in runs:
        micros = (each.tick - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(
            microseconds=1
        )
        assert micros % 200_000 == 0, each.tick
    completed = [each for each in runs if each.state == "completed"]
    assert all(each.finished_at is not None and each.worker for each in completed)


def test_two_schedulers_of_one_schedule_run_each_tick_once(
    store: durable.Store, target: Target, run: Callable[..., threading.Thread]
) -> None:
    lock = threading.Lock()
    ran: list[str] = []

    def handler(who: str) -> Callable[[], None]:
        def handle() -> None:
            with lock:
                ran.append(who)

        return handle

    run(durable.Scheduled(handler("a"), store, every=0.2, name="shared"))
    run(durable.Scheduled(handler("b"), target.open(timeout=0.2), every=0.2, name="shared"))
    assert poll(lambda: states(store, "shared").count("completed") >= 5)
    with lock:
        runs = len(ran)
    records = states(store, "shared")
    assert runs in (records.count("completed"), records.count("completed") + 1)  # one may run
    assert records.count("running") <= 1


def test_a_tick_due_while_the_run_is_going_is_recorded_skipped(
    store: durable.Store, run: Callable[..., threading.Thread]
) -> None:
    release = threading.Event()
    first = threading.Event()

    def long_run() -> None:
        if not first.is_set():
            first.set()
            release.wait(WAIT)

    with LogWatcher() as logs:
        run(durable.Scheduled(long_run, store, every=0.1, name="long"))
        assert first.wait(WAIT)
        logs.wait_for("skipped: the previous run is still going")
        release.set()
        assert poll(lambda: "completed" in states(store, "long")[1:])
    recorded = states(store, "long")
    assert recorded[0] == "completed"  # the long run, recorded when it ended
    assert "skipped" in recorded


def test_a_failing_run_is_recorded_failed_and_the_next_tick_runs(
    store: durable.Store, run: Callable[..., threading.Thread]
) -> None:
    calls: list[int] = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("the report server is down")

    with LogWatcher():
        scheduled = durable.Scheduled(flaky, store, every=0.1, name="flaky")
        run(scheduled)
        assert poll(lambda: "completed" in states(store, "flaky"))
    failed = store.schedule_runs("flaky", limit=1000)[-1]
    assert failed.state == "failed"
    assert "ValueError: the report server is down" in (failed.error or "")
    status = scheduled.status()
    assert status.failures == 1
    assert status.runs >= 2


def test_a_long_run_heartbeats_while_ticks_come_faster_than_its_heartbeats(
    store: durable.Store, run: Callable[..., threading.Thread]
) -> None:
    release = threading.Event()
    calls: list[int] = []

    def long_run() -> None:
        calls.append(1)
        if len(calls) == 1:
            release.wait(WAIT)

    # A tick every 0.1 s, a heartbeat due every 0.3 s: 30 ticks skipped span three times
    # stalled_after, all of it without the run being taken for dead or a second one beside it.
    run(durable.Scheduled(long_run, store, every=0.1, name="beating", stalled_after=0.9))
    assert poll(lambda: states(store, "beating").count("skipped") >= 30)
    recorded = states(store, "beating")
    release.set()
    assert (recorded[0], "failed" in recorded, len(calls)) == ("running", False, 1)


def test_catch_up_runs_the_latest_missed_tick_once(
    store: durable.Store, run: Callable[..., threading.Thread]
) -> None:
    ran = threading.Event()
    now = backend_of(store).now()
    scheduled = durable.Scheduled(ran.set, store, every=3600, name="hourly", catch_up=True)
    run(scheduled)
    assert ran.wait(WAIT)
    (only,) = store.schedule_runs("hourly")
    latest = _Every(3600).latest(now)
    assert only.tick == latest
    assert poll(lambda: store.schedule_runs("hourly")[0].state == "completed")


def test_without_catch_up_a_missed_tick_is_not_run(
    store: durable.Store, run: Callable[..., threading.Thread]
) -> None:
    scheduled = durable.Scheduled(lambda: None, store, every=3600, name="hourly")
    run(scheduled)
    assert poll(lambda: scheduled.status().next_run_at is not None)
    assert store.schedule_runs("hourly") == []


def test_a_run_whose_process_died_is_marked_failed_and_the_next_tick_runs(
    store: durable.Store, run: Callable[..., threading.Thread]
) -> None:
    backend = backend_of(store)
    tick = _Every(0.2).latest(backend.now())
    assert backend.claim_tick("dead", tick, "dead:1:x", 0.7) == "claimed"  # never heartbeats
    run(durable.Scheduled(lambda: None, store, every=0.2, name="dead", stalled_after=0.7))
    assert poll(lambda: "completed" in states(store, "dead"))
    dead = store.schedule_runs("dead", limit=1000)[-1]
    assert (dead.worker, dead.state) == ("dead:1:x", "failed")
    # One message on every engine (an interval once read "00:00:00.7" on PostgreSQL).
    assert dead.error == "worker died: no heartbeat for 0.7s"


def test_the_last_1000_runs_are_kept(store: durable.Store, target: Target) -> None:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    _insert_completed_runs(target, "busy", [start + timedelta(seconds=n) for n in range(1004)])
    backend = backend_of(store)
    tick = start + timedelta(seconds=1004)
    assert backend.claim_tick("busy", tick, "w", 60) == "claimed"  # a claim prunes
    runs = store.schedule_runs("busy", limit=5000)
    assert len(runs) == 1000
    assert (runs[0].tick, runs[-1].tick) == (tick, start + timedelta(seconds=5))


def test_keeping_the_last_1000_runs_never_drops_the_run_still_going(
    store: durable.Store, target: Target
) -> None:
    backend = backend_of(store)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert backend.claim_tick("long", start, "w", 3600) == "claimed"
    _insert_completed_runs(target, "long", [start + timedelta(seconds=n) for n in range(1, 1005)])
    later = start + timedelta(seconds=1005)
    assert backend.claim_tick("long", later, "w", 3600) == "skipped"  # a claim prunes
    assert backend.claim_tick("long", later + timedelta(seconds=1), "w", 3600) == "skipped"
    runs = store.schedule_runs("long", limit=5000)
    assert len(runs) == 1001
    assert (runs[-1].tick, runs[-1].state) == (start, "running")


def _insert_completed_runs(target: Target, name: str, ticks: list[datetime]) -> None:
    """Store completed runs straight into the table (a claim and a finish each is slow)."""
    if target.kind == "sqlite":
        import sqlite3

        epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
        rows = [(name, (t - epoch) // timedelta(microseconds=1)) for t in ticks]
        with sqlite3.connect(target.url.removeprefix("sqlite:///"), timeout=WAIT) as connection:
            connection.executemany(
                f"INSERT INTO {target.schema}_schedule_runs (name, tick, state, worker,"
                " started_at, finished_at) VALUES (?, ?, 'completed', 'w', ?2, ?2)",
                rows,
            )
        return
    import psycopg

    with psycopg.connect(target.url, autocommit=True) as connection:
        connection.cursor().executemany(
            f'INSERT INTO "{target.schema}".schedule_runs (name, tick, state, worker,'
            " started_at, finished_at) VALUES (%s, %s, 'completed', 'w', now(), now())",
            [(name, tick) for tick in ticks],
        )


def test_every_ticks_are_aligned_to_the_unix_epoch() -> None:
    every = _Every(300)
    moment = datetime(2026, 11, 28, 10, 7, 30, tzinfo=timezone.utc)
    assert every.after(moment) == datetime(2026, 11, 28, 10, 10, tzinfo=timezone.utc)
    assert every.latest(moment) == datetime(2026, 11, 28, 10, 5, tzinfo=timezone.utc)
    on_a_tick = datetime(2026, 11, 28, 10, 10, tzinfo=timezone.utc)
    assert every.after(on_a_tick) == datetime(2026, 11, 28, 10, 15, tzinfo=timezone.utc)
    assert every.latest(on_a_tick) == on_a_tick


def test_cron_ticks_follow_the_time_zone() -> None:
    nine_in_paris = _Cron("0 9 * * *", _zone("Europe/Paris"))
    winter = datetime(2026, 1, 15, 12, 0, tzinfo=timezone.utc)
    summer = datetime(2026, 7, 15, 12, 0, tzinfo=timezone.utc)
    assert nine_in_paris.after(winter) == datetime(2026, 1, 16, 8, 0, tzinfo=timezone.utc)
    assert nine_in_paris.after(summer) == datetime(2026, 7, 16, 7, 0, tzinfo=timezone.utc)
    assert nine_in_paris.latest(winter) == datetime(2026, 1, 15, 8, 0, tzinfo=timezone.utc)
    exactly = datetime(2026, 1, 15, 8, 0, tzinfo=timezone.utc)
    assert nine_in_paris.latest(exactly) == exactly


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({}, ValueError, "exactly one of every and cron"),
        ({"every": 1, "cron": "* * * * *"}, ValueError, "exactly one of every and cron"),
        ({"every": 0}, ValueError, "every"),
        ({"every": "60"}, TypeError, "every"),
        ({"cron": "61 * * * *"}, ValueError, "cron"),
        ({"cron": "* * * * * *"}, ValueError, "five-field"),
        ({"cron": 5}, TypeError, "cron"),
        ({"every": 60, "timezone": "Mars/Olympus"}, ValueError, "timezone"),
        ({"every": 60, "timezone": 1}, TypeError, "timezone"),
        ({"every": 60, "name": ""}, ValueError, "name"),
        ({"every": 60, "catch_up": 1}, TypeError, "catch_up"),
        ({"every": 60, "stalled_after": 0.1}, ValueError, "stalled_after"),
        ({"every": 60, "handler": 3}, TypeError, "handler"),
        ({"every": 60, "handler": lambda job: None}, TypeError, "handler"),
        ({"every": 60, "store": "sqlite:///x.db"}, TypeError, "store"),
    ],
)
def test_bad_arguments_are_refused_at_construction_naming_them(
    store: durable.Store, kwargs: dict[str, object], error: type[Exception], fragment: str
) -> None:
    arguments: dict[str, object] = {"handler": lambda: None, "store": store, **kwargs}
    handler, given = arguments.pop("handler"), arguments.pop("store")
    with pytest.raises(error, match=fragment):
        durable.Scheduled(handler, given, **arguments)  # type: ignore[arg-type]


def test_cron_without_croniter_names_the_extra(
    store: durable.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "croniter", None)
    with pytest.raises(ImportError, match=r"routines\[cron\]"):
        durable.Scheduled(lambda: None, store, cron="* * * * *")
