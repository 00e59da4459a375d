"""A monitored program for the signal-storm tests (tests/test_storms.py).

Run: python tests/programs/storm.py MODE
  fast      three routines that stop at once
  slow      one routine whose clean-up after stop takes a second, so a storm forces the end
  starting  one routine that takes a second to start and checks for stop only after that

It prints "<name> running" once each routine runs (the Monitor's handlers are then in place),
"<name> starting" when the slow starter begins, the report at the end, and exits with the
report's exit code.
"""

from __future__ import annotations

import signal
import sys
import threading

import routines


def say(text: object) -> None:
    """One write per line: print() writes the text and the newline apart, and a routine's line
    could land between them and the report's."""
    sys.stdout.write(f"{text}\n")
    sys.stdout.flush()


class Worker(routines.BackgroundRoutine):
    def __init__(self, name: str, cleanup: float = 0.0) -> None:
        super().__init__(name)
        self.cleanup = cleanup

    def run(self) -> None:
        say(f"{self.name} running")
        self.wait(None)
        if self.cleanup:
            threading.Event().wait(self.cleanup)  # clean-up that does not look at stop


def slow_start() -> None:
    say("starter starting")
    threading.Event().wait(1.0)  # set-up that does not look at stop (connecting, say)
    if routines.stopping():
        say("starter stopped before it ran")
        return
    say("starter running")
    routines.sleep(60)


def build(mode: str) -> list[routines.Routine]:
    if mode == "fast":
        return [
            Worker("worker"),
            routines.PeriodicRoutine(lambda: None, name="ticker", interval=0.01),
            routines.CallbackRoutine(lambda: routines.sleep(60), name="sleeper"),
        ]
    if mode == "slow":
        return [Worker("worker", cleanup=1.0)]
    if mode == "starting":
        return [routines.CallbackRoutine(slow_start, name="starter"), Worker("worker")]
    raise SystemExit(f"unknown mode {mode!r}")


def main() -> int:
    monitor = routines.Monitor(*build(sys.argv[1]), stop_timeout=5.0)
    # Once run() returns it gives back the handlers it found. Ignoring SIGINT and SIGTERM
    # before it starts makes those SIG_IGN: signals that arrive while the program prints its
    # report and exits change nothing (no KeyboardInterrupt traceback, no death by SIGTERM).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    report = monitor.run()
    say(report)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
