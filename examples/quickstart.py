"""The first thing to run: a few routines under a Monitor, their status, and a clean shutdown.

It stops by itself after about three seconds (or on Ctrl-C / SIGTERM) and prints the report.

Run: python examples/quickstart.py
"""

from __future__ import annotations

import os
import signal
import sys

import routines


class Heartbeat(routines.BackgroundRoutine):
    """A routine written as a class: beats twice a second until stopped."""

    def run(self) -> None:
        beats = 0
        while not self.wait(0.5):
            beats += 1
        print(f"heartbeat: stopped after {beats} beats", flush=True)


def legacy_loop() -> None:
    """Old code with its own loop: routines.sleep() is time.sleep() that wakes on stop."""
    while not routines.sleep(1.0):
        print("legacy loop: tick", flush=True)


def report_load() -> None:
    """A periodic handler: runs every second; an error in it would be logged, not fatal."""
    print(f"load: {os.getloadavg()[0]:.2f}", flush=True)


def main() -> int:
    squares: routines.WorkerPool[int, int] = routines.WorkerPool(
        lambda n: n * n, workers=2, buffer=10, name="squares"
    )

    def demo_clock() -> None:
        """Shows everyone's status each second, then ends the demo after three seconds."""
        print("quickstart: running for about 3 seconds (Ctrl-C stops it sooner)", flush=True)
        for second in (1, 2, 3):
            if routines.sleep(1.0):
                return
            print(f"squares: {second}^2 = {squares.submit(second).result(timeout=5)}", flush=True)
            print(f"--- status after {second}s ---", flush=True)
            for status in monitor.status():
                print(
                    f"  {status.name:<12} {status.state:<10} "
                    f"restarts={status.restarts} runs={status.runs}",
                    flush=True,
                )
        monitor.shutdown("demo over after 3 seconds")

    monitor = routines.Monitor(
        Heartbeat(name="heartbeat"),
        routines.CallbackRoutine(legacy_loop, name="legacy-loop"),
        routines.PeriodicRoutine(
            routines.with_error_message("could not read the load", report_load),
            name="load",
            interval=1.0,
        ),
        squares,
        routines.CallbackRoutine(demo_clock, name="demo-clock"),
        stop_timeout=5.0,
    )
    # run() puts back the handlers it found when it returns: with these ignored, a late
    # Ctrl-C or SIGTERM while the program exits is ignored instead of raising or killing it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    report = monitor.run()
    print(report, flush=True)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
