"""What the worker programs share: saying "ready" only once SIGTERM is the Monitor's.

The programs set SIGINT and SIGTERM to SIG_IGN before `monitor.run()` (see tests/README.md,
"Signals after run() returns"), so a SIGTERM that comes between a "ready" printed before
`run()` and the moment `run()` puts its handlers in place is ignored, and the test then waits
for an end that never comes: under load, other processes can finish every job in that gap
(seen: one of four workers hung after the test's SIGTERM). `run()` installs its handlers
before it starts a routine, so the first "started" event means a SIGTERM is handled.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

import routines


def say_ready_at_start() -> Callable[[routines.RoutineEvent], None]:
    """A Monitor's `on_event` that prints "ready" at its first routine's start, once."""
    said = threading.Event()

    def on_event(event: routines.RoutineEvent) -> None:
        if event.kind == "started" and not said.is_set():
            said.set()
            sys.stdout.write("ready\n")
            sys.stdout.flush()

    return on_event
