"""`StopCaller`: call many `stop()`s at once so that one that blocks delays no other."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from ._threads import join_all

__all__ = ["StopCaller"]

logger = logging.getLogger("routines")


class StopCaller:
    """Runs calls on helper threads, never queueing a call behind one that is still running.

    A call goes to an idle helper if there is one, otherwise to a new helper. The usual quick
    `stop()` calls all run on one or two threads, and a `stop()` that blocks holds only its own.
    The callables handle their own errors; an `Exception` that escapes is logged.
    """

    def __init__(self, thread_name: str) -> None:
        self._thread_name = thread_name
        self._cond = threading.Condition(threading.Lock())
        self._pending: deque[Callable[[], object]] = deque()
        self._idle = 0
        self._closed = False
        self._threads: list[threading.Thread] = []

    def call(self, fn: Callable[[], object]) -> None:
        with self._cond:
            if self._closed:
                msg = "StopCaller is closed"
                raise RuntimeError(msg)
            self._pending.append(fn)
            needs_helper = len(self._pending) > self._idle
            if not needs_helper:
                self._cond.notify()
        if needs_helper:
            helper = threading.Thread(target=self._serve, name=self._thread_name, daemon=True)
            self._threads.append(helper)
            helper.start()

    def close(self) -> None:
        """Let the helpers end once the calls given so far have returned."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def join(self, timeout: float) -> bool:
        """Wait (after `close()`) up to `timeout` for the helpers to end; True if all did."""
        return not join_all(tuple(self._threads), timeout)

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    if self._closed:
                        return
                    self._idle += 1
                    self._cond.wait()
                    self._idle -= 1
                fn = self._pending.popleft()
            try:
                fn()
            except Exception:
                logger.exception("a stop call raised")
