"""`Scheduled` in this process, on both backends: ticks on the database's clock, each claimed
once, runs that never overlap (later ticks skipped and recorded), failures recorded, catch_up,
dead runs marked failed, and the tick arithmetic of `every` and `cron`.
(Three real processes, and a SIGKILL mid-run: test_fleet_processes.py.)"""

from __future__ import annotations

import functools
import itertools
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import pytest

import routines
from routines import durable
from routines.durable._scheduled import _Cron, _Every, _zone

from .conftest import Target
from .support import WITHOUT_A_STABLE_NAME, backend_of, poll, sync
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


# The two changes of 2026 in Paris: 02:00 CET is 03:00 CEST on March 29, and 03:00 CEST is
# 02:00 CET again on October 25 (02:00 to 03:00 happens twice).
PARIS = _zone("Europe/Paris")
SPRING_NIGHT = datetime(2026, 3, 28, 21, 0, tzinfo=timezone.utc)
FALL_NIGHT = datetime(2026, 10, 24, 21, 0, tzinfo=timezone.utc)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(timezone.utc)


def cron_ticks(expression: str, since: datetime, hours: float) -> list[datetime]:
    """The ticks of `expression` in Paris in the `hours` after `since`, walked with after()."""
    ticks, cron, end = [], _Cron(expression, PARIS), since + timedelta(hours=hours)
    tick = cron.after(since)
    while tick <= end:
        ticks.append(tick)
        tick = cron.after(tick)
    return ticks


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # Fixed-time: at the first 02:30 (CEST), never at the second (CET).
        ("30 2 * * *", ["2026-10-25T02:30+02:00", "2026-10-26T02:30+01:00"]),
        ("0 2 * * *", ["2026-10-25T02:00+02:00", "2026-10-26T02:00+01:00"]),
        ("0,30 2 * * *", ["2026-10-25T02:00+02:00", "2026-10-25T02:30+02:00",
                          "2026-10-26T02:00+01:00"]),
        ("30 1-3 * * *", ["2026-10-25T01:30+02:00", "2026-10-25T02:30+02:00",
                          "2026-10-25T03:30+01:00", "2026-10-26T01:30+01:00"]),
    ],
)  # fmt: skip
def test_a_fixed_time_cron_runs_once_when_the_clock_falls_back(
    expression: str, expected: list[str]
) -> None:
    ticks = cron_ticks(expression, FALL_NIGHT, 30)
    assert ticks[: len(expected)] == [utc(text) for text in expected]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # Fixed-time: a time in the skipped hour runs once, at the first valid time (03:00).
        ("30 2 * * *", ["2026-03-29T03:00+02:00", "2026-03-30T02:30+02:00"]),
        ("0,30 2 * * *", ["2026-03-29T03:00+02:00", "2026-03-30T02:00+02:00"]),
        ("0 2,3 * * *", ["2026-03-29T03:00+02:00", "2026-03-30T02:00+02:00"]),
        ("30 1-3 * * *", ["2026-03-29T01:30+01:00", "2026-03-29T03:00+02:00",
                          "2026-03-29T03:30+02:00", "2026-03-30T01:30+02:00"]),
    ],
)  # fmt: skip
def test_a_fixed_time_cron_runs_once_at_the_first_valid_time_when_the_clock_springs_forward(
    expression: str, expected: list[str]
) -> None:
    ticks = cron_ticks(expression, SPRING_NIGHT, 30)
    assert ticks[: len(expected)] == [utc(text) for text in expected]


@pytest.mark.parametrize(("expression", "every"), [("0 * * * *", 60), ("*/15 * * * *", 15)])
@pytest.mark.parametrize("night", [SPRING_NIGHT, FALL_NIGHT], ids=["spring", "fall"])
def test_hourly_and_finer_crons_tick_every_real_interval_across_a_clock_change(
    expression: str, every: int, night: datetime
) -> None:
    ticks = cron_ticks(expression, night, 8)
    assert len(ticks) == 8 * 60 // every
    assert {later - earlier for earlier, later in itertools.pairwise(ticks)} == {
        timedelta(minutes=every)
    }


