"""What each index of the jobs table costs an enqueue on SQLite (issue 31).

A keyless job without a task, as figure 7 enqueues it, writes an entry in three indexes of the
jobs table: `jobs_ready` (the claim's), `jobs_by_state` (`counts()`, `purge()`) and
`jobs_listing` (the job browser's pages); the others are partial indexes it has no entry in.
Each variant drops some of them from a fresh store's file, then times N enqueues one at a time
and one batch of N; huey's one-at-a-time enqueue on the same file settings is the reference.
The variants are interleaved, each measured `--rounds` times; medians are printed.

    .venv/bin/python benchmarks/index_cost.py [--jobs N] [--rounds R]
"""

from __future__ import annotations

import argparse
import functools
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from _durable import fresh_directory

from routines import durable

VARIANTS: dict[str, tuple[str, ...]] = {
    "every index": (),
    "without jobs_ready": ("jobs_ready",),
    "without jobs_by_state": ("jobs_by_state",),
    "without jobs_listing": ("jobs_listing",),
    "without all three": ("jobs_ready", "jobs_by_state", "jobs_listing"),
}


def routines(dropped: tuple[str, ...], n: int) -> tuple[float, float]:
    with fresh_directory() as directory:
        path = directory / "jobs.db"
        with durable.open_store(f"sqlite:///{path}") as store:
            queue = store.queue("bench")
            queue.counts()  # the schema, set up untimed
            _drop(path, dropped)
            began = time.perf_counter()
            for i in range(n):
                queue.enqueue(i)
            middle = time.perf_counter()
            queue.enqueue_many(range(n))
            ended = time.perf_counter()
            if sum(queue.counts().values()) != 2 * n:
                raise RuntimeError("jobs went missing")
            return n / (middle - began), n / (ended - middle)


def huey(n: int) -> float:
    from huey import SqliteHuey

    with fresh_directory() as directory:
        queue = SqliteHuey(filename=str(directory / "huey.db"))
        task = queue.task()(_noop)
        began = time.perf_counter()
        for i in range(n):
            task(i)
        elapsed = time.perf_counter() - began
        queue.storage.close()
        return n / elapsed


def _drop(path: Path, indexes: tuple[str, ...]) -> None:
    connection = sqlite3.connect(path)
    try:
        for index in indexes:
            connection.execute(f'DROP INDEX "routines_{index}"')
        connection.commit()
    finally:
        connection.close()


def _noop(n: int) -> int:
    return n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000, help="jobs per trial (default 3000)")
    parser.add_argument("--rounds", type=int, default=5, help="trials per variant (default 5)")
    options = parser.parse_args()
    one: dict[str, list[float]] = {name: [] for name in [*VARIANTS, "huey"]}
    batch: dict[str, list[float]] = {name: [] for name in VARIANTS}

    def trial(name: str) -> None:
        rate, batch_rate = routines(VARIANTS[name], options.jobs)
        one[name].append(rate)
        batch[name].append(batch_rate)

    trials: list[Callable[[], None]] = [functools.partial(trial, name) for name in VARIANTS]
    trials.append(lambda: one["huey"].append(huey(options.jobs)))
    for _ in range(options.rounds):
        for each in trials:
            each()
    base, base_batch = (
        statistics.median(one["every index"]),
        statistics.median(batch["every index"]),
    )
    print(f"SQLite enqueue, {options.jobs:,} jobs, median of {options.rounds} interleaved rounds")
    print(f"{'':24}{'one at a time':>16}{'vs every index':>16}{'batch':>12}{'vs every':>10}")
    for name in VARIANTS:
        rate, batch_rate = statistics.median(one[name]), statistics.median(batch[name])
        print(
            f"{name:24}{rate:>14,.0f}/s{rate / base:>15.2f}x"
            f"{batch_rate:>10,.0f}/s{batch_rate / base_batch:>9.2f}x"
        )
    rate = statistics.median(one["huey"])
    print(f"{'huey (reference)':24}{rate:>14,.0f}/s{rate / base:>15.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
