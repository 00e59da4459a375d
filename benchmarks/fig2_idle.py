"""Figure 2: CPU time the process uses while N idle periodic routines wait."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import schedule
from _common import (
    HOUR,
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

# The window; shorter windows (--quick) are scaled to it.
WINDOW = 5.0
GOAL = 0.05


def _idle_cpu(
    window: float, settle: float, start: Callable[[], Callable[[], None]]
) -> dict[str, float]:
    """Start the side, let it settle, measure process CPU over `window`, stop it."""
    stop = start()
    try:
        time.sleep(settle)
        before = time.process_time()
        time.sleep(window)
        used = time.process_time() - before
    finally:
        stop()
    return {"cpu": used * WINDOW / window}


def _started(side: IdleRoutines | IdleThreads) -> Callable[[], None]:
    side.start()
    return side.stop


def _apscheduler(n: int) -> Callable[[], None]:
    scheduler = BackgroundScheduler()
    for i in range(n):
        scheduler.add_job(nothing, "interval", seconds=HOUR, id=f"idle-{i}")
    scheduler.start()
    return lambda: scheduler.shutdown(wait=True)


def _schedule(n: int) -> Callable[[], None]:
    """`schedule`'s documented loop: `while True: schedule.run_pending(); time.sleep(1)`."""
    scheduler = schedule.Scheduler()
    for _ in range(n):
        scheduler.every(1).hours.do(nothing)
    done = threading.Event()

    def loop() -> None:
        while not done.is_set():
            scheduler.run_pending()
            done.wait(1)  # time.sleep(1) in the docs; the same cost, but stops at once here

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()

    def stop() -> None:
        done.set()
        thread.join(60.0)

    return stop


def run(settings: Settings) -> Figure:
    n, window, settle = settings.routines, settings.idle_window, settings.settle
    sides = [
        Side("routines: Monitor"),
        Side(f"limit: {n} bare threads on one Event"),
        Side("peer: APScheduler BackgroundScheduler"),
        Side("peer: schedule run_pending() loop"),
    ]
    measure(
        sides,
        [
            lambda: _idle_cpu(window, settle, lambda: _started(IdleRoutines(n))),
            lambda: _idle_cpu(window, settle, lambda: _started(IdleThreads(n))),
            lambda: _idle_cpu(window, settle, lambda: _apscheduler(n)),
            lambda: _idle_cpu(window, settle, lambda: _schedule(n)),
        ],
        settings.repeats,
    )
    scaled = f", measured over {window:g}s and scaled" if window != WINDOW else ""
    figure = Figure(
        number=2,
        title="Idle cost",
        workload=f"process CPU seconds while {n} idle routines wait {WINDOW:g}s{scaled}",
        metrics=["cpu"],
        unit="s",
        better="lower",
        sides=sides,
    )
    cpu = sides[0].median("cpu")
    figure.goal = Goal(f"under {GOAL:g} CPU s per {WINDOW:g}s", cpu < GOAL, f"{cpu:.4f} s")
    return figure
