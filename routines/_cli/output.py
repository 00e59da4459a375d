"""What the commands print: tables for people, one JSON document for scripts (`--json`).

Every command prints through here, so that every value reads the same everywhere: no value is
`-`, times are ISO 8601 in UTC, and a cell is one line.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TextIO

from .._status import describe_value

__all__ = ["cell", "print_json", "print_table", "show", "to_json"]


def show(
    document: object,
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    as_json: bool,
    file: TextIO | None = None,
) -> None:
    """`document` as JSON with `as_json` (the command's `--json`), else `rows` as a table."""
    if as_json:
        print_json(document, file=file)
    else:
        print_table(columns, rows, file=file)


def print_table(
    columns: Sequence[str], rows: Iterable[Sequence[object]], *, file: TextIO | None = None
) -> None:
    """A table with a header line, columns two spaces apart, numbers aligned right; nothing
    at all when there are no rows."""
    values = [list(row) for row in rows]
    if not values:
        return
    cells = [[cell(value) for value in row] for row in values]
    right = [
        all(_is_number(row[i]) or row[i] is None for row in values) for i in range(len(columns))
    ]
    widths = [max(len(name), *(len(row[i]) for row in cells)) for i, name in enumerate(columns)]
    out = sys.stdout if file is None else file
    for line in [list(columns), *cells]:
        parts = [
            text.rjust(width) if numeric else text.ljust(width)
            for text, width, numeric in zip(line, widths, right, strict=True)
        ]
        out.write("  ".join(parts).rstrip() + "\n")


def print_json(document: object, *, file: TextIO | None = None) -> None:
    """`document` as one JSON document on one line (times as ISO 8601 strings)."""
    out = sys.stdout if file is None else file
    out.write(json.dumps(document, default=to_json, ensure_ascii=False) + "\n")


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


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc) if moment.utcoffset() is not None else moment


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
