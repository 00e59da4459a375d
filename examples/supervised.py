"""Supervision: a flaky routine that crashes a few times and recovers, and a broken one that
crashes until the monitor gives up on it and shuts everything down.

Every event the monitor sees is printed as it happens, then the shutdown report. It ends by
itself in about a second with exit code 1 (a routine failed), or sooner on Ctrl-C / SIGTERM.
With `--continue`, giving up on the broken routine leaves the flaky one running until Ctrl-C.

Run: python examples/supervised.py [--continue]
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

import routines

_print_lock = threading.Lock()


def say(text: object) -> None:
    """print() from several threads at once, without their lines running into each other."""
    with _print_lock:
        print(text, flush=True)


class FlakyDatabase(routines.BackgroundRoutine):
    """Can't connect on its first three starts; the monitor restarts it until it can."""

    def __init__(self) -> None:
        super().__init__("flaky-db")
        self.attempts = 0  # the same object is restarted, so this counts every start

    def run(self) -> None:
        self.attempts += 1
        if self.attempts <= 3:
            msg = "database not ready"
            raise ConnectionError(msg)
        say(f"flaky-db: connected on attempt {self.attempts}")
        self.wait(None)  # until stopped
        say("flaky-db: disconnected")


def broken_job() -> None:
    """Crashes every time: no number of restarts will fix it."""
    msg = "config file is corrupt"
    raise ValueError(msg)


def print_event(event: routines.RoutineEvent) -> None:
    error = f" ({type(event.error).__name__}: {event.error})" if event.error else ""
    say(f"event: {event.routine:<10} {event.kind}{error}")


def main(argv: list[str]) -> int:
    # The library logs through `logging` and never configures it: show its warnings briefly.
    # A failure's traceback is logged once; the same failure again is one short line.
    logging.basicConfig(level=logging.WARNING, format="log: %(levelname)s %(message)s")
    give_up: routines.GiveUpAction = "continue" if "--continue" in argv else "shutdown"

    monitor = routines.Monitor(
        FlakyDatabase(),
        # Its own policy: three restarts within ten seconds, then give up.
        routines.supervised(
            routines.CallbackRoutine(broken_job, name="broken-job"),
            routines.RestartPolicy(
                backoff=0.15, max_backoff=0.6, max_restarts=3, within=10, on_give_up=give_up
            ),
        ),
        # Every routine without its own policy: restart on failure after 0.02 s, 0.04 s, ...
        restart=routines.RestartPolicy(backoff=0.02, max_backoff=1.0),
        on_event=print_event,
        stop_timeout=5.0,
    )
    say(f"supervised: starting (on give-up: {give_up}; Ctrl-C stops it)")
    # run() puts back the handlers it found when it returns: with these ignored, a late
    # Ctrl-C or SIGTERM while the program exits is ignored instead of raising or killing it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    report = monitor.run()
    say(report)
    if not report.ok:
        say(f"exit code {report.exit_code}: {report.reason}")
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
