"""One `Monitor.run()` after another under a storm of SIGINT (tests/test_storms.py, issue 25.1).

Run: python tests/programs/wakeup_storm.py SECONDS

The program's own SIGINT handler raises KeyboardInterrupt, as Python's default one does, but only
when it interrupts the library's code inside `Monitor.run()`: so every interruption lands in a
run (in its handler restore, most often), and the loop around the runs, which checks what each
run left behind, is never interrupted itself. Before the first run the program points the signal
wakeup fd at a pipe of its own; after each run it checks that the wakeup fd and the SIGINT
handler are its own again.

It prints "ready" once its handler is in place, then, after SECONDS of runs, one line
"runs N interrupted M faults F" and one "fault: ..." line for each distinct fault.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from types import FrameType

import routines

RUN = routines.Monitor.run.__code__
LIBRARY = os.path.dirname(routines.__file__)


def say(text: object) -> None:
    sys.stdout.write(f"{text}\n")
    sys.stdout.flush()


walking: list[bool] = []  # the handler is running: a signal that lands in its walk returns


def interrupt_inside_run(signum: int, frame: FrameType | None) -> None:
    # Without the guard, a storm nests this handler in itself (a signal lands in every walk of
    # the stack) until RecursionError.
    if walking or frame is None or not frame.f_code.co_filename.startswith(LIBRARY):
        return  # elsewhere (a weakref callback run by the GC, say) it is "Exception ignored"
    walking.append(True)
    try:
        while frame is not None:
            if frame.f_code is RUN:
                raise KeyboardInterrupt
            frame = frame.f_back
    finally:
        walking.clear()


def drain(reader: int) -> None:
    """Empty the program's wakeup pipe, which every signal between two runs writes to."""
    with contextlib.suppress(BlockingIOError):
        while os.read(reader, 65536):
            pass


def main() -> int:
    seconds = float(sys.argv[1])
    # A pipe, not a socket: it holds 64 KiB of one-byte writes between two drains, where a
    # socket fills after a few hundred, and the restore can't give back warn_on_full_buffer.
    reader, own_fd = os.pipe()
    os.set_blocking(reader, False)
    os.set_blocking(own_fd, False)
    signal.set_wakeup_fd(own_fd, warn_on_full_buffer=False)
    signal.signal(signal.SIGINT, interrupt_inside_run)
    runs = interrupted = 0
    faults: list[str] = []
    say("ready")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        runs += 1
        sleeper = routines.CallbackRoutine(lambda: routines.sleep(60), name="sleeper")
        try:
            routines.Monitor(sleeper, stop_timeout=5.0).run()
        except KeyboardInterrupt:
            interrupted += 1
        except Exception as exc:  # a fault to report, not to stop at
            faults.append(f"run() raised {exc!r}")
        left_on = signal.set_wakeup_fd(own_fd, warn_on_full_buffer=False)
        if left_on != own_fd:
            faults.append(f"run() left the wakeup fd on {left_on}, not on {own_fd}")
        handler = signal.getsignal(signal.SIGINT)
        if handler is not interrupt_inside_run:
            faults.append(f"run() left the SIGINT handler {handler!r}")
            signal.signal(signal.SIGINT, interrupt_inside_run)
        drain(reader)
    # Signals still come until the parent sees the exit: ignored, they can't kill it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    say(f"runs {runs} interrupted {interrupted} faults {len(faults)}")
    for fault in sorted(set(faults)):
        say(f"fault: {fault}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
