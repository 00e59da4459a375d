"""Small tools the durable tier's tests share."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from routines import durable
from routines.durable._backend import Backend

from helpers import WAIT

T = TypeVar("T")

PROGRAMS = Path(__file__).parent / "programs"


def backend_of(store: durable.Store) -> Backend:
    """The store's backend, to test the operations the queue worker will use directly."""
    return store._check_usable()


def poll(check: Callable[[], T], *, timeout: float = WAIT, interval: float = 0.01) -> T:
    """Call `check` until it returns something truthy (returned) or `timeout` passes (the last
    value is returned): for decisions taken on the database's clock."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value
        pause.wait(interval)


def start_program(name: str, *args: str) -> subprocess.Popen[str]:
    """Start `programs/<name>.py` and wait (bounded) until it says it is ready."""
    process = subprocess.Popen(
        [sys.executable, str(PROGRAMS / f"{name}.py"), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # the program prints "ready" before anything else
    if line.strip() != "ready":
        process.kill()
        _, err = process.communicate(timeout=WAIT)
        raise AssertionError(f"{name}.py did not start: {line!r} {err}")
    return process


def finish_program(process: subprocess.Popen[str], timeout: float = 30.0) -> tuple[str, str]:
    """Wait (bounded) for a program; return its stdout and stderr, failing if it failed."""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate(timeout=WAIT)
        raise
    assert process.returncode == 0, f"exit code {process.returncode}:\n{err}"
    return out, err
