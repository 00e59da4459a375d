"""A worker process of the multi-process tests: a QueueWorker under a Monitor.

usage: worker.py URL SCHEMA QUEUE RECORD MODE [CONCURRENCY [SETTINGS [PAUSES]]]

Appends "<job id> <attempt>" to the file RECORD as each handler starts a job (one line per
write, flushed), and prints "ready" once the worker has started under the Monitor, its SIGTERM
handler in place (`_ready.py`). With PAUSES, appends "paused" or "running" to that file each
time the worker's status says the queue is paused or no longer is (read every 10 ms). MODE
says what a handler does with its job:
  fast       returns at once
  slow       waits half a second (returns early on a stop), then returns
  hang       waits for a stop (a minute at most), then returns: a job that is always mid-way
  interrupt  waits for a stop, then raises: the job is handed back, its attempt not spent

Small intervals, so that a death is noticed within about a second: the store's timeout 0.3 s,
heartbeats every 0.2 s, stalled after 1 s; it polls every 0.1 s. SETTINGS is either a number,
the poll interval (a long one: only a NOTIFY wakes it in time), or a JSON object that replaces
them all: the QueueWorker's options it names, the library's defaults for the others (`{}`: all
the defaults), and `timeout` for the store's. It claims ahead as many jobs as
$ROUTINES_TEST_PREFETCH says (default: the QueueWorker's own). SIGTERM ends it through the
Monitor; it exits with the report's exit code.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

from _ready import say_ready_at_start

import routines
from routines import durable


def main() -> int:
    url, schema, queue_name, record_path, mode = sys.argv[1:6]
    concurrency = int(sys.argv[6]) if len(sys.argv) > 6 else 1
    options = {
        "timeout": 0.3,
        "poll_interval": 0.1,
        "heartbeat_interval": 0.2,
        "stalled_after": 1.0,
    }
    if len(sys.argv) > 7:
        given = sys.argv[7]
        options = (
            json.loads(given)
            if given.startswith("{")
            else {**options, "poll_interval": float(given)}
        )
    timeout = options.pop("timeout", 5.0)
    pauses = sys.argv[8] if len(sys.argv) > 8 else None
    lock = threading.Lock()
    with (
        open(record_path, "a") as record,
        durable.open_store(url, schema=schema, timeout=timeout) as store,
    ):

        def handle(job: durable.Job) -> str:
            with lock:
                record.write(f"{job.id} {job.attempts}\n")
                record.flush()
            if mode == "slow":
                routines.sleep(0.5)
            elif mode == "hang":
                routines.sleep(60)
            elif mode == "interrupt" and routines.sleep(60):
                raise RuntimeError("interrupted by the stop")
            return f"done by {os.getpid()}"

        worker = durable.QueueWorker(
            store.queue(queue_name),
            handle,
            concurrency=concurrency,
            **options,
            **prefetch(),
        )
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        monitor = routines.Monitor(worker, on_event=say_ready_at_start(), stop_timeout=10)
        ended = threading.Event()
        watching = threading.Thread(target=watch_pauses, args=(worker, pauses, ended))
        if pauses is not None:
            watching.start()
        try:
            report = monitor.run()
        finally:
            ended.set()
            if pauses is not None:
                watching.join(10)
        sys.stdout.write(f"{report}\n")
        sys.stdout.flush()
        return report.exit_code


def prefetch() -> dict[str, int]:
    given = os.environ.get("ROUTINES_TEST_PREFETCH")
    return {} if given is None else {"prefetch": int(given)}


def watch_pauses(worker: durable.QueueWorker, path: str, ended: threading.Event) -> None:
    """Write down each change of the worker's `paused` status until `ended`."""
    shown = False
    with open(path, "a") as pauses:
        while not ended.wait(0.01):
            paused = worker.status().paused
            if paused != shown:
                pauses.write("paused\n" if paused else "running\n")
                pauses.flush()
                shown = paused


if __name__ == "__main__":
    sys.exit(main())
