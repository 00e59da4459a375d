"""What the commands share: the `Command` record, the failures they report (a `CommandError`,
a usage error), the store options (`--store`, `--schema`), `--json`, the types of their
arguments, and opening the store."""

from __future__ import annotations

import argparse
import difflib
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, NoReturn

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
    "add_listing_options",
    "add_store_options",
    "duration",
    "job_id",
    "open_store",
    "positive_int",
    "positive_int_up_to",
    "store_schema",
    "store_url",
    "the_names",
    "usage_error",
    "using_store",
]

STORE_VARIABLE: Final = "ROUTINES_STORE_URL"
SCHEMA_VARIABLE: Final = "ROUTINES_STORE_SCHEMA"
DEFAULT_SCHEMA: Final = "routines"
_LARGEST_ID: Final = 2**63 - 1  # job ids are 64-bit integers in both databases
_DURATION: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)")
_UNIT_SECONDS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SHOWN_NAMES: Final = 12  # at most this many names in a message


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


def the_names(name: str, known: Sequence[str], kind: str) -> str:
    """For a name the store has not got: `its queues: 'a', 'b'; did you mean 'a'?` (`kind`:
    what the names are), at most a dozen of them."""
    shown = ", ".join(map(repr, known[:_SHOWN_NAMES]))
    more = ", ..." if len(known) > _SHOWN_NAMES else ""
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    return f"its {kind}: {shown}{more}{hint}"


def usage_error(args: argparse.Namespace, message: str) -> NoReturn:
    """Refuse the arguments as argparse refuses them: the usage and `message` on stderr, exit
    status 2 (for what one argument alone can't say, such as two that exclude each other)."""
    refuse: Callable[[str], NoReturn] = args.usage_error  # the subcommand's parser.error
    refuse(message)


def positive_int(text: str) -> int:
    """An argument that is a whole number of at least 1."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        msg = f"must be a whole number of at least 1, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return number


def positive_int_up_to(most: int, why: str = "") -> Callable[[str], int]:
    """The type of an argument that is a whole number from 1 to `most`; `why` (the reason for
    the bound, or what to do instead) is said in the refusal of a larger one."""

    def parse(text: str) -> int:
        number = positive_int(text)
        if number > most:
            reason = f" ({why})" if why else ""
            msg = f"must be at most {most}{reason}, got {text!r}"
            raise argparse.ArgumentTypeError(msg)
        return number

    return parse


def job_id(text: str) -> int:
    """An argument that is a job id: a whole number from 1 to 2**63 - 1."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if not 1 <= number <= _LARGEST_ID:
        msg = f"must be a job id (a whole number of at least 1), got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return number


def duration(text: str) -> float:
    """An argument that is a length of time, in seconds: `30s`, `10m`, `2h`, `7d`, or a plain
    number of seconds (`90`, `1.5`)."""
    found = _DURATION.fullmatch(text.strip().lower())
    seconds = float(found.group(1)) * _UNIT_SECONDS[found.group(2)] if found else math.nan
    if not math.isfinite(seconds):
        msg = f"must be a length of time such as 30s, 10m, 2h, 7d or seconds, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return seconds


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document instead of a table"
    )


def add_listing_options(parser: argparse.ArgumentParser) -> None:
    """The options of a listing that takes no others: the store's, and `--json`."""
    add_store_options(parser)
    add_json_option(parser)


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


@contextmanager
def using_store(args: argparse.Namespace) -> Iterator[durable.Store]:
    """The store the options name, open for the block and closed after it; what its calls
    raise for the database (away, or refusing) or for a value it refuses (a queue name too
    long, say) becomes a `CommandError` of one line."""
    from routines import durable

    store = open_store(args)
    try:
        yield store
    except durable.StoreUnavailable as error:
        msg = f"{describe_error(error)}: check that the database is up, then run the command again"
        raise CommandError(msg) from None
    except durable.StoreError as error:
        raise CommandError(describe_error(error)) from None
    except (TypeError, ValueError) as error:  # the library's message names the argument
        raise CommandError(describe_error(error)) from None
    finally:
        store.close()
