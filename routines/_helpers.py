"""`Helpers`: helper threads that run calls for a routine or a Monitor, off the caller's thread.

Two uses, one skeleton. A Monitor delivers `on_event` and `on_signal` callbacks one at a time,
in order (`serial=True`), so a slow or raising callback holds up no routine, signal or shutdown.
A Monitor or a `CombinedRoutine` calls many `stop()`s at once (`serial=False`): a call never
waits behind one that is still running, so a `stop()` that blocks holds up only itself.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from typing_extensions import final

from ._logs import fields, get_logger

__all__ = ["Helpers"]

logger = get_logger("threads")


@final
class Helpers:
    """Runs the calls given to `submit()` on helper threads named `thread_name`.

    `serial=True`: one helper, the calls in order. `serial=False`: before a helper starts a
    call, the calls still queued get a helper that is not in a call (a free one is woken, or a
    new one started), so the usual quick calls run one after another on a few threads instead
    of a thread each, and one that blocks delays no other. Whatever a call raises, even a
    `BaseException` (there is nobody on a helper thread to hand it to), is logged with `what`,
    and the helper goes on. Helpers are started when first needed.
    """

    __slots__ = (
        "_closed",
        "_cond",
        "_free",
        "_helpers",
        "_pending",
        "_serial",
        "_thread_name",
        "_what",
    )

    def __init__(self, thread_name: str, what: str, *, serial: bool) -> None:
        self._thread_name = thread_name
        self._what = what  # names the calls in log messages: "on_event", "a stop() call"
        self._serial = serial
        self._cond = threading.Condition(threading.Lock())
        self._pending: deque[Callable[[], object]] = deque()
        self._helpers = 0  # helper threads alive
        self._free = 0  # of them, those not in a call: waiting, or about to take the next one
        self._closed = False

    def submit(self, call: Callable[[], object]) -> None:
        """Queue `call`; raises RuntimeError once `close()` was called."""
        with self._cond:
            if self._closed:
                msg = f"{self._thread_name}: closed, {self._what} can't be run any more"
                raise RuntimeError(msg)
            self._pending.append(call)
            needs_helper = self._find_helper()
        if needs_helper:
            self._start_helper()

    def close(self, timeout: float = 0.0) -> bool:
        """Take no more calls; wait up to `timeout` seconds for the queued ones; True if all ran.

        Serial: what has not started by then is dropped (and logged), since a callback that
        hangs must not keep its owner from ending. Not serial: every queued call has a helper of
        its own, so none is dropped: they run on, on daemon threads. A call still running is
        never interrupted.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            while self._pending or self._free < self._helpers:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            done = not self._pending and self._free == self._helpers
            dropped = len(self._pending) if self._serial else 0
            if dropped:
                self._pending.clear()
                self._cond.notify_all()
        if dropped:
            logger.warning(
                "%s: %d calls not run, the one before them did not return",
                self._what,
                dropped,
                extra=fields(event="calls_dropped"),
            )
        return done

    def _find_helper(self) -> bool:
        """Under the lock, with calls queued: wake a free helper, or say a new one is needed."""
        if self._free or (self._serial and self._helpers):
            self._cond.notify()
            return False
        # Counted now, so that no other caller starts one for the same calls.
        self._helpers += 1
        self._free += 1
        return True

    def _start_helper(self) -> None:
        helper = threading.Thread(target=self._serve, name=self._thread_name, daemon=True)
        try:
            helper.start()
        except BaseException:
            with self._cond:
                self._helpers -= 1
                self._free -= 1
                self._cond.notify_all()
            raise

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    if self._closed:
                        self._helpers -= 1
                        self._free -= 1
                        self._cond.notify_all()
                        return
                    self._cond.wait()
                call = self._pending.popleft()
                self._free -= 1
                needs_helper = bool(self._pending) and not self._serial and self._find_helper()
            if needs_helper:
                try:
                    self._start_helper()
                except Exception:
                    # The calls still queued wait for this one, or for the next helper to free up.
                    logger.exception(
                        "%s: could not start another helper thread",
                        self._what,
                        extra=fields(event="thread_failed"),
                    )
            try:
                call()
            except BaseException:  # logged: there is nobody to hand it to, and calls go on
                logger.exception("%s raised", self._what, extra=fields(event="callback_raised"))
            with self._cond:
                self._free += 1
                self._cond.notify_all()

    def __repr__(self) -> str:
        return f"<Helpers {self._thread_name} helpers={self._helpers} free={self._free}>"
