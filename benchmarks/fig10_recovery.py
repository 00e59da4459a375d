"""Figure 10: recovery: a worker process is SIGKILLed in the middle of a job; how long until
the job starts again in the other worker process, which was running all along.

With each library's recommended settings, which are its defaults (the full run), or with short
ones (`--quick`): routines `heartbeat_interval=0.25, stalled_after=2` on a store with
`timeout=1`; pgqueuer `heartbeat_timeout=2s, dequeue_timeout=1s`. routines is measured with its
liveness marks (the default: the killed process's mark is free at once, and the other worker
tests marks every second) and with `liveness=False` (its heartbeat alone, after
`stalled_after`), for comparison. A library that has not run the job again within the window is
shown as "never" (within that window), with what its documentation offers.
"""

from __future__ import annotations

import select
import time
from typing import Any

from _common import Figure, Goal, Settings, Side, measure
from _durable import Child, postgres_missing, redis_missing
from _producers import environment

WINDOW = {"recommended": 90.0, "short": 8.0}  # how long a "never" is watched
STALLED_AFTER = {"recommended": 30.0, "short": 2.0}  # routines' stalled_after in each setting
Recovery = dict[str, float]


GOAL = 2.0  # seconds, at the defaults, with liveness marks


def recovery(side: str, settings: str, *, liveness: bool = True) -> Recovery:
    window = WINDOW[settings]
    with environment(side) as (producer, library, config):
        config.update(hang=True, short=settings == "short")
        if library == "routines":
            config.update(liveness=liveness)
        with (
            Child("worker", library, **config) as first,
            Child("worker", library, **config) as second,
        ):
            first.expect("ready", 60.0)
            second.expect("ready", 60.0)
            producer.enqueue(1)
            holder, started = _first_to_start([first, second], 60.0)
            other = second if holder is first else first
            holder.others.add(started["pid"])  # the process running the job, if not the worker
            holder.kill()
            killed = time.monotonic()
            line = other.read(window)
            while line is not None and line.get("event") != "started":
                line = other.read(max(0.0, killed + window - time.monotonic()))
            if line is not None:
                other.others.add(line["pid"])  # it hangs too: killed on leaving
    return {"recovery": float("inf") if line is None else line["at"] - killed}


def _first_to_start(children: list[Child], timeout: float) -> tuple[Child, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in children:
            line = child.read(0.0)
            if line is not None and line.get("event") == "started":
                return child, line
        streams = [child.process.stdout for child in children]
        select.select(streams, [], [], min(0.05, max(0.0, deadline - time.monotonic())))
    msg = f"no worker started the job within {timeout}s"
    raise TimeoutError(msg)


def run(settings: Settings) -> Figure:
    mode = settings.recovery_settings
    window = WINDOW[mode]
    stalled = STALLED_AFTER[mode]
    marks = "its liveness mark, tested every 1s (the default)"
    heartbeats = f"liveness=False: stalled_after={stalled:g}s, a sweep every {stalled / 2:g}s"
    sides = [Side("routines: QueueWorker on SQLite"), Side("routines: SQLite, liveness=False")]
    sides[0].note, sides[1].note = marks, heartbeats
    measured = [
        lambda: recovery("routines-sqlite", mode),
        lambda: recovery("routines-sqlite", mode, liveness=False),
    ]
    never = [Side("peer: huey SqliteHuey consumer")]
    never[0].note = "it deletes a task when it takes it: the job is lost"
    watched = [lambda: recovery("huey", mode)]
    postgres = postgres_missing()
    if postgres is None:
        sides += [
            Side("routines: QueueWorker on PostgreSQL"),
            Side("routines: PostgreSQL, liveness=False"),
            Side("peer: pgqueuer"),
        ]
        sides[2].note, sides[3].note = marks, heartbeats
        sides[4].note = (
            f"re-picks a job whose heartbeat is older than {stalled:g}s, at its next dequeue"
            f" (every {stalled if mode == 'recommended' else stalled / 2:g}s when idle)"
        )
        measured += [
            lambda: recovery("routines-postgres", mode),
            lambda: recovery("routines-postgres", mode, liveness=False),
            lambda: recovery("pgqueuer", mode),
        ]
        never.append(Side("peer: procrastinate worker"))
        never[-1].note = "stays 'doing' until code calls retry_stalled_jobs (a periodic task)"
        watched.append(lambda: recovery("procrastinate", mode))
    if redis_missing() is None:
        never.append(Side("reference: rq Worker"))
        never[-1].note = "moved to the failed registry by maintenance (every 10 min)"
        watched.append(lambda: recovery("rq", mode))
    measure(sides, measured, settings.durable_repeats, warmups=0)
    measure(never, watched, 1, warmups=0)  # watched once: each costs the whole window
    figure = Figure(
        number=10,
        title="Recovery after SIGKILL",
        workload=(
            f"a worker killed mid-job, until the job starts in the other worker ({mode} settings;"
            f" 'never' = not within {window:g}s)"
        ),
        metrics=["recovery"],
        unit="s",
        better="lower",
        sides=sides + never,
        ratios=False,
    )
    ours = [side.median("recovery") for side in sides if side.note == marks]
    peers = [side.median("recovery") for side in sides + never if side.name.startswith("peer")]
    fastest_peer = min(peers, default=float("inf"))
    figure.goal = Goal(
        f"under {GOAL:g}s on both backends at the defaults, faster than every peer",
        all(value < GOAL and value < fastest_peer for value in ours),
        ", ".join(f"{value:.2f}s" for value in ours),
    )
    return figure
