"""What the commands print: tables for people, one JSON document for scripts (`--json`).

Every command prints through here, so that every value reads the same everywhere: no value is
`-`, times are ISO 8601 in UTC (with their age, "3m ago", where a person reads them), a cell is
one line, and a table fits the terminal (its long columns cut, with `...`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Final, TextIO

from .._status import describe_value

__all__ = [
    "DEFAULT_WIDTH",
    "age",
    "cell",
    "headline",
    "indented_json",
    "moment",
    "print_fields",
    "print_json",
    "print_table",
    "show",
    "span",
    "terminal_width",
    "to_json",
    "utc_now",
]

# The width of a table written to a pipe or a file, unless COLUMNS says otherwise: what a
# terminal of a hundred columns shows, the same on every machine (and in tests).
DEFAULT_WIDTH: Final = 100
_CUT: Final = "..."
_NARROWEST: Final = 12  # a cut column keeps at least this many characters (or its header's)


def show(
    document: object,
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    as_json: bool,
    file: TextIO | None = None,
    cut: Sequence[str] = (),
) -> None:
    """`document` as JSON with `as_json` (the command's `--json`), else `rows` as a table
    (`cut`: the columns that may be cut to fit the terminal, see `print_table`)."""
    if as_json:
        print_json(document, file=file)
    else:
        print_table(columns, rows, file=file, cut=cut)


def print_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    file: TextIO | None = None,
    cut: Sequence[str] = (),
) -> None:
    """A table with a header line, columns two spaces apart, numbers aligned right; nothing
    at all when there are no rows. When it is wider than the terminal (`terminal_width`), the
    columns named in `cut` are narrowed, in that order, and their longer cells cut with `...`:
    the full text is in the command's --json (or in `routines job ID`)."""
    values = [list(row) for row in rows]
    if not values:
        return
    cells = [[cell(value) for value in row] for row in values]
    right = [  # a column of numbers (and None); a column of only None is text
        all(_is_number(row[i]) or row[i] is None for row in values)
        and any(row[i] is not None for row in values)
        for i in range(len(columns))
    ]
    widths = [max(len(name), *(len(row[i]) for row in cells)) for i, name in enumerate(columns)]
    out = sys.stdout if file is None else file
    _narrow(widths, columns, cut, terminal_width(out))
    for line in [list(columns), *cells]:
        parts = [
            _fit(text, width).rjust(width) if numeric else _fit(text, width).ljust(width)
            for text, width, numeric in zip(line, widths, right, strict=True)
        ]
        out.write("  ".join(parts).rstrip() + "\n")


def print_fields(
    fields: Sequence[tuple[str, object]],
    blocks: Sequence[tuple[str, str | None]] = (),
    *,
    file: TextIO | None = None,
) -> None:
    """One record for people: a line per field (`name  value`, the values aligned), then each
    block of text (a payload's JSON, a traceback) whole, under its name and indented; `-` for
    a block that is None."""
    out = sys.stdout if file is None else file
    width = max((len(name) for name, _ in [*fields, *blocks]), default=0)
    for name, value in fields:
        out.write(f"{name.ljust(width)}  {cell(value)}".rstrip() + "\n")
    for name, text in blocks:
        if text is None:
            out.write(f"{name.ljust(width)}  -\n")
            continue
        out.write(f"{name}:\n")
        for line in text.splitlines() or [""]:
            out.write(f"    {line}".rstrip() + "\n")


def terminal_width(out: TextIO) -> int:
    """The columns a table written to `out` may take: $COLUMNS if set, else the terminal's
    width when `out` is a terminal, else `DEFAULT_WIDTH` (a pipe, a file, a test's capture)."""
    if not os.environ.get("COLUMNS") and not _is_terminal(out):
        return DEFAULT_WIDTH
    return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns


def utc_now() -> datetime:
    """The moment the ages a command prints are counted from (this host's clock, in UTC)."""
    return datetime.now(timezone.utc)


def moment(value: datetime | None, now: datetime) -> str | None:
    """A time for people: UTC to the second in ISO 8601, and its age, such as
    `2026-01-02T03:04:05Z (3m ago)`; None stays None (a table shows `-`)."""
    if value is None:
        return None
    return f"{_utc(value).strftime('%Y-%m-%dT%H:%M:%SZ')} ({age(value, now)})"


def age(value: datetime, now: datetime) -> str:
    """How long ago `value` was (`3m ago`), or how far ahead it is (`in 5s`), in its largest
    whole unit; `now` within a second."""
    seconds = (now - value).total_seconds()
    if abs(seconds) < 1:
        return "now"
    return f"{span(seconds)} ago" if seconds > 0 else f"in {span(-seconds)}"


def span(seconds: float) -> str:
    """A length of time in its largest whole unit: `45s`, `3m`, `2h`, `12d`."""
    whole = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def headline(error: str | None) -> str | None:
    """The line of a stored error that says what it was: after a Python traceback's frames,
    the line naming the exception (`RuntimeError: boom`); else its first line."""
    if error is None:
        return None
    lines = [line for line in error.splitlines() if line.strip()]
    if not lines:
        return error
    frames = [n for n, line in enumerate(lines) if line.startswith((" ", "\t"))]
    if lines[0].startswith("Traceback (most recent call last):") and frames:
        after = frames[-1] + 1
        return lines[after] if after < len(lines) else lines[-1]
    return lines[0]


def print_json(document: object, *, file: TextIO | None = None) -> None:
    """`document` as one JSON document on one line (times as ISO 8601 strings)."""
    out = sys.stdout if file is None else file
    out.write(json.dumps(document, default=to_json, ensure_ascii=False) + "\n")


def indented_json(value: object) -> str:
    """A JSON value for people: indented, on several lines (a job's payload, in a record)."""
    return json.dumps(value, indent=2, default=to_json, ensure_ascii=False)


def to_json(value: object) -> object:
    """What JSON cannot take as it is: times as ISO 8601, durations as seconds, a dataclass
    (a `durable.Job`, say) as its fields, a set or tuple as a list, anything else as its repr."""
    if isinstance(value, datetime):
        return _utc(value).isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return describe_value(value)


def cell(value: object) -> str:
    """One value in a table: `-` for None, times in UTC to the second, a float in short form,
    anything else as text on one line."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return _utc(value).isoformat(timespec="seconds")
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g}s"
    if isinstance(value, (Mapping, list)):
        text = json.dumps(value, default=to_json, ensure_ascii=False)
    else:
        text = value if isinstance(value, str) else describe_value(value)
    return " ".join(text.split()) if "\n" in text or "\r" in text else text


def _utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc) if value.utcoffset() is not None else value


def _narrow(widths: list[int], columns: Sequence[str], cut: Sequence[str], limit: int) -> None:
    """Narrow the columns named in `cut`, in that order (each down to `_NARROWEST` before the
    next is cut), until the table fits in `limit` characters or none of them can give more."""
    excess = sum(widths) + 2 * (len(widths) - 1) - limit
    for name in cut:
        if excess <= 0:
            return
        i = columns.index(name)
        given = min(excess, max(0, widths[i] - max(len(name), _NARROWEST)))
        widths[i] -= given
        excess -= given


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - len(_CUT)] + _CUT


def _is_terminal(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):  # a stream without isatty, or closed
        return False


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
