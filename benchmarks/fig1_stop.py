"""Figure 1: stop latency of N idle periodic routines (interval one hour) under a Monitor."""

from __future__ import annotations

import threading
import time

from _common import (
    HOUR,
    Countdown,
    Figure,
    Goal,
    IdleRoutines,
    IdleThreads,
    Settings,
    Side,
    measure,
    nothing,
)
from apscheduler.schedulers.background import BackgroundScheduler

GOAL = 1.5


def _timed_stop(side: IdleRoutines | IdleThreads, settle: float) -> dict[str, float]:
    side.start()
    time.sleep(settle)  # every thread gets from its first run into its wait
    began = time.perf_counter()
    side.stop()
    return {"stop": time.perf_counter() - began}


def _apscheduler_stop(n: int, settle: float) -> dict[str, float]:
    scheduler = BackgroundScheduler()
    for i in range(n):
        scheduler.add_job(nothing, "interval", seconds=HOUR, id=f"idle-{i}")
    scheduler.start()
    time.sleep(settle)
    began = time.perf_counter()
    scheduler.shutdown(wait=True)
    return {"stop": time.perf_counter() - began}


def _naive_stop(n: int, interval: float) -> dict[str, float]:
    """N `while not stop: work(); time.sleep(interval)` loops, out of phase like real ones.

    Their stop takes as long as the longest rest of a sleep: up to one interval, which grows in
    proportion to the interval. Measured at `interval` and scaled to one hour.
    """
    running = Countdown(n)
    stop = False

    def loop(phase: float) -> None:
        time.sleep(phase)
        running.arrive()
        while not stop:
            nothing()
            time.sleep(interval)

    threads = [
        threading.Thread(target=loop, args=(interval * i / n,), daemon=True) for i in range(n)
    ]
    for thread in threads:
        thread.start()
    running.wait()
    began = time.perf_counter()
    stop = True
    for thread in threads:
        thread.join(60.0)
    return {"stop": (time.perf_counter() - began) * HOUR / interval}


def run(settings: Settings) -> Figure:
    n = settings.routines
    sides = [
        Side("routines: Monitor.shutdown()"),
        Side(f"limit: {n} bare threads on one Event"),
        Side("peer: APScheduler shutdown(wait=True)"),
        Side(
            "peer: naive sleep loop",
            note=f"measured at a {settings.naive_interval:g}s interval, scaled to one hour",
        ),
    ]
    measure(
        sides,
        [
            lambda: _timed_stop(IdleRoutines(n), settings.settle),
            lambda: _timed_stop(IdleThreads(n), settings.settle),
            lambda: _apscheduler_stop(n, settings.settle),
            lambda: _naive_stop(n, settings.naive_interval),
        ],
        settings.repeats,
    )
    figure = Figure(
        number=1,
        title="Stop latency",
        workload=f"{n} idle routines (interval 1 h), from shutdown() to the report",
        metrics=["stop"],
        unit="s",
        better="lower",
        sides=sides,
    )
    ratio = figure.ratio(sides[1], "stop")
    figure.goal = Goal(f"within {GOAL:g}x of the bare-thread limit", ratio <= GOAL, f"{ratio:.2f}x")
    return figure
