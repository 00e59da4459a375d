"""How the durable tier's routines ride out a store that does not answer: the waits between
their retries, and the one line each outage logs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Final, TypeVar

from typing_extensions import final

from .._logs import fields
from .._status import describe_error
from ._errors import StoreUnavailable

__all__ = ["Backoff", "retried", "warn_unavailable"]

T = TypeVar("T")

_FIRST_BACKOFF: Final = 0.1  # after a StoreUnavailable: the first wait, doubled up to...
_LONGEST_BACKOFF: Final = 5.0  # ...this, so a routine is back within seconds of the database


def warn_unavailable(
    logger: logging.Logger,
    subject: str,
    doing: str,
    error: StoreUnavailable,
    *,
    routine: str,
    then: str = "",
    **more: object,
) -> None:
    """Log, at WARNING and on one line, that `subject` ("singleton 'x'") could not reach the
    store while `doing`, and what it does `then`."""
    logger.warning(
        "%s: %s: %s%s",
        subject,
        doing,
        describe_error(error),
        then,
        extra=fields(routine, "store_unavailable", **more),
    )


@final
class Backoff:
    """The waits of a loop that retries while the store is unavailable: doubling from
    0.1 s up to 5 s; each outage logged once at WARNING, and its end at
    INFO. One loop's: not thread-safe."""

    __slots__ = ("_delay", "_doing", "_logger", "_routine", "_subject")

    def __init__(self, logger: logging.Logger, subject: str, routine: str) -> None:
        self._logger = logger
        self._subject = subject
        self._routine = routine
        self._delay = 0.0
        self._doing = ""

    def failed(self, error: StoreUnavailable, doing: str) -> float:
        """The store did not answer while `doing`: how long to wait before trying again."""
        if not self._delay:
            self._doing = doing
            warn_unavailable(
                self._logger,
                self._subject,
                doing,
                error,
                routine=self._routine,
                then="; trying again until the store is back",
            )
        self._delay = min(max(self._delay * 2, _FIRST_BACKOFF), _LONGEST_BACKOFF)
        return self._delay

    def succeeded(self) -> None:
        """The store answered: the next failure starts a new outage."""
        if self._delay:
            self._logger.info(
                "%s: the store works again (the outage began while %s)",
                self._subject,
                self._doing,
                extra=fields(self._routine, "store_back"),
            )
        self._delay = 0.0


def retried(
    call: Callable[[], T], backoff: Backoff, doing: str, *, within: float
) -> T | StoreUnavailable:
    """`call()`, tried again with `backoff`'s waits while it raises `StoreUnavailable`, for up to
    `within` seconds: its result, or the last `StoreUnavailable` once that time is up. For a
    write already owed (an outcome, the end of a run): a stop does not cut its waits short."""
    give_up = time.monotonic() + within
    pause = threading.Event()  # never set: a bounded wait that no stop ends
    while True:
        try:
            result = call()
        except StoreUnavailable as error:
            delay = backoff.failed(error, doing)
            if time.monotonic() + delay > give_up:
                return error
            pause.wait(delay)
        else:
            backoff.succeeded()
            return result
