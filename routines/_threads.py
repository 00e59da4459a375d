"""Joining threads against one deadline, and reading a thread's stack for a report."""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Iterable

__all__ = ["join_all", "thread_stack"]


def join_all(threads: Iterable[threading.Thread], timeout: float) -> list[threading.Thread]:
    """Join every thread against one deadline `timeout` seconds away; return those still alive."""
    deadline = time.monotonic() + timeout
    alive = []
    for thread in threads:
        if thread.ident is None:  # never started
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            alive.append(thread)
    return alive


def thread_stack(thread: threading.Thread) -> str | None:
    """The formatted stack of a running thread, or None if it is not running."""
    frame = sys._current_frames().get(thread.ident) if thread.ident is not None else None
    if frame is None:
        return None
    return "".join(traceback.format_stack(frame))
