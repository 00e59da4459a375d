"""Logging for the `routines` program: one handler on stderr, as text or as JSON lines.

The library never configures logging; the program does, for itself: the root logger, so that
the records of the routines it runs go the same way as the library's.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Final, Literal, TextIO, TypeAlias

from .._status import describe_value

__all__ = ["LEVELS", "LogFormat", "JsonFormatter", "configure_logging"]

LogFormat: TypeAlias = Literal["text", "json"]
LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# The attributes every LogRecord has; any other is a field its `extra` gave it.
_RECORD_ATTRIBUTES: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: `time` (UTC, ISO 8601), `level`, `logger`,
    `message`, the record's `extra` fields (`routine`, `event`, `queue`, `job_id`, ...), and the
    `traceback` or `stack` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, object] = {
            key: value for key, value in vars(record).items() if key not in _RECORD_ATTRIBUTES
        }
        document.update(
            time=datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            level=record.levelname,
            logger=record.name,
            message=record.getMessage(),
        )
        if record.exc_info:
            document["traceback"] = self.formatException(record.exc_info)
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return json.dumps(document, default=_as_text, ensure_ascii=False)


def _as_text(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    return describe_value(value)


def configure_logging(level: str, log_format: LogFormat, stream: TextIO | None = None) -> None:
    """Send every record of `level` and above to `stream` (stderr), as text or JSON lines."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
