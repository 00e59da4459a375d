"""The program's own signal handler calls `monitor.shutdown()` (tests/test_hostile.py).

A helper thread sends SIGUSR1 hundreds of times while the main thread keeps calling `status()`
and `wait(0)`, so the handler often runs while the main thread is inside one of them. It prints
the report and exits 0; before the fix it deadlocked.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import routines

monitor = routines.Monitor(routines.NoopRoutine(), signals=())
monitor.start()


def on_usr1(signum: int, frame: object) -> None:
    monitor.shutdown("shut down from a signal handler")


signal.signal(signal.SIGUSR1, on_usr1)
pause = threading.Event()


def send() -> None:
    for _ in range(500):
        os.kill(os.getpid(), signal.SIGUSR1)
        pause.wait(0.0005)


sender = threading.Thread(target=send)
sender.start()
while sender.is_alive():
    monitor.status()
    monitor.wait(0)
sender.join(10)
report = monitor.wait(10)
signal.signal(signal.SIGUSR1, signal.SIG_IGN)
sys.stdout.write(f"{report}\n")
sys.exit(0 if report is not None and report.ok else 1)
