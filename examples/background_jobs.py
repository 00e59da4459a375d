"""The Go "background job" pattern in Python: five workers, jobs queued by a signal.

Every SIGUSR1 (`kill -USR1 <pid>`) queues a job; five workers take jobs from a bounded queue.
SIGTERM or Ctrl-C stops intake, lets the workers finish what is queued (for up to five seconds),
then prints what was done and, if anything was left, the jobs that never ran.

Run: python examples/background_jobs.py [seconds per job]
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import threading

import routines

JOB_SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0


def do_job(job: int) -> str:
    print(f"job {job}: started on {threading.current_thread().name}", flush=True)
    # routines.sleep returns early once the pool is stopping; a real job would check
    # routines.stopping() between steps. This one finishes anyway: it is already running.
    routines.sleep(JOB_SECONDS)
    print(f"job {job}: done", flush=True)
    return f"job {job}"


def main() -> int:
    pool: routines.WorkerPool[int, str] = routines.WorkerPool(
        do_job, workers=5, buffer=100, name="jobs", drain_timeout=5.0
    )
    numbers = itertools.count(1)

    def queue_a_job() -> None:
        job = next(numbers)
        try:
            pool.submit(job, block=False)
        except routines.PoolFull:
            print(f"job {job}: dropped, the queue is full", flush=True)
        except routines.PoolClosed:
            print(f"job {job}: dropped, the pool is stopping", flush=True)
        else:
            print(f"job {job}: queued", flush=True)

    print(
        f"background jobs: pid {os.getpid()}, five workers; "
        f"`kill -USR1 {os.getpid()}` queues a job, Ctrl-C or SIGTERM drains and exits",
        flush=True,
    )
    # run() puts back the handlers it found when it returns: with these ignored, a late
    # Ctrl-C or SIGTERM while the program exits is ignored instead of raising or killing it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    report = routines.Monitor(
        pool,
        stop_timeout=10.0,
        on_signal={signal.SIGUSR1: queue_a_job},
        # "started" comes after the signal handlers are in place: from then on SIGUSR1 works.
        on_event=lambda event: print(f"{event.routine}: {event.kind}", flush=True),
    ).run()
    status = pool.status()
    print(f"done: {status.runs} jobs run, {status.failures} failed", flush=True)
    left = pool.unprocessed()
    if left:
        print(f"never ran: {', '.join(f'job {job}' for job in left)}", flush=True)
    print(report, flush=True)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
