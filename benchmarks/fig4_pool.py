"""Figure 4: throughput of trivial jobs through 4 workers, each job with its future.

Every side gets the same jobs from one submitting thread and is done when every result is in.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait

from _common import Figure, Goal, Settings, Side, measure

from routines import WorkerPool

WORKERS = 4
# The pool's queue bound; ThreadPoolExecutor's queue is unbounded.
BUFFER = 1000
GOAL = 1.5


def _job(item: int) -> int:
    return item


def _routines_pool(jobs: int) -> dict[str, float]:
    pool: WorkerPool[int, int] = WorkerPool(_job, workers=WORKERS, buffer=BUFFER, name="bench")
    thread = threading.Thread(target=pool.start, daemon=True)
    thread.start()
    # Like the executor's below: have the workers up before the clock starts.
    wait([pool.submit(i) for i in range(WORKERS * 4)])
    began = time.perf_counter()
    submit = pool.submit
    futures = [submit(i) for i in range(jobs)]
    wait(futures)
    elapsed = time.perf_counter() - began
    pool.stop()
    thread.join(30.0)
    _check(futures, jobs)
    return {"throughput": jobs / elapsed}


def _thread_pool_executor(jobs: int) -> dict[str, float]:
    with ThreadPoolExecutor(WORKERS) as executor:
        # Warm its threads up first: it starts them lazily, on submit.
        wait([executor.submit(_job, i) for i in range(WORKERS * 4)])
        began = time.perf_counter()
        submit = executor.submit
        futures = [submit(_job, i) for i in range(jobs)]
        wait(futures)
        elapsed = time.perf_counter() - began
    _check(futures, jobs)
    return {"throughput": jobs / elapsed}


def _bare_queue(jobs: int) -> dict[str, float]:
    """4 threads on a `queue.Queue`, no futures: the results go to a list, None ends a worker."""
    inbox: queue.Queue[int | None] = queue.Queue()
    results: list[int] = []
    done = threading.Event()
    counted = threading.Lock()
    remaining = [jobs]

    def worker() -> None:
        get, put_result = inbox.get, results.append
        while (item := get()) is not None:
            put_result(_job(item))
            with counted:
                remaining[0] -= 1
                if not remaining[0]:
                    done.set()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    put = inbox.put
    for i in range(jobs):
        put(i)
    done.wait(300.0)
    elapsed = time.perf_counter() - began
    for _ in threads:
        inbox.put(None)
    for thread in threads:
        thread.join(30.0)
    if len(results) != jobs:
        msg = f"lost jobs: {len(results)} of {jobs}"
        raise RuntimeError(msg)
    return {"throughput": jobs / elapsed}


def _check(futures: list[Future[int]], jobs: int) -> None:
    if sum(1 for future in futures if future.done() and not future.cancelled()) != jobs:
        msg = "not every job ran"
        raise RuntimeError(msg)


def run(settings: Settings) -> Figure:
    jobs = settings.pool_jobs
    sides = [
        Side(f"routines: WorkerPool(workers={WORKERS}, buffer={BUFFER})"),
        Side(f"peer: ThreadPoolExecutor({WORKERS})"),
        Side(f"limit: {WORKERS} bare threads on a queue.Queue, no futures"),
    ]
    measure(
        sides,
        [
            lambda: _routines_pool(jobs),
            lambda: _thread_pool_executor(jobs),
            lambda: _bare_queue(jobs),
        ],
        settings.repeats,
    )
    figure = Figure(
        number=4,
        title="Pool throughput",
        workload=f"{jobs:,} trivial jobs through {WORKERS} workers, submit to last result",
        metrics=["throughput"],
        unit="jobs/s",
        better="higher",
        sides=sides,
    )
    ratio = figure.ratio(sides[1], "throughput")
    figure.goal = Goal(f"at least {GOAL:g}x ThreadPoolExecutor", ratio >= GOAL, f"{ratio:.2f}x")
    return figure
