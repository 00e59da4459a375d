"""The exceptions of the durable tier: what a store raises, and what a job's handler may raise."""

from __future__ import annotations

import traceback
from datetime import timedelta

from .._errors import RoutinesError
from .._status import describe_error
from .._validate import check_optional_seconds, check_seconds
from ._model import MAX_ERROR_TEXT, storable

__all__ = [
    "Fail",
    "MigrationsIncomplete",
    "Retry",
    "Snooze",
    "StoreError",
    "StoreUnavailable",
    "error_report",
]


class StoreError(RoutinesError):
    """The store failed: its database refused a call, or holds what this version can't read."""


class StoreUnavailable(StoreError):
    """The database could not be reached, or a lock not taken, within the store's `timeout`.

    The call may or may not have taken effect (a write whose connection broke may have
    committed); a later call works once the database answers again.
    """


class MigrationsIncomplete(RoutinesError):
    """`store.require_migrations_complete()` found migrations not complete: `ids` names them."""

    def __init__(self, ids: tuple[str, ...]) -> None:
        self.ids = ids
        super().__init__(
            f"out-of-band migrations not complete: {', '.join(ids)}; let their MigrationRunner "
            "finish them (store.migrations() shows their progress) before this code runs"
        )


class Retry(Exception):
    """Raised by a job's handler: try the job again `after` seconds from now.

    `after=None` waits the worker's backoff. The retry spends an attempt: once the job has used
    `max_attempts`, it is `failed` instead.
    """

    def __init__(self, after: float | timedelta | None = None) -> None:
        super().__init__(after)
        self.after: float | None = check_optional_seconds("after", after)

    def __str__(self) -> str:
        if self.after is None:
            return "retry after the backoff"
        return f"retry after {self.after:g}s"


class Snooze(Exception):
    """Raised by a job's handler: put the job back to `queued`, due `after` seconds from now,
    with its attempt given back (`attempts` unchanged, `snoozes` + 1). A snooze is not a
    failure: it never makes a job `failed`, however often it is raised. For a job that waits
    on something outside (a rate limit of an API, a resource not ready yet)."""

    def __init__(self, after: float | timedelta) -> None:
        super().__init__(after)
        self.after: float = check_seconds("after", after)

    def __str__(self) -> str:
        return f"snooze for {self.after:g}s"


class Fail(Exception):
    """Raised by a job's handler: the job is `failed` at once, with `message`, and not retried."""

    def __init__(self, message: str) -> None:
        if not isinstance(message, str):
            msg = f"message must be a str, got {message!r}"
            raise TypeError(msg)
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def error_report(error: BaseException) -> str:
    """The type, message and traceback of an error, at most `MAX_ERROR_TEXT` characters: the
    head (type and message) and the tail (where it was raised) when it is longer."""
    text = storable("".join(traceback.format_exception(type(error), error, error.__traceback__)))
    if len(text) <= MAX_ERROR_TEXT:
        return text
    head = storable(describe_error(error) or type(error).__name__)
    marker = "\n...(traceback shortened)...\n"
    tail = text[-max(0, MAX_ERROR_TEXT - len(head) - len(marker)) :]
    return f"{head}{marker}{tail}"[:MAX_ERROR_TEXT]
