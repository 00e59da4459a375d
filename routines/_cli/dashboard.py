"""`routines dashboard`: the dashboard of a store (`routines.dashboard`), served on its own by
the standard library's `wsgiref` under a `Monitor` until SIGTERM or Ctrl-C.

It binds 127.0.0.1 unless told otherwise, and refuses any other address without a token: the
dashboard has no login of its own, and its actions retry, cancel and pause the fleet's jobs.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys
from typing import Final

from .._status import describe_error
from .common import Command, CommandError, add_store_options, open_store
from .logs import LEVELS, configure_logging

__all__ = ["COMMANDS", "TOKEN_VARIABLE", "is_loopback"]

TOKEN_VARIABLE: Final = "ROUTINES_DASHBOARD_TOKEN"
SHORTEST_TOKEN: Final = 16
_MAKE_TOKEN: Final = "python -c 'import secrets; print(secrets.token_urlsafe())'"

_DESCRIPTION = f"""\
Serve the dashboard of a store (its queues, jobs, schedules, migrations and leases, and the
actions retry, cancel, run now, retry all failed, pause and resume) until SIGTERM or Ctrl-C.

It listens on 127.0.0.1 unless --host names another address, and then only with --token (or
${TOKEN_VARIABLE}): every request must carry it, once as ?token=... in the address, then in a
cookie. With --read-only it shows no action and refuses every POST."""


def is_loopback(host: str) -> bool:
    """Whether `host` is an address of this machine only ("localhost", 127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name, or "" (every address)
        return False


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        msg = f"must be a port number from 0 (any free port) to 65535, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_store_options(parser)
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to listen on (default: 127.0.0.1; any other needs --token)",
    )
    parser.add_argument(
        "--port", type=_port, default=8000, help="the port to listen on (default: 8000; 0: any)"
    )
    parser.add_argument(
        "--read-only", action="store_true", help="show no action, and refuse every POST"
    )
    parser.add_argument(
        "--token",
        help=(
            f"a secret of at least {SHORTEST_TOKEN} characters that every request must carry "
            f"(default: ${TOKEN_VARIABLE}, which keeps it out of the process list)"
        ),
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LEVELS,
        default="INFO",
        help="the least level logged, on stderr; INFO logs each request (default: INFO)",
    )
    # The options are refused as argparse refuses them (usage, exit status 2), after parsing.
    parser.set_defaults(usage_error=parser.error)


def run(args: argparse.Namespace) -> int:
    token: str | None = args.token or os.environ.get(TOKEN_VARIABLE) or None
    if token is not None and len(token) < SHORTEST_TOKEN:
        args.usage_error(
            f"--token must be at least {SHORTEST_TOKEN} characters, got {len(token)}; "
            f"make one with {_MAKE_TOKEN}"
        )
    if token is None and not is_loopback(args.host):
        args.usage_error(
            f"refusing to listen on {args.host or 'every address'!r} without --token: the "
            "dashboard has no login, and anyone who reaches it could retry, cancel and pause "
            f"jobs; pass --token (or set ${TOKEN_VARIABLE}; make one with {_MAKE_TOKEN}), or "
            "listen on 127.0.0.1"
        )
    configure_logging(args.log_level, "text")
    try:
        from routines.dashboard._app import Dashboard
        from routines.dashboard._server import serve
    except ImportError as error:  # Jinja2 missing
        msg = (
            "the dashboard needs its extra: pip install 'routines[dashboard]' "
            f"({describe_error(error)})"
        )
        raise CommandError(msg) from None
    from .._callback import CallbackRoutine
    from .._monitor import Monitor

    store = open_store(args)
    try:
        application = Dashboard(store, read_only=args.read_only, token=token)
        try:
            server = serve(application, args.host, args.port)
        except OSError as error:
            msg = (
                f"cannot listen on {args.host}:{args.port}: {describe_error(error)}: "
                "pick another --port or --host"
            )
            raise CommandError(msg) from None
        try:
            routine = CallbackRoutine(server.serve_forever, server.shutdown, name="dashboard")
            monitor = Monitor(routine, stop_timeout=5.0)
            host, port = str(server.server_address[0]), server.server_address[1]
            shown = f"[{host}]" if ":" in host else host
            how = " (open it once with ?token=... appended)" if token is not None else ""
            mode = " read-only" if args.read_only else ""
            sys.stdout.write(
                f"routines dashboard: serving{mode} {store.url} at http://{shown}:{port}/{how}; "
                "Ctrl-C or SIGTERM stops it\n"
            )
            sys.stdout.flush()
            report = monitor.run()
        finally:
            server.server_close()
    finally:
        store.close()
    # Ignored now, so that a late signal can't interrupt the report (as `routines worker`).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.stdout.write(f"{report}\n")
    sys.stdout.flush()
    return report.exit_code


COMMANDS = (
    Command(
        name="dashboard",
        summary="serve the dashboard of a store on 127.0.0.1 until SIGTERM or Ctrl-C",
        description=_DESCRIPTION,
        add_arguments=add_arguments,
        run=run,
    ),
)
