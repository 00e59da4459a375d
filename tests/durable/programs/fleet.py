"""A replica of the fleet tests (tests/durable/test_fleet_processes.py).

usage: fleet.py MODE URL SCHEMA RECORD
  schedule   a durable.Scheduled every second; each run appends "<pid> <start> <end>" (wall
             clock) to RECORD and takes half a second
  singleton  a durable.Singleton (ttl 1.5 s) around a loop that appends "<pid> <token> <time>"
             to RECORD every 50 ms while it holds the lease

Small settings, so that a death or a pause shows within a second or two: the store's timeout
0.3 s, stalled_after 1 s. Prints "ready" once its routine has started under its Monitor, its
SIGTERM handler in place (`_ready.py`); SIGTERM ends it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from _ready import say_ready_at_start

import routines
from routines import durable


def main() -> int:
    mode, url, schema, record_path = sys.argv[1:5]
    lock = threading.Lock()
    with (
        open(record_path, "a") as record,
        durable.open_store(url, schema=schema, timeout=0.3) as store,
    ):

        def write(line: str) -> None:
            with lock:
                record.write(f"{os.getpid()} {line}\n")
                record.flush()

        routine: routines.Routine
        if mode == "schedule":

            def run() -> None:
                began = time.time()
                routines.sleep(0.5)
                write(f"{began} {time.time()}")

            routine = durable.Scheduled(run, store, every=1, name="every-second", stalled_after=1.0)
        else:
            singleton: durable.Singleton

            def loop() -> None:
                while not routines.stopping():
                    write(f"{singleton.token} {time.time()}")
                    routines.sleep(0.05)

            singleton = durable.Singleton(
                routines.CallbackRoutine(loop, name="loop"),
                store,
                name="the-one",
                ttl=1.5,
                retry_interval=0.3,
            )
            routine = singleton
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        monitor = routines.Monitor(routine, on_event=say_ready_at_start(), stop_timeout=5)
        report = monitor.run()
        sys.stdout.write(f"{report}\n")
        sys.stdout.flush()
        return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
