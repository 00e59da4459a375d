"""`routines`: the parser of the command line, and the dispatch to its subcommands.

Exit status: 0 done, 1 the command failed (one line on stderr, no traceback), 2 a usage error
(argparse's), 130 interrupted by Ctrl-C before any routine started.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import textwrap
from collections.abc import Sequence
from typing import Final

from .common import Command, CommandError

__all__ = ["GROUPS", "build_parser", "commands", "main"]

# The modules of routines/_cli/ that hold subcommands, each with COMMANDS, a tuple of Command;
# `routines --help` lists them in this order. A new group of commands is a module and a line here.
GROUPS: Final = ("worker", "jobs", "fleet", "dashboard")

_EPILOG: Final = (
    "exit status: 0 done, 1 the command failed (the reason on stderr), 2 a usage error."
)


def commands() -> list[Command]:
    """Every subcommand, in the order of `GROUPS`."""
    found: list[Command] = []
    for group in GROUPS:
        module = importlib.import_module(f"{__package__}.{group}")
        declared = getattr(module, "COMMANDS", None)
        if not isinstance(declared, tuple) or not all(isinstance(c, Command) for c in declared):
            msg = f"routines._cli.{group} must define COMMANDS, a tuple of Command"
            raise TypeError(msg)
        found.extend(declared)
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="routines",
        description="Run and inspect routines and durable jobs.",
        epilog=_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in commands():
        subparser = subcommands.add_parser(
            command.name,
            help=command.summary,
            description=_paragraphs(command.description or command.summary),
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps the paragraphs
        )
        command.add_arguments(subparser)
        subparser.set_defaults(run=command.run, usage_error=subparser.error)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: `sys.argv[1:]`); the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)  # SystemExit(2) on a usage error, (0) after --help
    try:
        status: int = args.run(args)
        sys.stdout.flush()  # here, so that a closed pipe is seen here, not at exit
    except CommandError as error:
        message = _one_line(str(error))  # allowed: CommandError is ours, Exception's __str__
        sys.stderr.write(f"routines {args.command}: error: {message}\n")
        return 1
    except KeyboardInterrupt:  # Ctrl-C before the routines ran (while importing, say)
        sys.stderr.write(f"routines {args.command}: interrupted\n")
        return 130
    except BrokenPipeError:  # `routines jobs | head`: the reader has all it wanted
        _discard_stdout()
        return 1
    return status


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush of what is still
    buffered for a closed pipe does not fail again at exit (the Python docs' recipe, in
    signal's "Note on SIGPIPE")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def _paragraphs(text: str) -> str:
    """Text whose paragraphs (apart by a blank line) are each filled to the help's width."""
    return "\n\n".join(textwrap.fill(" ".join(each.split()), 79) for each in text.split("\n\n"))


def _one_line(text: str) -> str:
    """A message on one line: a driver's error may span several."""
    return " ".join(text.split())


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("routines")
    except PackageNotFoundError:  # run from a checkout that was not installed
        return "(not installed)"
