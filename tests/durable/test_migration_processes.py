"""Out-of-band migrations with real processes, on both backends: two runners never run a batch
at the same time; a runner SIGKILLed mid-way loses no recorded progress and the migration
completes on the other; a raising batch is recorded and retried; reversing mid-way runs
down() back to 0."""

from __future__ import annotations

import itertools
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from routines import durable

from .conftest import Target
from .support import ProgramGroup, poll
from helpers import WAIT

ROWS = 200


def make_items(target: Target) -> None:
    """The app's table the migration works on: ROWS items, none doubled yet."""
    if target.kind == "sqlite":
        with sqlite3.connect(target.url.removeprefix("sqlite:///"), timeout=WAIT) as db:
            db.execute(
                f"CREATE TABLE {target.schema}_items (id INTEGER PRIMARY KEY, value INTEGER,"
                " doubled INTEGER)"
            )
            db.executemany(
                f"INSERT INTO {target.schema}_items (value) VALUES (?)",
                [(n,) for n in range(ROWS)],
            )
        return
    import psycopg

    with psycopg.connect(target.url, autocommit=True) as db:
        db.execute(
            f'CREATE TABLE "{target.schema}".items (id serial PRIMARY KEY, value integer,'
            " doubled integer)"
        )
        db.execute(
            f'INSERT INTO "{target.schema}".items (value) SELECT generate_series(0, {ROWS - 1})'
        )


class Runners(ProgramGroup):
    def __init__(self, target: Target, tmp_path: Path) -> None:
        super().__init__(tmp_path, "runner")
        self.target = target
        target.open().close()  # the store's tables first, then the app's
        make_items(target)

    def start(self, *flags: str) -> subprocess.Popen[str]:
        record = str(self.next_record())
        return self.launch("migration", self.target.url, self.target.schema, record, *flags)

    def batches(self) -> list[tuple[str, str, float, float]]:
        found = [
            (pid, direction, float(start), float(end))
            for pid, direction, start, end in self.record_lines()
        ]
        return sorted(found, key=lambda batch: batch[2])


@pytest.fixture
def runners(target: Target, tmp_path: Path) -> Iterator[Runners]:
    made = Runners(target, tmp_path)
    try:
        yield made
    finally:
        made.close()


def status(store: durable.Store) -> durable.MigrationStatus | None:
    return next((s for s in store.migrations() if s.id == "double"), None)


def test_two_runners_never_run_a_batch_at_the_same_time(target: Target, runners: Runners) -> None:
    store = target.open()
    runners.start()
    runners.start()
    assert poll(lambda: (s := status(store)) is not None and s.complete, timeout=30)
    runners.stop_all()
    batches = runners.batches()
    assert len(batches) == ROWS // 10
    assert len({pid for pid, *_ in batches}) >= 1
    for (_, _, _, end), (_, _, start, _) in itertools.pairwise(batches):
        assert start >= end, "two batches ran at once"


def test_a_runner_killed_midway_loses_no_progress_and_the_other_completes_it(
    target: Target, runners: Runners
) -> None:
    store = target.open()
    victim = runners.start()
    assert poll(lambda: (s := status(store)) is not None and s.progress >= 0.3, timeout=30)
    victim.kill()
    victim.communicate(timeout=WAIT)
    recorded = status(store)
    assert recorded is not None
    runners.start()
    assert poll(lambda: (s := status(store)) is not None and s.complete, timeout=30)
    final = status(store)
    assert final is not None
    assert final.progress == 1.0 >= recorded.progress
    store.require_migrations_complete(["double"])
    runners.stop_all()


def test_a_raising_batch_is_recorded_and_retried_at_the_next_interval(
    target: Target, runners: Runners
) -> None:
    store = target.open()
    runners.start("--fail-first")
    assert poll(lambda: (s := status(store)) is not None and s.complete, timeout=30)
    runners.stop_all()
    final = status(store)
    assert final is not None
    (error,) = final.errors
    assert "RuntimeError: the first batch fails" in error.error
    assert len(runners.batches()) == ROWS // 10


def test_reversing_midway_runs_down_back_to_zero(target: Target, runners: Runners) -> None:
    store = target.open()
    runners.start()
    assert poll(lambda: (s := status(store)) is not None and s.progress >= 0.3, timeout=30)
    store.set_migration_direction("double", reverse=True)
    assert poll(lambda: (s := status(store)) is not None and s.reverse and s.complete, timeout=30)
    runners.stop_all()
    final = status(store)
    assert final is not None
    assert final.progress == 0.0
    directions = [direction for _, direction, *_ in runners.batches()]
    assert directions[0] == "up"
    assert directions[-1] == "down"
    assert directions.count("down") >= 3
