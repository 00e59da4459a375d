"""The gunicorn recipe: start the routines in each worker after the fork, stop them before the
worker exits.

    cd examples/hosts && gunicorn -c gunicorn_hooks.py wsgi_app:app
    (also with --worker-class gthread --threads 4, and with --preload)

- `post_worker_init` runs in the worker, after the fork and after the app was loaded: threads
  started here run in the process that serves the requests. (Threads started at import time
  with `--preload` would live in the master only: see wsgi_preload_wrong.py.)
- gunicorn owns the worker's signals (SIGTERM: graceful stop, SIGINT/SIGQUIT: quick stop,
  SIGHUP to the master: new workers, then the old ones get SIGTERM). The Monitor leaves them
  alone (`chain_signals=False`); whichever way the worker ends, gunicorn calls `worker_exit`,
  which stops the routines and waits for them, so the pool's queue drains first.
- gunicorn kills a worker that has not exited `graceful_timeout` seconds after SIGTERM: the
  routines' `stop_timeout` must fit inside it, and the Monitor logs a warning at start-up when
  it does not (`host_deadline`).
"""

from __future__ import annotations

import logging
from typing import Any

import background

# The library logs and never prints: show its warnings next to gunicorn's own log.
logging.basicConfig(level=logging.INFO, format="[%(process)d] %(name)s: %(message)s")


def post_worker_init(worker: Any) -> None:  # in the worker, after the fork and the app's import
    background.start(chain_signals=False, host_deadline=worker.cfg.graceful_timeout)


def worker_exit(server: Any, worker: Any) -> None:  # in the worker, however it ends
    report = background.stop("the gunicorn worker is exiting")  # shutdown, wait, hand back
    if report is not None:
        logging.getLogger("background").info("routines stopped:\n%s", report)
