"""A program whose main thread belongs to a host (tests/test_host.py); the Monitor is started
with `start_in_host()`.

Run: python tests/programs/host.py MODE
  default    SIGTERM had no handler: the routines stop, then the process dies of SIGTERM
  chained    SIGTERM has the host's handler, which ends the host's loop: the routines stop
             (at the signal), the host's handler runs, the program exits 0 through the exit hook
  at-exit    no signal: the host's main function returns and the exit hook stops the routines
  fork       as at-exit, after a forked child (a worker) that exits normally: the child's exit
             hook leaves the parent's Monitor alone

It prints "ready" once the routine runs, "cleaned up" when the routine has stopped.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import warnings

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
    monitor.start_in_host(chain_signals=mode not in ("at-exit", "fork"))
    if mode == "fork":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() with threads
            pid = os.fork()
        if pid == 0:
            sys.exit(0)  # a worker that ends normally: its interpreter's exit runs the hooks
        say(f"the child exited {os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}")
    if mode in ("at-exit", "fork"):
        return  # the host is done: the interpreter exits
    while not host_stop.is_set():  # the host's loop, on the main thread
        host_stop.wait(0.05)
    say("the host's loop ended")


if __name__ == "__main__":
    main(sys.argv[1])
