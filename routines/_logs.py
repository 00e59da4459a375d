"""How the library logs: a child of the `routines` logger per part, records whose fields a JSON
formatter can index, one line per message (tracebacks go through `exc_info`), and a failure
that keeps repeating logged in full once, then in one line per repeat.

The library never configures logging. Fields ride on `extra`: `routine` (the routine's name),
`event` (what happened, in snake_case), and for durable jobs `queue` and `job_id`.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Final

from typing_extensions import final

from ._status import describe_error

__all__ = ["RepeatedFailures", "fields", "get_logger", "log_error"]


def get_logger(part: str) -> logging.Logger:
    """The logger of one part of the library: `routines.<part>`."""
    return logging.getLogger(f"routines.{part}")


def fields(
    routine: str | None = None, event: str | None = None, **more: object
) -> dict[str, object]:
    """The `extra` of a record: the routine, the event, and any more fields, None ones left out."""
    found = {"routine": routine, "event": event, **more}
    return {key: value for key, value in found.items() if value is not None}


def log_error(logger: logging.Logger, routine: str, event: str, what: str) -> None:
    """In an `except` block: log "routine '<routine>': <what>" with the traceback and fields."""
    logger.exception("routine %r: %s", routine, what, extra=fields(routine, event))


_NEVER: Final = -math.inf  # one float for every RepeatedFailures that has seen no failure yet
# One lock for every RepeatedFailures: failures are rare, and every routine has one or two of
# them, where a lock each would cost an idle routine memory for nothing.
_failures_lock = threading.Lock()


@final
class RepeatedFailures:
    """Logs a failure with its traceback the first time, and its repeats briefly; thread-safe.

    A repeat is the same type with the same description as the failure before it, less than
    `window` seconds after it; after a quiet spell as long as the window, the same error is a
    new incident, and is logged in full again.
    """

    __slots__ = ("_last", "_last_at", "_repeats", "_window")

    def __init__(self, window: float) -> None:
        self._window = window
        self._last: tuple[type[BaseException], str | None] | None = None
        self._last_at = _NEVER
        self._repeats = 0

    def log(
        self,
        logger: logging.Logger,
        error: BaseException,
        now: float,
        what: str,
        *,
        routine: str,
        event: str = "failed",
        text: str | None = None,
    ) -> None:
        """Log that `what` (a one-line phrase: "routine 'x' failed") raised `error` at `now`
        (seconds on any monotonic clock). `text` replaces the error's description."""
        described = describe_error(error)
        shown = described if text is None else text
        with _failures_lock:
            repeats = self._count(type(error), described, now)
        if repeats:
            logger.warning(
                "%s again (%d repeats): %s",
                what,
                repeats,
                shown,
                extra=fields(routine, f"{event}_again", repeats=repeats),
            )
        else:
            logger.error("%s: %s", what, shown, exc_info=error, extra=fields(routine, event))

    def _count(self, kind: type[BaseException], described: str | None, now: float) -> int:
        """Under the lock: how many times in a row this failure repeats (0: a new one)."""
        quiet = now - self._last_at >= self._window
        self._last_at = now
        if (kind, described) == self._last and not quiet:
            self._repeats += 1
        else:
            self._last, self._repeats = (kind, described), 0
        return self._repeats
