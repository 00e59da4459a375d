"""`routines worker TARGET`: run routines, or the tasks of a `durable.Tasks`, in the foreground
under a `Monitor`, until SIGTERM or Ctrl-C; the exit status is the report's."""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys

from .._logs import get_logger
from .._monitor import Monitor
from .._status import describe_error
from .._validate import routine_name
from .common import (
    SCHEMA_VARIABLE,
    STORE_VARIABLE,
    Command,
    CommandError,
    add_store_options,
    positive_int,
)
from .logs import LEVELS, configure_logging
from .output import print_json
from .target import KINDS, load_target, routines_of

__all__ = ["COMMANDS"]

logger = get_logger("cli")

_DESCRIPTION = f"""\
Run TARGET in the foreground under a routines.Monitor until SIGTERM or Ctrl-C, then stop it
(a second signal forces the end), print the shutdown report on stdout, and exit with its exit
code: 0 when every routine stopped or finished, 1 otherwise.

TARGET is module:attribute (the current directory comes first on sys.path, as with
python -m) naming {KINDS}. A durable.Tasks runs as tasks.worker(): a QueueWorker for each
queue its tasks use.

--store and --schema are put in the environment as ${STORE_VARIABLE} and
${SCHEMA_VARIABLE} before TARGET is imported, for a module that opens its store from
them; the worker itself opens no store."""


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not math.isfinite(seconds) or seconds < 0:
        msg = f"must be a number of seconds, 0 or more, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET", help="module:attribute, e.g. app.jobs:tasks")
    add_store_options(
        parser,
        purpose=f"put in the environment as ${STORE_VARIABLE} for TARGET's module",
    )
    tasks = parser.add_argument_group("for a durable.Tasks target")
    tasks.add_argument(
        "--concurrency",
        type=positive_int,
        metavar="N",
        help="handler threads for each queue (default: 1)",
    )
    tasks.add_argument(
        "--queue",
        action="append",
        dest="queues",
        metavar="NAME",
        help="work only this queue; repeat it for several (default: every queue of the tasks)",
    )
    parser.add_argument(
        "--stop-timeout",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="how long a shutdown waits for the routines to stop (default: 10)",
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LEVELS,
        default="INFO",
        help="the least level logged, on stderr (default: INFO)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text lines, or one JSON object per record with its extra fields (default: text)",
    )


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level, args.log_format)
    if args.store:
        os.environ[STORE_VARIABLE] = args.store
    if args.schema:
        os.environ[SCHEMA_VARIABLE] = args.schema
    found = load_target(args.target)
    options: dict[str, object] = {}
    flags = []
    if args.concurrency is not None:
        options["concurrency"] = args.concurrency
        flags.append("--concurrency")
    if args.queues is not None:
        options["queues"] = args.queues
        flags.append("--queue")
    members = routines_of(found, args.target, options, " and ".join(flags))
    try:
        monitor = Monitor(*members, stop_timeout=args.stop_timeout)
    except (TypeError, ValueError) as error:
        msg = f"{args.target}: {describe_error(error)}"
        raise CommandError(msg) from None

    # From here a signal stops the Monitor, also one that comes before run() has put in its
    # own handlers (it stops as soon as it starts); run() gives this handler back at its end.
    def stop_early(signum: int, frame: object) -> None:
        monitor.shutdown(f"received {signal.Signals(signum).name}")  # takes no lock

    signal.signal(signal.SIGINT, stop_early)
    signal.signal(signal.SIGTERM, stop_early)
    names = ", ".join(routine_name(member) for member in members)
    logger.info(
        "routines worker: running %s (%s); SIGTERM or Ctrl-C stops it",
        args.target,
        names,
        extra={"event": "worker_started", "target": args.target, "pid": os.getpid()},
    )
    report = monitor.run()
    # Ignored now, so that a late signal can't interrupt the report or kill the exit (Python's
    # handlers are reset to the default while the interpreter finalises; docs/monitor.md).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.log_format == "json":
        print_json(report.to_dict())
    else:
        sys.stdout.write(f"{report}\n")
    sys.stdout.flush()
    return report.exit_code


COMMANDS = (
    Command(
        name="worker",
        summary="run routines or durable tasks in the foreground until SIGTERM or Ctrl-C",
        description=_DESCRIPTION,
        add_arguments=add_arguments,
        run=run,
    ),
)
