"""What the commands share: the `Command` record, the failure they report, the store options
(`--store`, `--schema`), `--json`, and opening the store."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from typing_extensions import final

from .._status import describe_error

if TYPE_CHECKING:
    from routines import durable

__all__ = [
    "DEFAULT_SCHEMA",
    "SCHEMA_VARIABLE",
    "STORE_VARIABLE",
    "Command",
    "CommandError",
    "add_json_option",
    "add_store_options",
    "open_store",
    "store_schema",
    "store_url",
]

STORE_VARIABLE: Final = "ROUTINES_STORE_URL"
SCHEMA_VARIABLE: Final = "ROUTINES_STORE_SCHEMA"
DEFAULT_SCHEMA: Final = "routines"


@final
@dataclass(frozen=True)
class Command:
    """One subcommand: its name, its line in `routines --help`, its arguments, and what it does
    (`run` returns the exit status, or raises `CommandError`)."""

    name: str
    summary: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str | None = None  # its `routines NAME --help` text; the summary if None


class CommandError(Exception):
    """The command failed: its message is one line on stderr that says what was wrong and the
    fix, and the exit status is 1."""


def add_store_options(parser: argparse.ArgumentParser, *, purpose: str | None = None) -> None:
    """`--store URL` (default $ROUTINES_STORE_URL) and `--schema NAME` (default
    $ROUTINES_STORE_SCHEMA, else "routines")."""
    store = (
        f"the store: sqlite:///jobs.db or postgresql://user@host/db (default: ${STORE_VARIABLE})"
    )
    parser.add_argument("--store", metavar="URL", help=purpose or store)
    parser.add_argument(
        "--schema",
        metavar="NAME",
        help=f"the store's PostgreSQL schema (default: ${SCHEMA_VARIABLE}, else {DEFAULT_SCHEMA})",
    )


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document instead of a table"
    )


def store_url(args: argparse.Namespace) -> str | None:
    """The store's URL: `--store`, else $ROUTINES_STORE_URL, else None."""
    given: str | None = args.store
    return given or os.environ.get(STORE_VARIABLE) or None


def store_schema(args: argparse.Namespace) -> str:
    """The store's schema: `--schema`, else $ROUTINES_STORE_SCHEMA, else "routines"."""
    given: str | None = args.schema
    return given or os.environ.get(SCHEMA_VARIABLE) or DEFAULT_SCHEMA


def open_store(args: argparse.Namespace) -> durable.Store:
    """The store the options name, opened; a `CommandError` saying what to fix if it can't be."""
    url = store_url(args)
    if url is None:
        msg = (
            f"no store given: pass --store URL or set {STORE_VARIABLE} "
            "(sqlite:///jobs.db, postgresql://user@host/db)"
        )
        raise CommandError(msg)
    from routines import durable  # only the commands that use a store load the durable tier

    where = f"--store or ${STORE_VARIABLE}"
    try:
        store = durable.open_store(url, schema=store_schema(args))
        try:
            store.check()  # a command reports a database that is away, instead of waiting
        except BaseException:
            store.close()
            raise
    except ValueError as error:  # the library's message names the URL (password masked)
        msg = f"cannot open the store: {describe_error(error)}: fix {where} (or --schema)"
        raise CommandError(msg) from None
    except ImportError as error:  # psycopg missing: the message names routines[postgres]
        msg = f"cannot open the store: {describe_error(error)}"
        raise CommandError(msg) from None
    except durable.StoreUnavailable as error:
        msg = (
            f"cannot open the store: {describe_error(error)}: check that the database is up and "
            f"that {where} names it"
        )
        raise CommandError(msg) from None
    except durable.StoreError as error:
        msg = f"cannot open the store: {describe_error(error)}: check {where}"
        raise CommandError(msg) from None
    return store
