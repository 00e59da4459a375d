"""Where `runserver` starts the routines: `ready()`, guarded.

Django calls `ready()` in every process that sets it up: in every management command (`check`,
`migrate`, `shell`, and `runroutines`, which runs them itself), and twice under `runserver`'s
autoreloader, in the watcher (which never serves) and in its child (`RUN_MAIN=true`), which
serves. Only the process that serves starts them. Under a WSGI server (gunicorn), `ready()` runs
without a management command: start them in the server's hooks (gunicorn_hooks.py) instead.
"""

from __future__ import annotations

import os
import sys

import background
from django.apps import AppConfig  # type: ignore[import-untyped]


class JobsConfig(AppConfig):  # type: ignore[misc]
    name = "jobsapp"

    def ready(self) -> None:
        if sys.argv[1:2] != ["runserver"]:
            return  # another management command, or a WSGI server
        if os.environ.get("RUN_MAIN") == "true" or "--noreload" in sys.argv:
            background.start()  # the process that serves
        else:
            background.let_the_child_stop_first()  # the autoreloader's watcher
