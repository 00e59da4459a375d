"""A worker process of the flow-control tests: a QueueWorker under a Monitor.

usage: limited_worker.py URL SCHEMA QUEUE RECORD CONCURRENCY SECONDS [POLL_INTERVAL [SNOOZES]]

Each handler appends "start <job id> <group> <time>" to the file RECORD when it starts a job and
"end <job id> <group> <time>" when it is done with it (wall-clock `time.time()`, one line per
write, flushed; the group "-" for a job without one), then returns after SECONDS. With SNOOZES,
a job whose `snoozes` is below it raises `durable.Snooze(0.05)` instead of returning. Prints
"ready" once the worker has started under the Monitor, its SIGTERM handler in place
(`_ready.py`); SIGTERM ends it through the Monitor, and it exits with the report's exit code.
"""

from __future__ import annotations

import signal
import sys
import threading
import time

from _ready import say_ready_at_start

import routines
from routines import durable


def main() -> int:
    url, schema, queue_name, record_path = sys.argv[1:5]
    concurrency, seconds = int(sys.argv[5]), float(sys.argv[6])
    poll_interval = float(sys.argv[7]) if len(sys.argv) > 7 else 1.0
    snoozes = int(sys.argv[8]) if len(sys.argv) > 8 else 0
    lock = threading.Lock()
    with (
        open(record_path, "a") as record,
        durable.open_store(url, schema=schema, timeout=5.0) as store,
    ):

        def write(what: str, job: durable.Job) -> None:
            with lock:
                record.write(f"{what} {job.id} {job.group or '-'} {time.time():.6f}\n")
                record.flush()

        def handle(job: durable.Job) -> None:
            write("start", job)
            try:
                routines.sleep(seconds)
            finally:
                write("end", job)
            if job.snoozes < snoozes:
                raise durable.Snooze(0.05)

        worker = durable.QueueWorker(
            store.queue(queue_name),
            handle,
            concurrency=concurrency,
            poll_interval=poll_interval,
        )
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        monitor = routines.Monitor(worker, on_event=say_ready_at_start(), stop_timeout=10)
        report = monitor.run()
        sys.stdout.write(f"{report}\n")
        sys.stdout.flush()
        return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
