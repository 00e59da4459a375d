"""`StopCaller`: call many `stop()`s at once so that one that blocks delays no other."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

__all__ = ["StopCaller"]

logger = logging.getLogger("routines")


class StopCaller:
    """Runs calls on helper threads, never queueing a call behind one that is still running.

    Before a helper starts a call, it makes sure the calls still queued have a helper that is not
    in a call: it wakes a free one, or starts a new one when every helper is busy. So a `stop()`
    that blocks holds only its own helper, while the usual quick `stop()` calls run one after
    another on a few threads instead of a new thread each (a thousand thread starts would cost
    more than the thousand stops). The callables handle their own errors; an `Exception` that
    escapes is logged.
    """

    def __init__(self, thread_name: str) -> None:
        self._thread_name = thread_name
        self._cond = threading.Condition(threading.Lock())
        self._pending: deque[Callable[[], object]] = deque()
        self._free = 0  # helpers that are not in a call: waiting, or about to take the next one
        self._closed = False
        self._threads: list[threading.Thread] = []

    def call(self, fn: Callable[[], object]) -> None:
        with self._cond:
            if self._closed:
                msg = "StopCaller is closed"
                raise RuntimeError(msg)
            self._pending.append(fn)
            needs_helper = self._find_server()
        if needs_helper:
            self._start_helper()

    def close(self) -> None:
        """Let the helpers end once the calls given so far have returned."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _find_server(self) -> bool:
        """Under the lock, with calls pending: wake a free helper, or say a new one is needed."""
        if self._free:
            self._cond.notify()
            return False
        self._free += 1  # counted now, so that no other caller starts one for the same calls
        return True

    def _start_helper(self) -> None:
        helper = threading.Thread(target=self._serve, name=self._thread_name, daemon=True)
        with self._cond:
            self._threads.append(helper)
        try:
            helper.start()
        except BaseException:
            with self._cond:
                self._free -= 1
            raise

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    if self._closed:
                        self._free -= 1
                        return
                    self._cond.wait()
                fn = self._pending.popleft()
                self._free -= 1
                needs_helper = bool(self._pending) and self._find_server()
            try:
                if needs_helper:
                    self._start_helper()
            except Exception:
                # The calls still queued wait for this one, or for the next helper to free up.
                logger.exception("could not start a helper thread for stop calls")
            try:
                fn()
            except Exception:
                logger.exception("a stop call raised")
            except BaseException:
                self._hand_on()  # this helper ends here, with the exception
                raise
            with self._cond:
                self._free += 1

    def _hand_on(self) -> None:
        """Make sure the calls still queued have a helper, when this one leaves."""
        with self._cond:
            needs_helper = bool(self._pending) and self._find_server()
        if needs_helper:
            self._start_helper()
