"""The Flask recipe: start the routines in the process that serves, once.

    cd examples/hosts && flask --app flask_app run            (one process)
    cd examples/hosts && flask --app flask_app run --reload   (a watcher, and a child that serves)

With the reloader, `flask run` imports the app twice: in the watcher process, which never
serves and only restarts the child when a file changes, and in the child (it has
`WERKZEUG_RUN_MAIN=true`), which serves. Routines started in both would run twice, and the
watcher's would be killed with no shutdown at every reload. Other commands (`flask routes`,
`flask shell`) import the app too and must not start them either. Under a WSGI server
(gunicorn) there is no `flask` command: start them in its hooks instead (gunicorn_hooks.py).

The watcher kills its child when it gets SIGTERM (werkzeug's handler exits, and
`subprocess.call` then kills the child at once), so under the reloader only Ctrl-C stops the
routines cleanly: the reloader is for development; serve with gunicorn in production.

`flask run` owns the main thread (its server, or with the reloader its file watcher) and the
signals: `start_in_host()` chains the Monitor's SIGINT/SIGTERM handlers to the server's, and
shuts the routines down at interpreter exit at the latest, while the server's threads still
run, so a stopping pool drains its queue.
"""

from __future__ import annotations

import os
from typing import Literal

import background
import click
from flask import Flask, Response, jsonify
from flask.helpers import get_debug_flag


def process_role() -> Literal["serves", "watches", "other"]:
    """What this process is for: serving requests, watching files for the reloader (it imports
    the app but never serves), or another `flask` command (`flask routes`, `flask shell`)."""
    if os.environ.get("WERKZEUG_RUN_MAIN") == "true":
        return "serves"  # the reloader's child
    command = click.get_current_context(silent=True)
    if command is None:
        return "serves"  # not the flask command: a WSGI server imported the app
    if command.info_name != "run":
        return "other"
    reload = command.params.get("reload")
    reloader_on = get_debug_flag() if reload is None else bool(reload)
    return "watches" if reloader_on else "serves"


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/jobs/<job>")
    def submit(job: str) -> tuple[str, int]:
        code, text = background.submit(job)
        return text, code

    @app.get("/status")
    def status() -> Response:
        return jsonify(background.status())

    role = process_role()
    if role == "serves":
        background.start()
    elif role == "watches":
        background.let_the_child_stop_first()
    return app


app = create_app()
