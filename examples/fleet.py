"""A fleet of replicas on one store: a schedule that ticks once across all of them, and a
Singleton loop that runs on one replica at a time.

Run it in three terminals on the same store (each prints when it runs a tick or holds the
singleton; kill the holder and another takes over within the ttl):

    python examples/fleet.py sqlite:////tmp/fleet.db

or let it start three copies of itself on a SQLite file in a temporary directory, kill the
singleton's holder midway, and print a summary after about ten seconds:

    python examples/fleet.py --demo
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import routines
from routines import durable


def say(text: str) -> None:
    sys.stdout.write(f"[{os.getpid()}] {text}\n")
    sys.stdout.flush()


def replica(url: str) -> int:
    """One replica: a Monitor over a fleet-wide schedule and a singleton loop."""
    with durable.open_store(url, timeout=0.5) as store:
        singleton: durable.Singleton

        def report_tick() -> None:
            say("tick: this replica runs it")

        def leader_loop() -> None:
            while not routines.stopping():
                say(f"singleton: holding the lease, token {singleton.token}")
                routines.sleep(1.0)

        schedule = durable.Scheduled(report_tick, store, every=2, name="report", stalled_after=3)
        singleton = durable.Singleton(
            routines.CallbackRoutine(leader_loop, name="leader"), store, ttl=3.0
        )
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # run() handles them; ignored after it
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        say("replica up")
        report = routines.Monitor(schedule, singleton, stop_timeout=5).run()
        return report.exit_code


def demo() -> int:
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{Path(directory) / 'fleet.db'}"
        durable.open_store(url).close()  # create the tables once, before the replicas race
        processes = [
            subprocess.Popen(
                [sys.executable, "-u", __file__, url], stdout=subprocess.PIPE, text=True
            )
            for _ in range(3)
        ]
        lines: list[str] = []
        lock = threading.Lock()

        def read(process: subprocess.Popen[str]) -> None:
            assert process.stdout is not None
            for line in process.stdout:
                with lock:
                    lines.append(line.rstrip())
                print(line.rstrip(), flush=True)

        readers = [threading.Thread(target=read, args=(p,)) for p in processes]
        for reader in readers:
            reader.start()
        try:
            time.sleep(5)
            with lock:
                holders = [line for line in lines if "holding the lease" in line]
            holder = int(holders[-1].split("]")[0].strip("[")) if holders else processes[0].pid
            print(f"demo: killing the singleton's holder, {holder}", flush=True)
            os.kill(holder, signal.SIGKILL)
            time.sleep(6)
        finally:
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in processes:
                process.wait(10)
            for reader in readers:
                reader.join(10)
        with durable.open_store(url) as store:
            runs = store.schedule_runs("report", limit=100)
        ticks = [run for run in runs if run.state in ("completed", "failed")]
        tick_lines = [line for line in lines if "tick: this replica runs it" in line]
        leaders = {line.split("]")[0] for line in lines if "holding the lease" in line}
        print(
            f"demo: {len(tick_lines)} tick runs printed for {len(ticks)} ticks run across the "
            f"fleet ({len(runs) - len(ticks)} skipped); the singleton ran on "
            f"{len(leaders)} replicas, one at a time"
        )
        return 0 if len(tick_lines) == len(ticks) and len(leaders) >= 2 else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--demo"]:
        sys.exit(demo())
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(replica(sys.argv[1]))