def test_a_cron_with_a_wildcard_minute_ticks_in_each_real_hour_two_and_none_that_is_skipped() -> (
    None
):
    fall = cron_ticks("* 2 * * *", FALL_NIGHT, 8)
    assert (len(fall), fall[0], fall[-1]) == (
        120,
        utc("2026-10-25T02:00+02:00"),
        utc("2026-10-25T02:59+01:00"),
    )
    assert cron_ticks("* 2 * * *", SPRING_NIGHT, 8) == []  # 02:xx never happens that night


@pytest.mark.parametrize(
    "expression", ["30 2 * * *", "0,30 2 * * *", "30 1-3 * * *", "0 * * * *", "*/15 * * * *",
                   "* 2 * * *"],
)  # fmt: skip
@pytest.mark.parametrize("night", [SPRING_NIGHT, FALL_NIGHT], ids=["spring", "fall"])
def test_the_latest_cron_tick_is_the_last_one_after_gives_at_every_minute_of_a_clock_change(
    expression: str, night: datetime
) -> None:
    # The tick loop coalesces missed ticks into latest(now): one that after() never gives would
    # run a tick twice or run one that should not be.
    cron, ticks = _Cron(expression, PARIS), cron_ticks(expression, night - timedelta(days=1), 36)
    for minute in range(0, 8 * 60, 5):
        moment = night + timedelta(minutes=minute, seconds=30)
        assert cron.latest(moment) == max(tick for tick in ticks if tick <= moment), moment


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
    arguments: dict[str, object] = {"handler": sync_eu, "store": store, **kwargs}
    handler, given = arguments.pop("handler"), arguments.pop("store")
    with pytest.raises(error, match=fragment):
        durable.Scheduled(handler, given, **arguments)  # type: ignore[arg-type]


# -- fleet identities (OPERATIONS.md section 9) ---------------------------------------------------


def sync_eu() -> None:
    """A module-level function: its name is the same in every process."""


class Syncer:
    @classmethod
    def all_regions(cls) -> None: ...


def test_a_schedules_default_name_is_its_functions_module_and_qualified_name(
    store: durable.Store,
) -> None:
    scheduled = durable.Scheduled(sync_eu, store, every=60)
    assert scheduled.name == f"{__name__}.sync_eu"
    in_a_class = durable.Scheduled(Syncer.all_regions, store, every=60)
    assert in_a_class.name == f"{__name__}.Syncer.all_regions"


@WITHOUT_A_STABLE_NAME
def test_a_schedule_of_a_handler_with_no_stable_name_needs_a_name(
    store: durable.Store, handler: Callable[[], None], what: str
) -> None:
    with pytest.raises(ValueError, match=rf"name must be given: .* is {what}.*pass name="):
        durable.Scheduled(handler, store, every=60)
    assert durable.Scheduled(handler, store, every=60, name="sync.eu").name == "sync.eu"


def test_two_partials_of_one_function_are_two_schedules_only_by_name(
    store: durable.Store,
) -> None:
    # Issue 25.10: both were named "partial" and split the ticks between them.
    for region in ("eu", "us"):
        with pytest.raises(ValueError, match="name must be given"):
            durable.Scheduled(functools.partial(sync, region), store, every=60)
    eu = durable.Scheduled(functools.partial(sync, "eu"), store, every=60, name="sync.eu")
    us = durable.Scheduled(functools.partial(sync, "us"), store, every=60, name="sync.us")
    assert eu.name != us.name


def test_cron_without_croniter_names_the_extra(
    store: durable.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "croniter", None)
    with pytest.raises(ImportError, match=r"routines\[cron\]"):
        durable.Scheduled(lambda: None, store, cron="* * * * *")
