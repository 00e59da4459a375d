"""Figure 3: timing accuracy of one fixed-rate job every 10 ms.

Each side records the time at the start of every run, and a run's lateness is that minus its
due time on the side's own grid `anchor + k * 10 ms`. For `routines` the anchor is the first
run (it runs at once, and the grid starts there); for APScheduler it is its trigger's start date
(on the wall clock, which APScheduler schedules by). Both skip due times they can no longer meet,
so a run is measured against the latest grid point at or before it, after the previous run's
(the points skipped are counted as "missed"). The chained `threading.Timer` has no grid of its
own: its k-th run is due at `t0 + k * 10 ms`, so its drift shows in the last run's lateness.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable

from _common import Figure, Goal, Settings, Side, measure, percentile
from apscheduler.schedulers.background import BackgroundScheduler

import routines

INTERVAL = 0.010
MEDIAN_GOAL = 0.5e-3
P99_GOAL = 2e-3


def _lateness(starts: list[float], *, anchor: float | None, skips: bool) -> dict[str, float]:
    if len(starts) < 2:
        msg = f"too few runs to measure: {len(starts)}"
        raise RuntimeError(msg)
    k = -1  # the grid index of the previous run
    if anchor is None:  # the first run is the grid's start: due at once, late by nothing
        anchor, starts, k = starts[0], starts[1:], 0
    late = []
    missed = 0
    for started in starts:
        if skips:
            due_index = max(k + 1, math.floor((started - anchor) / INTERVAL))
            missed += due_index - k - 1
            k = due_index
        else:
            k += 1
        late.append(started - (anchor + k * INTERVAL))
    return {
        "median": statistics.median(late),
        "p99": percentile(late, 0.99),
        "last run": late[-1],
        "missed": float(missed),
    }


def _routines(duration: float) -> dict[str, float]:
    starts: list[float] = []
    routine = routines.PeriodicRoutine(
        lambda: starts.append(time.monotonic()), interval=INTERVAL, fixed_rate=True, name="10ms"
    )
    thread = threading.Thread(target=routine.start, daemon=True)
    thread.start()
    time.sleep(duration)
    routine.stop()
    thread.join(10.0)
    return _lateness(starts, anchor=None, skips=True)


def _apscheduler(duration: float) -> dict[str, float]:
    starts: list[float] = []
    scheduler = BackgroundScheduler()
    job = scheduler.add_job(lambda: starts.append(time.time()), "interval", seconds=INTERVAL)
    scheduler.start()
    time.sleep(duration)
    scheduler.shutdown(wait=True)
    # Its first run is due at its trigger's start date.
    anchor = job.trigger.start_date.timestamp()
    return _lateness(starts, anchor=anchor, skips=True)


def _timer_chain(duration: float) -> dict[str, float]:
    """The classic `def tick(): work(); Timer(interval, tick).start()`."""
    starts: list[float] = []
    done = threading.Event()
    lock = threading.Lock()
    timers: list[threading.Timer] = []

    def tick() -> None:
        starts.append(time.monotonic())
        with lock:
            if not done.is_set():
                timer = threading.Timer(INTERVAL, tick)
                timers[:] = [timer]
                timer.start()

    tick()
    time.sleep(duration)
    with lock:
        done.set()
        last = timers[0]
    last.cancel()
    last.join(10.0)
    return _lateness(starts, anchor=None, skips=False)


def run(settings: Settings) -> Figure:
    duration = settings.timing_duration
    sides = [
        Side("routines: PeriodicRoutine(fixed_rate=True)"),
        Side("peer: APScheduler interval job"),
        Side("peer: chained threading.Timer"),
    ]
    trials: list[Callable[[], dict[str, float]]] = [
        lambda: _routines(duration),
        lambda: _apscheduler(duration),
        lambda: _timer_chain(duration),
    ]
    measure(sides, trials, settings.repeats)
    figure = Figure(
        number=3,
        title="Timing accuracy",
        workload=f"one job every 10 ms for {duration:g}s: lateness against the due time",
        metrics=["median", "p99", "last run"],
        unit="s",
        better="lower",
        sides=sides,
    )
    mine = sides[0]
    median, p99, last = mine.median("median"), mine.median("p99"), mine.median("last run")
    # "No drift": the last run is no later than the median's order (ten times it, or 0.5 ms).
    no_drift = last <= max(10 * median, MEDIAN_GOAL)
    figure.goal = Goal(
        "median < 0.5 ms, p99 < 2 ms, no drift",
        median < MEDIAN_GOAL and p99 < P99_GOAL and no_drift,
        f"median {median * 1e3:.3f} ms, p99 {p99 * 1e3:.3f} ms, last run {last * 1e3:.3f} ms,"
        f" missed {mine.median('missed'):g}",
    )
    return figure
