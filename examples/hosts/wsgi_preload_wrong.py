"""THE WRONG WAY, kept to show what goes wrong: routines started when the app module is
imported. Under `gunicorn --preload` the module is imported in the master, which then forks
the workers; threads don't survive a fork, so no worker runs the routines. `routines` says so
instead of losing jobs: in a worker, `status()` reports each routine "stopped" with the fork in
its error, and `submit()` raises a `RuntimeError` naming the fork (this app answers 503).

    cd examples/hosts && gunicorn --preload wsgi_preload_wrong:app

Do it as gunicorn_hooks.py does: start in `post_worker_init`, which runs in each worker.
"""

from __future__ import annotations

import background
from wsgi_app import app

background.build().start()  # wrong: at import time, in the process that will fork

__all__ = ["app"]
