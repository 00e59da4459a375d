"""Health checks and Prometheus metrics for a Monitor, from a stdlib HTTP server routine.

It runs a periodic job that fails now and then, a worker pool, a durable queue worker, a
fleet-wide schedule and an out-of-band migration (on a SQLite file in a temporary directory),
and serves:
  /healthz   200 while every routine runs (or waits to restart) as it should, else 503
  /readyz    200 once also the migration is complete, else 503
  /status    every routine's status as JSON
  /metrics   Prometheus metrics (MonitorCollector, from routines.prometheus)

Run: python examples/observability.py [--port N] [--seconds N]   (needs routines[prometheus])
It prints the address it serves on; SIGTERM or Ctrl-C ends it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

import routines
from routines import durable
from routines.prometheus import MonitorCollector


class Backfill:
    """A small out-of-band migration over rows in memory."""

    id = "backfill"

    def __init__(self) -> None:
        self.done = 0

    def progress(self) -> float:
        return self.done / 10

    def up(self) -> None:
        self.done = min(10, self.done + 1)

    def down(self) -> None:
        self.done = max(0, self.done - 1)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--seconds", type=float, default=3600.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        store = durable.open_store(f"sqlite:///{Path(directory) / 'app.db'}")
        counter = itertools.count()

        def poll_inbox() -> None:
            if next(counter) % 3 == 2:
                raise ConnectionError("the inbox did not answer")

        emails = store.queue("emails")
        emails.enqueue_many([{"to": f"user{n}@example.com"} for n in range(20)])
        pool: routines.WorkerPool[int, int] = routines.WorkerPool(lambda n: n * n, name="squares")
        for n in range(10):
            pool.submit(n)
        monitor: routines.Monitor

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/healthz":
                    self._send(200 if monitor.healthy() else 503, b"ok\n", "text/plain")
                elif self.path == "/readyz":
                    ready = monitor.healthy() and all(
                        status.complete for status in store.migrations()
                    )
                    self._send(200 if ready else 503, b"ready\n", "text/plain")
                elif self.path == "/status":
                    body = json.dumps([status.to_dict() for status in monitor.status()])
                    self._send(200, body.encode(), "application/json")
                elif self.path == "/metrics":
                    self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet

        server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
        monitor = routines.Monitor(
            routines.PeriodicRoutine(poll_inbox, name="inbox", interval=0.2),
            pool,
            durable.QueueWorker(emails, lambda job: "sent", poll_interval=0.2),
            durable.Scheduled(lambda: None, store, every=1, name="digest"),
            durable.MigrationRunner(store, [Backfill()], interval=0.1),
            routines.CallbackRoutine(server.serve_forever, server.shutdown, name="http"),
        )
        registry = CollectorRegistry()
        registry.register(MonitorCollector(monitor))
        print(f"serving on http://127.0.0.1:{server.server_address[1]}", flush=True)
        deadline = threading.Timer(args.seconds, monitor.shutdown, args=("time is up",))
        deadline.start()
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # run() handles them; ignored after it
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        report = monitor.run()
        deadline.cancel()
        server.server_close()
        store.close()
        print(report, flush=True)
        return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
