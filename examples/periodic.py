"""The reference periodic routine: says hello every two seconds under a Monitor.

The handler is built with `routines.with_error_message`, so an error in it would be logged as
"could not say hello: <exception>" and the loop would carry on. Ctrl-C or SIGTERM stops it;
the shutdown report is printed and becomes the exit code.

Run: python examples/periodic.py
"""

from __future__ import annotations

import logging
import signal
import sys

import routines


def say_hello() -> None:
    print("Hello from the background!", flush=True)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    hello = routines.PeriodicRoutine(
        routines.with_error_message("could not say hello", say_hello),
        name="hello",
        description="says hello every two seconds",
        interval=2.0,
        on_shutdown=lambda: print("hello: no more hellos", flush=True),
    )
    print("periodic: saying hello every 2 seconds; Ctrl-C (or SIGTERM) stops it", flush=True)
    # run() puts back the handlers it found when it returns: with these ignored, a late
    # Ctrl-C or SIGTERM while the program exits is ignored instead of raising or killing it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    report = routines.monitor(hello, stop_timeout=5.0)
    print(report, flush=True)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
