"""`CallbackRoutine`: a routine made of code that already has its own start/stop pair."""

from __future__ import annotations

import threading
from collections.abc import Callable

from typing_extensions import final

from ._lifecycle import Lifecycle
from ._logs import get_logger, log_error
from ._validate import check_callable, check_name, describe_callable

__all__ = ["CallbackRoutine"]

logger = get_logger("callback")


@final
class CallbackRoutine:
    """Wrap a blocking start callable and the callable that makes it return.

    `CallbackRoutine(server.serve_forever, server.shutdown, name="http")`: `stop()` marks the
    routine as stopping (so `routines.sleep()` in the start callable returns) and calls the stop
    callback at most once per run, on a helper thread, and only once the start callable is
    running, because `server.shutdown()` blocks until `serve_forever()` returns.
    """

    def __init__(
        self,
        start: Callable[[], object],
        stop: Callable[[], object] | None = None,
        *,
        name: str | None = None,
    ) -> None:
        self._start_callable: Callable[[], object] = check_callable("start", start, takes=0)
        self._stop_callable: Callable[[], object] | None = check_callable(
            "stop", stop, allow_none=True, takes=0
        )
        self.name = check_name(name) or describe_callable(start)
        self._named_after = None if name is not None else start  # for fleet_name()
        self._lifecycle = Lifecycle()
        self._lock = threading.Lock()
        self._callable_running = False
        self._stop_called = False

    def start(self) -> None:
        with self._lifecycle.run(self.name) as go:
            if not go:
                return
            with self._lock:
                if self._lifecycle.stopping:
                    return
                self._callable_running = True
                self._stop_called = False
            try:
                self._start_callable()
            finally:
                with self._lock:
                    self._callable_running = False

    def stop(self) -> None:
        self._lifecycle.stop()
        with self._lock:
            if self._stop_callable is None or not self._callable_running or self._stop_called:
                return
            self._stop_called = True
        # The stop callback may block until the start callable returns (server.shutdown does),
        # so it must not run on the caller's thread, which may be the serving one.
        threading.Thread(
            target=self._call_stop, name=f"routine:{self.name}:stop", daemon=True
        ).start()

    def _call_stop(self) -> None:
        assert self._stop_callable is not None
        try:
            self._stop_callable()
        except Exception:  # noqa: BLE001 - logged with its traceback by log_error
            log_error(logger, self.name, "stop_callback_raised", "the stop callback raised")

    def __repr__(self) -> str:
        return f"<CallbackRoutine {self.name!r}>"
