"""The jobs of the durable figures, in a module of their own: rq, huey and procrastinate find a
job's function by its import path, in the benchmark's process and in their workers alike."""

from __future__ import annotations

import json
import os
import sys
import threading
import time

HANG = {"hang": False}  # set in a worker process whose jobs never end (figure 10)


def noop(n: object = None) -> None:
    """A trivial job."""


def report(n: object = None) -> None:
    """Say on stdout that job `n` started in this process, and when (CLOCK_MONOTONIC is one
    clock for every process of the machine); then never end if this worker's jobs hang."""
    line = {"event": "started", "job": n, "pid": os.getpid(), "at": time.monotonic()}
    out = sys.__stdout__  # the benchmark's pipe: _child.py sends sys.stdout to stderr
    assert out is not None
    out.write(json.dumps(line) + "\n")
    out.flush()
    if HANG["hang"]:
        threading.Event().wait()
