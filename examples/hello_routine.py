"""The reference routine: says hello every second until Ctrl-C or SIGTERM, then says done.

Run: python examples/hello_routine.py
"""

from __future__ import annotations

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
    report = routines.monitor(Hello(), stop_timeout=5.0)
    print(report, flush=True)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
