"""Figure 6: resident memory per idle routine, against a bare thread waiting on an Event.

Each measurement runs in a fresh subprocess (`python fig6_memory.py SIDE N`), so that nothing
the parent allocated before pollutes it. The child imports the same modules on both sides,
warms up with a few of its kind started and stopped, reads its RSS, starts N, waits until all
are idle, and reads its RSS again: (after - before) / N.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
from _common import Figure, Goal, IdleRoutines, IdleThreads, Settings, Side, measure

GOAL = 1.2
WARMUP = 20
SETTLE = 0.2


def child(side: str, n: int) -> dict[str, float]:
    """In the subprocess: the RSS growth per idle routine (or thread), in KiB."""
    kind = IdleRoutines if side == "routines" else IdleThreads
    warm = kind(WARMUP)
    warm.start()
    warm.stop()
    del warm
    gc.collect()
    time.sleep(SETTLE)
    process = psutil.Process()
    before = process.memory_info().rss
    measured = kind(n)
    measured.start()
    time.sleep(SETTLE)
    gc.collect()
    after = process.memory_info().rss
    measured.stop()
    return {"rss": (after - before) / n / 1024}


def _measure_in_subprocess(side: str, n: int) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), side, str(n)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    result: dict[str, float] = json.loads(output)
    return result


def run(settings: Settings) -> Figure:
    n = settings.routines
    sides = [
        Side("routines: PeriodicRoutine under a Monitor"),
        Side("limit: bare thread on an Event"),
    ]
    measure(
        sides,
        [
            lambda: _measure_in_subprocess("routines", n),
            lambda: _measure_in_subprocess("threads", n),
        ],
        settings.repeats,
        warmups=0,  # every run is a fresh process that warms itself up
    )
    figure = Figure(
        number=6,
        title="Memory",
        workload=f"resident memory per idle routine, {n} of them, each side in a fresh process",
        metrics=["rss"],
        unit="KiB",
        better="lower",
        sides=sides,
    )
    ratio = figure.ratio(sides[1], "rss")
    figure.goal = Goal(f"within {GOAL:g}x of a bare thread", ratio <= GOAL, f"{ratio:.2f}x")
    return figure


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1], int(sys.argv[2]))))
