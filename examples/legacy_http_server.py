"""Old code under a Monitor: a stdlib HTTP server and a polling loop, stopped on Ctrl-C/SIGTERM.

`serve_forever`/`shutdown` already are a start/stop pair, so `CallbackRoutine` wraps them as
they are. The polling loop used `time.sleep(5)`; with `routines.sleep(5)` it wakes at once when
the Monitor stops it.

Run: python examples/legacy_http_server.py [PORT]   (default: a free port)
"""

from __future__ import annotations

import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import routines


class HelloHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello from a legacy server\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        print(f"http: {format % args}", flush=True)


def poll_for_work() -> None:
    """A legacy loop: it used time.sleep(), which would hold up shutdown for a whole period."""
    polls = 0
    while not routines.stopping():
        polls += 1
        print(f"poller: checked for work ({polls})", flush=True)
        routines.sleep(5.0)  # was: time.sleep(5.0)
    print("poller: stopped", flush=True)


def main() -> int:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = ThreadingHTTPServer(("127.0.0.1", port), HelloHandler)
    server.daemon_threads = True
    print(f"serving on http://127.0.0.1:{server.server_address[1]}/", flush=True)
    # run() puts back the handlers it found when it returns: with these ignored, a late
    # Ctrl-C or SIGTERM while the program exits is ignored instead of raising or killing it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        report = routines.monitor(
            routines.CallbackRoutine(server.serve_forever, server.shutdown, name="http"),
            routines.CallbackRoutine(poll_for_work, name="poller"),
            stop_timeout=5.0,
        )
    finally:
        server.server_close()
    print(report, flush=True)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
