"""A pool with 100,000 queued jobs under a Monitor, for tests/test_no_loss.py.

Run: python tests/programs/no_loss.py OUT MODE
  drain    drain on stop for 0.05 s, then hand the rest back
  nodrain  drain_on_stop=False: hand everything queued back at once
  timeout  slow jobs and drain_timeout=None: the Monitor times out waiting for the pool, and
           unprocessed() takes back everything that has not started

It prints "ready" once the pool runs (the Monitor's signal handlers are in place by then), runs
until SIGTERM, then writes to OUT, as JSON: the ids each handler call saw ("ran"), the ids
`unprocessed()` handed back, the ids whose futures were cancelled, and the pool's outcome.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import sys
import threading

import routines

JOBS = 100_000


def main() -> int:
    out, mode = sys.argv[1], sys.argv[2]
    ran: list[int] = []  # list.append is atomic: every handler call leaves its id here

    def handle(job: int) -> int:
        ran.append(job)
        if mode == "timeout":
            threading.Event().wait(0.002)  # slow work that does not look at stop
        return job

    pool: routines.WorkerPool[int, int] = routines.WorkerPool(
        handle,
        workers=4,
        buffer=JOBS,
        name="jobs",
        drain_on_stop=mode != "nodrain",
        drain_timeout=None if mode == "timeout" else 0.05,
    )
    futures = [pool.submit(job) for job in range(JOBS)]
    monitor = routines.Monitor(
        pool,
        stop_timeout=0.2 if mode == "timeout" else 10.0,
        on_event=lambda event: print("ready", flush=True) if event.kind == "started" else None,
    )
    # Signals after run() returns are ignored while this program writes what it did and exits.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    report = monitor.run()

    # After a timed-out stop the workers may still be running: unprocessed() takes back every
    # job that has not started, so none can start now, and the few running ones finish.
    unprocessed = pool.unprocessed()
    _, running = concurrent.futures.wait(futures, timeout=10.0)
    with open(out, "w", encoding="utf-8") as file:
        json.dump(
            {
                "ran": ran,
                "unprocessed": unprocessed,
                "cancelled": [job for job, f in enumerate(futures) if f.cancelled()],
                "not_done": len(running),
                "outcome": report.outcomes[0].state,
                "exit_code": report.exit_code,
            },
            file,
        )
        file.flush()
        os.fsync(file.fileno())
    print(f"ran {len(ran)}, unprocessed {len(unprocessed)}", flush=True)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
