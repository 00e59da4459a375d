"""Figure 5: time from nothing until N routines are all running, against N bare threads."""

from __future__ import annotations

import time
from collections.abc import Callable

from _common import Figure, Goal, IdleRoutines, IdleThreads, Settings, Side, measure

GOAL = 1.5


def _timed_start(make: Callable[[], IdleRoutines | IdleThreads]) -> dict[str, float]:
    """Build the side and start it, until every routine (or thread) has begun its work."""
    began = time.perf_counter()
    side = make()
    side.start()
    elapsed = time.perf_counter() - began
    side.stop()
    return {"start": elapsed}


def run(settings: Settings) -> Figure:
    n = settings.routines
    sides = [Side("routines: Monitor.start()"), Side(f"limit: {n} bare threads started")]
    measure(
        sides,
        [
            lambda: _timed_start(lambda: IdleRoutines(n)),
            lambda: _timed_start(lambda: IdleThreads(n)),
        ],
        settings.repeats,
    )
    figure = Figure(
        number=5,
        title="Start cost",
        workload=f"from nothing until {n} routines are all running",
        metrics=["start"],
        unit="s",
        better="lower",
        sides=sides,
    )
    ratio = figure.ratio(sides[1], "start")
    figure.goal = Goal(f"within {GOAL:g}x of bare threads", ratio <= GOAL, f"{ratio:.2f}x")
    return figure
