"""A plain WSGI app for the gunicorn recipe: `POST /jobs/<id>` hands a job to the background
pool (202, or 503 when this process can't take it), `GET /status` shows the routines.

It starts nothing itself: gunicorn_hooks.py starts the routines in each worker, after the fork.

    cd examples/hosts && gunicorn -c gunicorn_hooks.py wsgi_app:app
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import background

StartResponse = Callable[[str, list[tuple[str, str]]], Any]

_REASONS = {200: "200 OK", 202: "202 Accepted", 404: "404 Not Found", 503: "503 Unavailable"}


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
    if method == "POST" and path.startswith("/jobs/"):
        code, text = background.submit(path.removeprefix("/jobs/"))
        body, kind = text.encode(), "text/plain"
    elif method == "GET" and path == "/status":
        code, body, kind = 200, json.dumps(background.status()).encode(), "application/json"
    else:
        code, body, kind = 404, b"not found\n", "text/plain"
    start_response(_REASONS[code], [("Content-Type", kind), ("Content-Length", str(len(body)))])
    return [body]
