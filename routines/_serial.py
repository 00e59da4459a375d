"""`SerialRunner`: runs callbacks one at a time, in order, on a thread of its own."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["SerialRunner"]

logger = logging.getLogger("routines")


class SerialRunner:
    """A single helper thread that runs the callbacks given to it, in order.

    The Monitor delivers `on_event` and `on_signal` callbacks this way, so a slow or raising
    callback never holds up a routine, the signal pump or shutdown itself. Whatever a callback
    raises, even a `BaseException`, is logged with `what` in the message, and the next one runs.
    """

    def __init__(self, thread_name: str, what: str) -> None:
        self._what = what
        self._cond = threading.Condition(threading.Lock())
        self._pending: deque[Callable[[], object]] = deque()
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=thread_name, daemon=True)
        self._thread.start()

    def submit(self, callback: Callable[[], object]) -> None:
        with self._cond:
            if self._closed:
                return
            self._pending.append(callback)
            self._cond.notify()

    def close(self, timeout: float) -> bool:
        """Run what was submitted so far, for at most `timeout` seconds; True if all of it ran.

        What has not run by then is dropped (and logged): a callback that hangs must not keep
        shutdown from ending.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            while self._pending or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            dropped = len(self._pending)
            self._pending.clear()
            self._cond.notify_all()
        if dropped:
            logger.warning(
                "%s: %d callbacks not run, the last one did not return", self._what, dropped
            )
        self._thread.join(max(0.0, deadline - time.monotonic()))
        return dropped == 0 and not self._thread.is_alive()

    def _serve(self) -> None:
        while True:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
                while not self._pending:
                    if self._closed:
                        return
                    self._cond.wait()
                callback = self._pending.popleft()
                self._busy = True
            try:
                callback()
            except BaseException:  # logged: later callbacks must still run
                # Even SystemExit or KeyboardInterrupt: this thread has nobody to hand them to,
                # and dying would drop every later event or callback.
                logger.exception("%s raised", self._what)
