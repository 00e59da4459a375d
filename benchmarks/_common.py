"""What every figure shares: the run settings, repetition with warm-up, results and clean-up."""

from __future__ import annotations

import gc
import math
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import routines

HOUR = 3600.0


@dataclass(frozen=True)
class Settings:
    """The size of a run: the full one, or `--quick` (everything smaller, for CI)."""

    quick: bool
    repeats: int  # measured repetitions per side; the median is reported
    routines: int  # figures 1, 2, 5, 6: how many idle routines (the issue says 1,000)
    idle_window: float  # figure 2: seconds of idling measured (the issue says 5)
    timing_duration: float  # figure 3: seconds of 10 ms runs (the issue says 3)
    pool_jobs: int  # figure 4 (the issue says 200,000)
    settle: float  # seconds for started threads to reach their wait before a measurement
    naive_interval: float  # figure 1: the naive loop's interval, measured and scaled to 1 h
    durable_repeats: int  # figures 7-10: measured rounds (no warm-up: each starts afresh)
    durable_jobs: int  # figures 7 and 8 (the issue says 10,000)
    wakeups: int  # figure 9: jobs one at a time (the issue says 200)
    schedule_seconds: float  # figure 11: how long three processes run an every-second job
    recovery_settings: str  # figure 10: "recommended" (each library's defaults) or "short"
    listing_jobs: int  # figure 12: the big table's jobs (the issue says 1,000,000)
    dashboard_jobs: int  # figure 13: jobs over 50 queues (the issue says 100,000)
    scaling_jobs: int  # figure 14: the big backlog (the issue says 100,000)

    @classmethod
    def full(cls) -> Settings:
        return cls(
            quick=False,
            repeats=5,
            routines=1000,
            idle_window=5.0,
            timing_duration=3.0,
            pool_jobs=200_000,
            settle=0.2,
            naive_interval=0.5,
            durable_repeats=3,
            durable_jobs=10_000,
            wakeups=200,
            schedule_seconds=10.0,
            recovery_settings="recommended",
            listing_jobs=1_000_000,
            dashboard_jobs=100_000,
            scaling_jobs=100_000,
        )

    @classmethod
    def small(cls) -> Settings:
        return cls(
            quick=True,
            repeats=3,
            routines=200,
            idle_window=0.25,
            timing_duration=0.4,
            pool_jobs=10_000,
            settle=0.05,
            naive_interval=0.2,
            durable_repeats=1,
            durable_jobs=300,
            wakeups=20,
            schedule_seconds=3.0,
            recovery_settings="short",
            listing_jobs=20_000,
            dashboard_jobs=5_000,
            scaling_jobs=1_000,
        )


@dataclass
class Side:
    """One contender of a figure: `routines`, a limit or a peer, with its samples per metric."""

    name: str
    samples: dict[str, list[float]] = field(default_factory=dict)
    note: str = ""
    against: Side | None = None  # the routines side this one's ratio divides (else sides[0])

    def add(self, metrics: dict[str, float]) -> None:
        for metric, value in metrics.items():
            self.samples.setdefault(metric, []).append(value)

    def median(self, metric: str) -> float:
        values = self.samples.get(metric)
        return statistics.median(values) if values else math.nan


@dataclass
class Goal:
    text: str
    met: bool
    detail: str = ""


@dataclass
class Figure:
    """The result of one figure: `sides[0]` is `routines`; ratios are routines / other, for
    each side that is not `routines` itself."""

    number: int | str
    title: str
    workload: str
    metrics: list[str]  # the metric names, in column order
    unit: str  # "s", "ms", "MiB", "jobs/s", ...
    better: Literal["lower", "higher"]
    sides: list[Side]
    goal: Goal | None = None
    skipped: str = ""  # why the figure did not run (a server or a peer missing)
    ratios: bool = True  # False for a table of counts, where a ratio means nothing
    speedup: bool = False  # ratio = other / its `against` side (a side against its own baseline)

    @classmethod
    def skipped_because(cls, number: int | str, title: str, reason: str) -> Figure:
        return cls(number, title, "", [], "", "higher", [], skipped=reason)

    def ratio(self, other: Side, metric: str) -> float:
        ours = other.against or self.sides[0]
        mine, theirs = ours.median(metric), other.median(metric)
        if self.speedup:
            mine, theirs = theirs, mine
        if theirs == 0 or not math.isfinite(theirs) or not math.isfinite(mine):
            return math.nan
        return mine / theirs


Trial = Callable[[], dict[str, float]]


def measure(sides: list[Side], trials: list[Trial], repeats: int, *, warmups: int = 1) -> None:
    """Run every side's trial `warmups` times unrecorded, then `repeats` times, interleaved.

    Interleaving (a, b, c, a, b, c, ...) spreads any change in the machine's load over all sides
    alike; every trial leaves no thread behind (`settle()`), so none pays for another's.
    """
    for _ in range(warmups):
        for trial in trials:
            trial()
            settle()
    for _ in range(repeats):
        for side, trial in zip(sides, trials, strict=True):
            side.add(trial())
            settle()


def settle(timeout: float = 30.0) -> None:
    """Wait until only the main thread is left (the benchmarks join their threads), then collect.

    A thread still alive after `timeout` is a bug in a trial: raise rather than measure on top.
    """
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread is not threading.main_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
    left = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if left:
        msg = f"threads left behind by a trial: {left[:5]} ({len(left)} in all)"
        raise RuntimeError(msg)
    gc.collect()


class Countdown:
    """Counts `n` arrivals from any threads; `wait()` returns once all arrived."""

    def __init__(self, n: int) -> None:
        self._lock = threading.Lock()
        self._left = n
        self._done = threading.Event()
        if n == 0:
            self._done.set()

    def arrive(self) -> None:
        with self._lock:
            self._left -= 1
            if self._left == 0:
                self._done.set()

    def wait(self, timeout: float = 60.0) -> None:
        if not self._done.wait(timeout):
            msg = f"only part of the threads arrived within {timeout}s"
            raise TimeoutError(msg)


def percentile(values: list[float], fraction: float) -> float:
    """The `fraction` quantile by linear interpolation (0.99 for p99)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class IdleRoutines:
    """N periodic routines (interval one hour) under a Monitor, the `routines` side of 1, 2, 5, 6.

    `start()` returns once every handler has run once, so every routine is in its wait.
    """

    def __init__(self, n: int) -> None:
        self.running = Countdown(n)
        idle = [
            routines.PeriodicRoutine(self.running.arrive, interval=HOUR, name=f"idle-{i}")
            for i in range(n)
        ]
        self.monitor = routines.Monitor(*idle, signals=(), stop_timeout=60.0)

    def start(self) -> None:
        self.monitor.start()
        self.running.wait()

    def stop(self) -> None:
        self.monitor.shutdown()
        report = self.monitor.wait(120.0)
        if report is None or not report.ok:
            msg = f"the monitor did not stop cleanly: {report}"
            raise RuntimeError(msg)


class IdleThreads:
    """N bare threads waiting on one Event: the limit of figures 1, 2, 5 and 6."""

    def __init__(self, n: int) -> None:
        self.running = Countdown(n)
        self.event = threading.Event()
        self.threads = [
            threading.Thread(target=self._idle, name=f"bare-{i}", daemon=True) for i in range(n)
        ]

    def _idle(self) -> None:
        self.running.arrive()
        self.event.wait()

    def start(self) -> None:
        for thread in self.threads:
            thread.start()
        self.running.wait()

    def stop(self) -> None:
        self.event.set()
        for thread in self.threads:
            thread.join(60.0)


def nothing() -> None:
    """The work of an idle job."""
