"""Soak: many start/shutdown cycles of a Monitor with a dozen routines of every kind leave the
thread count and the traced memory where they started.

Each cycle is a fresh Monitor over the same routine objects (every routine kind is restartable)
and a fresh WorkerPool (a stopped pool is closed for good). Half the cycles shut down at once,
racing the starts; the others once every routine runs and the pool has taken some jobs. The
default run is a few hundred cycles; `--soak` runs thousands.
"""

from __future__ import annotations

import gc
import threading
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import Future

import pytest

import routines
from routines._threads import join_all

from helpers import WAIT, EventLog

CYCLES = 200
SOAK_CYCLES = 3000
WARM_UP = 20
# Traced memory may grow by this much over the whole run (caches, interned strings, the
# tracemalloc bookkeeping itself); a leak of even one small object per cycle exceeds it.
MEMORY_SLACK = 256 * 1024


class Worker(routines.BackgroundRoutine):
    def run(self) -> None:
        self.wait(None)


def square(job: int) -> int:
    return job * job


class Server:
    """A start/stop pair like serve_forever/shutdown, good for any number of runs."""

    def __init__(self) -> None:
        self._shut_down = threading.Event()

    def serve_forever(self) -> None:
        self._shut_down.wait()
        self._shut_down.clear()

    def shutdown(self) -> None:
        self._shut_down.set()


def shared_routines() -> list[routines.Routine]:
    """Eleven restartable routines of every kind, reused by every cycle."""
    server = Server()
    return [
        Worker("background-1"),
        Worker("background-2"),
        routines.NoopRoutine("noop"),
        routines.CallbackRoutine(lambda: routines.sleep(60), name="callback"),
        routines.CallbackRoutine(server.serve_forever, server.shutdown, name="server"),
        routines.CallbackRoutine(lambda: None, name="one-shot"),  # returns by itself
        routines.CombinedRoutine(routines.NoopRoutine("a"), Worker("b"), name="combined"),
        routines.CombinedRoutine(
            routines.NoopRoutine("c"), Worker("d"), name="combined-lifo", stop_order="lifo"
        ),
        routines.PeriodicRoutine(lambda: None, name="periodic", interval=0.001),
        routines.PeriodicRoutine(
            lambda: routines.REINVOKE_IMMEDIATELY, name="periodic-2", interval=60, concurrency=2
        ),
        routines.supervised(routines.NoopRoutine("supervised"), routines.RestartPolicy()),
    ]


def one_cycle(members: list[routines.Routine], number: int) -> None:
    pool: routines.WorkerPool[int, int] = routines.WorkerPool(
        square, workers=2, buffer=8, name="pool"
    )
    jobs: list[Future[int]] = [pool.submit(job) for job in range(4)]
    events = EventLog()
    monitor = routines.Monitor(*members, pool, signals=(), stop_timeout=WAIT, on_event=events)
    monitor.start()
    if number % 2:
        for member in (*members, pool):
            name = getattr(member, "name", "")
            events.wait_for(name, "started")
        assert jobs[-1].result(WAIT) == 9
    monitor.shutdown(f"cycle {number}")
    report = monitor.wait(WAIT * 2)
    assert report is not None, f"cycle {number}: no report"
    assert report.ok, f"cycle {number}: {report}"
    assert all(job.done() for job in jobs)
    assert pool.unprocessed() == [n for n, job in enumerate(jobs) if job.cancelled()]


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def soak(cycles: int) -> None:
    members = shared_routines()
    threads_before = threading.active_count()
    for number in range(WARM_UP):
        one_cycle(members, number)
    gc.collect()
    memory_before, _ = tracemalloc.get_traced_memory()
    for number in range(WARM_UP, WARM_UP + cycles):
        one_cycle(members, number)
    gc.collect()
    memory_after, _ = tracemalloc.get_traced_memory()
    leftover = [t for t in threading.enumerate() if t.name.startswith("routine")]
    assert not join_all(leftover, WAIT), "routine threads outlived their monitors"
    assert threading.active_count() == threads_before
    growth = memory_after - memory_before
    print(f"soak: {cycles} cycles, traced memory grew by {growth} bytes")
    assert growth < MEMORY_SLACK, f"traced memory grew by {growth} bytes over {cycles} cycles"


def test_hundreds_of_cycles_return_threads_and_memory_to_their_baseline(traced: None) -> None:
    soak(CYCLES)


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_thousands_of_cycles_return_threads_and_memory_to_their_baseline(traced: None) -> None:
    soak(SOAK_CYCLES)
