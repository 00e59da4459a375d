"""The dashboard served on its own, by the standard library's `wsgiref`: one thread per
request, so that a slow page (a store waiting for its lock) does not hold up the others."""

from __future__ import annotations

import logging
import re
import socket
import socketserver
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["DashboardServer", "serve"]

logger = logging.getLogger("routines.dashboard")

# The token of `routines dashboard --token` in a request line: kept out of the log.
_TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&\s\"]*")


class DashboardServer(socketserver.ThreadingMixIn, WSGIServer):
    # A request still being served at shutdown does not hold up the exit.
    daemon_threads = True


class _DashboardServerV6(DashboardServer):
    address_family = socket.AF_INET6


class _LoggedRequests(WSGIRequestHandler):
    """Each request as one log record (wsgiref writes them on stderr), its token masked; an
    idle connection is dropped after `timeout` seconds instead of holding a thread."""

    timeout = 30.0

    def log_message(self, format: str, *args: object) -> None:
        line = _TOKEN_IN_QUERY.sub(r"\1***", format % args)
        logger.info("%s %s", self.address_string(), line)


def serve(application: WSGIApplication, host: str, port: int) -> DashboardServer:
    """A server of `application` listening on host:port (port 0: any free one); run it with
    `serve_forever()` and end it with `shutdown()` from another thread, then `server_close()`."""
    kind = _DashboardServerV6 if ":" in host else DashboardServer  # "::1" is IPv6
    server = make_server(host, port, application, server_class=kind, handler_class=_LoggedRequests)
    assert isinstance(server, DashboardServer)
    return server
