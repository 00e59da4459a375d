"""The fleet recipe (docs/fleet.md): one schedule across gunicorn's workers, each tick run once.

    cd examples/hosts && gunicorn -c gunicorn_fleet.py --workers 4 wsgi_app:app

Every worker opens the store and starts a Monitor over the same `Scheduled` after the fork, in
`post_worker_init`, as gunicorn_hooks.py does for its routines: a store opened before the fork
refuses to work in a child, and threads don't survive a fork. The workers claim each tick in the
store, and the first claim runs it. gunicorn owns the worker's signals: the Monitor leaves them
alone (`chain_signals=False`, as docs/embedding.md says), and `worker_exit` stops it.

The store is `$ROUTINES_EXAMPLE_STORE` (default a SQLite file, for workers on one host; a
PostgreSQL URL for a fleet), the digest runs every `$ROUTINES_EXAMPLE_DIGEST_EVERY` seconds
(default an hour), and each run appends "digest <pid>" to the jobs file (background.py).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import background

import routines
from routines import durable

# The library logs and never prints: show its warnings next to gunicorn's own log.
logging.basicConfig(level=logging.INFO, format="[%(process)d] %(name)s: %(message)s")

STORE_URL = os.environ.get("ROUTINES_EXAMPLE_STORE", "sqlite:///fleet.db")
DIGEST_EVERY = float(os.environ.get("ROUTINES_EXAMPLE_DIGEST_EVERY", "3600"))


def send_digest() -> None:
    background.record(f"digest {os.getpid()}")


monitors: dict[int, tuple[routines.Monitor, durable.Store]] = {}


def post_worker_init(worker: Any) -> None:  # in the worker, after the fork
    store = durable.open_store(STORE_URL)
    digest = durable.Scheduled(send_digest, store, every=DIGEST_EVERY, name="digest")
    monitor = routines.Monitor(digest)
    monitor.start_in_host(chain_signals=False, host_deadline=worker.cfg.graceful_timeout)
    monitors[worker.pid] = (monitor, store)


def worker_exit(server: Any, worker: Any) -> None:  # in the worker, however it ends
    started = monitors.pop(worker.pid, None)
    if started is None:  # post_worker_init failed: nothing was started
        return
    monitor, store = started
    monitor.shutdown("the gunicorn worker is exiting")
    monitor.wait(10)
    store.close()
