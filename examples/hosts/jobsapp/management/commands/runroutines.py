"""`python manage.py runroutines`: the site's routines in a process of their own, under
`routines.monitor()`, which owns the main thread and its signals here: SIGINT or SIGTERM stops
them, the pool drains its queue, and the command exits with the report's exit code.

`--jobs N` queues N demonstration jobs first.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import background
from django.core.management.base import BaseCommand  # type: ignore[import-untyped]

import routines


class Command(BaseCommand):  # type: ignore[misc]
    help = "Run the site's background routines until SIGINT or SIGTERM."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--jobs", type=int, default=0, help="demonstration jobs to queue")

    def handle(self, *args: Any, **options: Any) -> None:
        members = background.make_routines()
        for index in range(options["jobs"]):
            background.submit(f"job{index}")  # queued until the pool starts
        background.record(f"started {os.getpid()}")
        # A signal after monitor() returned (while the report is printed) meets these instead
        # of Python's defaults: no KeyboardInterrupt traceback, no death by SIGTERM.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        report = routines.monitor(*members, stop_timeout=background.STOP_TIMEOUT)
        background.hand_back(report)
        self.stdout.write(str(report))
        sys.exit(report.exit_code)
