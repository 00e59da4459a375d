"""The reference routine: says hello every second until Ctrl-C or SIGTERM, then says done.

Run: python examples/hello_routine.py
"""

from __future__ import annotations

import signal
import sys

import routines


class Hello(routines.BackgroundRoutine):
    def run(self) -> None:
        while True:
            print("Hello there!", flush=True)
            if self.wait(1.0):  # True as soon as stop() was called
                break
        print("done!", flush=True)


def main() -> int:
    print("hello_routine: press Ctrl-C (or send SIGTERM) to stop", flush=True)
    # run() puts back the handlers it found when it returns: with these ignored, a late
    # Ctrl-C or SIGTERM while the program exits is ignored instead of raising or killing it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    report = routines.monitor(Hello(), stop_timeout=5.0)
    print(report, flush=True)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
