"""Routines that block in calls `stop()` can't interrupt by itself, and how each is woken
(docs/blocking-calls.md; tests/test_embedding_blocking_calls.py).

    python examples/blocking_calls.py socket      a recv() loop, woken by shutdown(SHUT_RDWR)
    python examples/blocking_calls.py queue       a queue.get() loop, woken by a sentinel
    python examples/blocking_calls.py subprocess  a child process, terminated with its group
    python examples/blocking_calls.py input       input(), which nothing wakes: exit_with()

Each prints "ready" once it blocks; Ctrl-C or SIGTERM stops it and prints the report.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Final

import routines


def socket_reader(conn: socket.socket, on_data: Callable[[bytes], object]) -> routines.Routine:
    """Read from a connected socket until stopped (or the peer closes it).

    `close()` from another thread does not wake a `recv()` in progress on Linux: the call goes
    on holding the file. `shutdown(SHUT_RDWR)` does: `recv()` returns b"" at once. The same
    wakes an `accept()` on a listening socket (Linux).
    """

    def read() -> None:
        try:
            while data := conn.recv(4096):
                on_data(data)
        finally:
            conn.close()

    def wake() -> None:
        with contextlib.suppress(OSError):  # not connected any more: recv() has returned
            conn.shutdown(socket.SHUT_RDWR)

    return routines.CallbackRoutine(read, wake, name="socket-reader")


_STOP: Final = object()  # the sentinel: no item is ever this object


class QueueConsumer(routines.BackgroundRoutine):
    """Handles items from a `queue.Queue` until stopped; `queue.Queue` can't be closed before
    Python 3.13, so `stop()` puts a sentinel that wakes the `get()`."""

    def __init__(self, items: queue.Queue[object], handle: Callable[[object], object]) -> None:
        super().__init__("queue-consumer")
        self.items = items
        self._handle = handle

    def run(self) -> None:
        while (item := self.items.get()) is not _STOP:
            self._handle(item)
        # Items queued after the sentinel stay in the queue, for the next run or the caller.

    def stop(self) -> None:
        super().stop()
        self.items.put(_STOP)


class ChildProcess(routines.BackgroundRoutine):
    """Runs a program until it ends or the routine is stopped.

    Keep the `Popen`: `stop()` needs it. The child leads a process group of its own
    (`start_new_session`), so that `stop()` terminates it *and* whatever it started, and a
    Ctrl-C in the terminal reaches the Monitor only, which then stops the child in order.
    """

    def __init__(self, argv: list[str]) -> None:
        super().__init__("child-process")
        self.argv = argv
        self.process: subprocess.Popen[bytes] | None = None

    def run(self) -> None:
        self.process = subprocess.Popen(self.argv, start_new_session=True)
        if self.stopping:  # stop() came while the child was being started
            self._terminate()
        self.process.wait()

    def stop(self) -> None:
        super().stop()
        self._terminate()

    def _terminate(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it has ended meanwhile
                os.killpg(self.process.pid, signal.SIGTERM)


def exit_with(report: routines.ShutdownReport) -> None:
    """Exit with the report's exit code, also when a routine is still stuck in a call nothing
    interrupts (`input()`, a read from a pipe or a terminal, a C extension's call).

    Such a thread holds locks (`input()` holds stdin's) that the interpreter's exit would wait
    for: CPython then aborts ("Fatal Python error: _enter_buffered_busy", exit code -6). After a
    report with a routine that did not stop, flush what the program wrote and leave at once,
    without the interpreter's clean-up (atexit handlers have no chance to run either).
    """
    stuck = any(each.state in ("timed_out", "abandoned") for each in report.outcomes)
    if not stuck:
        sys.exit(report.exit_code)
    logging.shutdown()  # flushes the log handlers
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(report.exit_code)


def ask_name() -> None:
    name = input("your name? ")  # nothing wakes this but a line or the end of stdin
    print(f"hello, {name}")


def say_when_started(event: routines.RoutineEvent) -> None:
    if event.kind == "started":
        print("ready", flush=True)


def main(mode: str) -> None:
    routine: routines.Routine
    if mode == "socket":
        ours, theirs = socket.socketpair()
        routine = socket_reader(ours, lambda data: print(f"got {data!r}"))
    elif mode == "queue":
        routine = QueueConsumer(queue.Queue(), lambda item: print(f"got {item!r}"))
    elif mode == "subprocess":
        child = "import os, time; print('child', os.getpid(), flush=True); time.sleep(3600)"
        routine = ChildProcess([sys.executable, "-c", child])
    elif mode == "input":
        routine = routines.CallbackRoutine(ask_name, name="ask-name")
    else:
        raise SystemExit(f"unknown mode {mode!r}: socket, queue, subprocess or input")
    monitor = routines.Monitor(routine, stop_timeout=1.0, on_event=say_when_started)
    # A signal after run() returned meets these instead of Python's defaults (docs/monitor.md).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    report = monitor.run()
    print(report, flush=True)
    if mode == "socket":
        theirs.close()
    exit_with(report)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "queue")
