"""`routines schedules`, `migrations` and `leases` (routines/_cli/fleet.py) on both backends, run
in this process: their tables (ages, long errors cut), their --json documents parsed back, and
their exit statuses (spec/OPERATIONS.md, section 6)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from routines import durable

from .support import Cli, Clock, backend_of

NIGHT = datetime(2030, 1, 1, 2, 0, tzinfo=timezone.utc)
RUN_KEYS = ["name", "tick", "state", "worker", "started_at", "finished_at", "error"]


def iso(value: datetime | None) -> str:
    assert value is not None
    return f"{value.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%SZ}"


@pytest.fixture
def nightly(store: durable.Store) -> list[durable.ScheduleRun]:
    """Three nights of the schedule `reports.nightly` (the second one failed) and one tick of
    `cleanup.hourly` still running; the nightly runs, newest first."""
    backend = backend_of(store)
    for night, error in enumerate(
        [None, "Traceback (most recent call last):\n  x\nOSError: disk full", None]
    ):
        tick = NIGHT + timedelta(days=night)
        assert backend.claim_tick("reports.nightly", tick, "web-1:812:ab12cd34", 60.0) == "claimed"
        assert backend.finish_run("reports.nightly", tick, "web-1:812:ab12cd34", error)
    assert backend.claim_tick("cleanup.hourly", NIGHT, "web-2:77:ffee0011", 60.0) == "claimed"
    return store.schedule_runs("reports.nightly")


def test_schedules_lists_each_schedule_with_its_last_run(
    cli: Cli, clock: Clock, nightly: list[durable.ScheduleRun]
) -> None:
    clock.now = NIGHT + timedelta(days=2, hours=7, minutes=30)
    assert cli.lines("schedules") == [
        "schedule         last tick                      state      runs  failed  last error",
        "cleanup.hourly   2030-01-01T02:00:00Z (2d ago)  running       1       0  -",
        "reports.nightly  2030-01-03T02:00:00Z (7h ago)  completed     3       1  -",
    ]
    document = cli.json("schedules")
    assert list(document) == ["schedules"]
    hourly, nightly_info = document["schedules"]
    assert list(nightly_info) == ["name", "runs", "failures", "last_run"]
    assert (nightly_info["name"], nightly_info["runs"], nightly_info["failures"]) == (
        "reports.nightly",
        3,
        1,
    )
    last = nightly_info["last_run"]
    assert list(last) == RUN_KEYS
    assert datetime.fromisoformat(last["tick"]) == nightly[0].tick
    assert (last["state"], last["worker"], last["error"]) == (
        "completed",
        "web-1:812:ab12cd34",
        None,
    )
    assert (hourly["last_run"]["state"], hourly["last_run"]["finished_at"]) == ("running", None)


def test_schedules_name_lists_its_runs_newest_first_with_the_error_s_line(
    cli: Cli, clock: Clock, nightly: list[durable.ScheduleRun]
) -> None:
    clock.now = NIGHT + timedelta(days=2, hours=7)
    lines = cli.lines("schedules", "reports.nightly")
    assert [line.split()[:4] for line in lines] == [
        ["tick", "state", "took", "worker"],
        [iso(NIGHT + timedelta(days=2)), "(7h", "ago)", "completed"],
        [iso(NIGHT + timedelta(days=1)), "(1d", "ago)", "failed"],
        [iso(NIGHT), "(2d", "ago)", "completed"],
    ]
    assert lines[2].endswith("web-1:812:ab12cd34  OSError: disk full")
    assert lines[1].endswith("web-1:812:ab12cd34  -")
    document = cli.json("schedules", "reports.nightly", "--limit", "2")
    assert list(document) == ["name", "runs"]
    assert document["name"] == "reports.nightly"
    assert [datetime.fromisoformat(run["tick"]) for run in document["runs"]] == [
        run.tick for run in nightly[:2]
    ]
    assert document["runs"][1]["error"].endswith("OSError: disk full")
    assert [list(run) for run in document["runs"]] == [RUN_KEYS, RUN_KEYS]


def test_schedules_of_a_name_without_runs_fails_naming_the_schedules(
    cli: Cli, nightly: list[durable.ScheduleRun]
) -> None:
    assert cli.fails("schedules", "reports.nigthly") == (
        "the store has no run of a schedule 'reports.nigthly'; its schedules: 'cleanup.hourly', "
        "'reports.nightly'; did you mean 'reports.nightly'?"
    )


def test_schedules_of_a_store_without_runs_is_empty(cli: Cli) -> None:
    assert cli.lines("schedules") == []
    assert cli.json("schedules") == {"schedules": []}
    assert cli.fails("schedules", "nightly") == (
        "the store has no run of a schedule 'nightly', nor of any other"
    )
    assert "--limit: must be at most 1000" in cli.refuses("schedules", "x", "--limit", "1001")


def test_migrations_lists_progress_direction_and_latest_errors(
    cli: Cli, clock: Clock, store: durable.Store
) -> None:
    backend = backend_of(store)
    backend.register_migrations(["0001_backfill_emails", "0002_split_names"])
    backend.store_migration_progress("0001_backfill_emails", 0.425)
    backend.record_migration_error("0001_backfill_emails", "KeyError: 'email'")
    backend.record_migration_error(
        "0001_backfill_emails", "Traceback (most recent call last):\n  x\nTimeoutError: slow"
    )
    store.set_migration_direction("0002_split_names", reverse=True)
    statuses = {status.id: status for status in store.migrations()}
    clock.now = max(status.updated_at for status in statuses.values()) + timedelta(minutes=5)
    lines = cli.lines("migrations")
    assert [line.split()[:4] for line in lines] == [
        ["migration", "direction", "progress", "complete"],
        ["0001_backfill_emails", "forward", "42.5%", "no"],
        ["0002_split_names", "reverse", "0.0%", "yes"],
    ]
    assert lines[1].endswith("5m ago        2  TimeoutError: slow"), lines[1]
    assert lines[2].endswith("5m ago        0  -"), lines[2]
    document = cli.json("migrations")
    first, second = document["migrations"]
    assert list(first) == ["id", "progress", "reverse", "complete", "updated_at", "errors"]
    assert (first["id"], first["progress"], first["reverse"], first["complete"]) == (
        "0001_backfill_emails",
        0.425,
        False,
        False,
    )
    assert [error["error"] for error in first["errors"]] == [
        "Traceback (most recent call last):\n  x\nTimeoutError: slow",
        "KeyError: 'email'",
    ]
    assert (
        datetime.fromisoformat(first["errors"][0]["at"])
        == statuses["0001_backfill_emails"].errors[0].at
    )
    assert (second["reverse"], second["complete"], second["errors"]) == (True, True, [])


def test_leases_lists_each_lease_its_holder_and_expiry(
    cli: Cli, clock: Clock, store: durable.Store
) -> None:
    held = store.lease("janitor", ttl=30)
    assert held.acquire()
    released = store.lease("migrations", ttl=30)
    assert released.acquire()
    released.release()
    info = {lease.name: lease for lease in store.leases()}["janitor"]
    assert info.holder is not None
    assert info.expires_at is not None
    clock.now = info.expires_at - timedelta(seconds=20.5)
    lines = cli.lines("leases")
    assert lines[0].split() == ["lease", "holder", "token", "expires"]
    assert lines[1].split() == ["janitor", info.holder, "1", iso(info.expires_at), "(in", "20s)"]
    assert lines[2].split() == ["migrations", "-", "1", "-"]
    assert cli.json("leases") == {
        "leases": [
            {
                "name": "janitor",
                "holder": info.holder,
                "token": 1,
                "expires_at": info.expires_at.isoformat(),
            },
            {"name": "migrations", "holder": None, "token": 1, "expires_at": None},
        ]
    }
    held.release()


def test_the_fleet_listings_of_an_empty_store_are_empty(cli: Cli) -> None:
    for command in ("migrations", "leases"):
        assert cli.lines(command) == []
        assert cli.json(command) == {command: []}
