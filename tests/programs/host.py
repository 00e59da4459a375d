"""A program whose main thread belongs to a host (tests/test_host.py); the Monitor is started
with `start_in_host()`.

Run: python tests/programs/host.py MODE
  default    SIGTERM had no handler: the routines stop, then the process dies of SIGTERM
  chained    SIGTERM has the host's handler, which ends the host's loop: the routines stop
             (at the signal), the host's handler runs, the program exits 0 through the exit hook
  at-exit    no signal: the host's main function returns and the exit hook stops the routines

It prints "ready" once the routine runs, "cleaned up" when the routine has stopped.
"""

from __future__ import annotations

import signal
import sys
import threading

import routines


def say(text: str) -> None:
    sys.stdout.write(f"{text}\n")
    sys.stdout.flush()


class Worker(routines.BackgroundRoutine):
    def run(self) -> None:
        say("ready")
        self.wait(None)
        threading.Event().wait(0.2)  # clean-up that takes a moment
        say("cleaned up")


def main(mode: str) -> None:
    host_stop = threading.Event()
    if mode == "chained":

        def host_handler(signum: int, frame: object) -> None:
            say("the host got SIGTERM")
            host_stop.set()

        signal.signal(signal.SIGTERM, host_handler)
    monitor = routines.Monitor(Worker("worker"), stop_timeout=5)
    monitor.start_in_host(chain_signals=mode != "at-exit")
    if mode == "at-exit":
        return  # the host is done: the interpreter exits
    while not host_stop.is_set():  # the host's loop, on the main thread
        host_stop.wait(0.05)
    say("the host's loop ended")


if __name__ == "__main__":
    main(sys.argv[1])
