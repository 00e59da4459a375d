"""Figure 11: a fleet-wide schedule: three processes with the same every-second job; how many
times each tick runs. A table of counts, not a time.

Each process prints the wall-clock time of every run; runs are grouped by the second they
started in (routines' ticks are whole seconds on the database's clock; APScheduler's
intervals start when each process started). huey's periodic tasks have a resolution of one
minute, so in the full run its three consumers run a once-a-minute task across one minute
boundary, and it is left out of `--quick`.
"""

from __future__ import annotations

import functools
import math
import time
from collections import Counter

from _common import Figure, Goal, Settings, Side
from _durable import Child, fresh_directory, fresh_store_url, postgres_missing

PROCESSES = 3


def _runs(library: str, seconds: float, bucket: float, **config: object) -> dict[str, float]:
    children = [Child("schedule", library, seconds=seconds, **config) for _ in range(PROCESSES)]
    try:
        for child in children:
            child.process.wait(seconds + 60.0)
        starts = []
        for child in children:
            while (line := child.read(0.0)) is not None:
                if line.get("event") == "ran":
                    starts.append(line["at"])
    finally:
        for child in children:
            child.__exit__()
    per_tick = Counter(math.floor(at / bucket) for at in starts)
    if not per_tick:
        return {"runs": 0.0, "ticks": 0.0, "runs per tick": math.nan, "most in a tick": 0.0}
    return {
        "runs": float(len(starts)),
        "ticks": float(len(per_tick)),
        "runs per tick": len(starts) / len(per_tick),
        "most in a tick": float(max(per_tick.values())),
    }


def routines(backend: str, seconds: float) -> dict[str, float]:
    with fresh_store_url(backend) as url:
        return _runs("routines", seconds, 1.0, url=url)


def apscheduler(seconds: float) -> dict[str, float]:
    return _runs("apscheduler", seconds, 1.0)


def huey(_: float) -> dict[str, float]:
    # Across the next minute boundary: start a few seconds after a minute began.
    into_minute = time.time() % 60
    span = (60 - into_minute) + 5 if into_minute > 50 else 65.0
    with fresh_directory() as directory:
        return _runs("huey", span, 60.0, path=str(directory / "huey.db"))


def run(settings: Settings) -> Figure:
    seconds = settings.schedule_seconds
    sides = [Side("routines: durable.Scheduled on SQLite")]
    trials = [functools.partial(routines, "sqlite")]
    if postgres_missing() is None:
        sides.append(Side("routines: durable.Scheduled on PostgreSQL"))
        trials.append(functools.partial(routines, "postgres"))
    sides.append(Side("peer: APScheduler 3 interval job, in each process"))
    trials.append(apscheduler)
    if not settings.quick:
        sides.append(Side("peer: huey periodic task, in each consumer"))
        sides[-1].note = "once a minute (its finest): the ticks are minutes"
        trials.append(huey)
    for side, trial in zip(sides, trials, strict=True):
        side.add(trial(seconds))
    figure = Figure(
        number=11,
        title="Fleet-wide schedule",
        workload=f"{PROCESSES} processes, the same job every second for {seconds:g}s",
        metrics=["runs", "ticks", "runs per tick", "most in a tick"],
        unit="",
        better="lower",
        sides=sides,
        ratios=False,
    )
    ours = [side for side in sides if side.name.startswith("routines")]
    figure.goal = Goal(
        "exactly one run per tick across the fleet",
        all(side.median("most in a tick") == 1 for side in ours),
        ", ".join(f"most in a tick {side.median('most in a tick'):g}" for side in ours),
    )
    return figure
