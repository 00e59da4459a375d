"""Running a Monitor inside a host that owns the main thread and its signals: a web server
(`flask run`, Django's `runserver`), a gunicorn worker, a program with its own main loop."""

from __future__ import annotations

import atexit
import threading
from datetime import timedelta
from typing import Protocol, TypedDict

from typing_extensions import Self, final

from ._logs import fields, get_logger
from ._process import StartedIn
from ._report import ShutdownReport
from ._signals import SignalChain, signal_name
from ._validate import check_bool, check_optional_seconds

__all__ = ["HostHooks", "HostOptions"]

logger = get_logger("host")

# How long past stop_timeout the interpreter's exit waits for the report.
_EXIT_GRACE = 2.0


class HostOptions(TypedDict, total=False):
    """The options of `Monitor.start_in_host()` (see `HostHooks`)."""

    chain_signals: bool
    shutdown_at_exit: bool
    host_deadline: float | timedelta | None


class _Monitor(Protocol):
    def start(self) -> None: ...
    def shutdown(self, reason: str = ...) -> None: ...
    def wait(self, timeout: float | None = None) -> ShutdownReport | None: ...


@final
class HostHooks:
    """What `Monitor.start_in_host()` installed next to the host's own machinery.

    Its options (all keyword-only):

    - `chain_signals` (default True): handlers for the Monitor's `signals` (installed in the
      main thread) that shut the Monitor down and then hand the signal on to the handler that
      was there, the host's; where there was none (the default action, terminate), the process
      terminates as it would have, once the shutdown is over.
    - `shutdown_at_exit` (default True): when the interpreter exits, the Monitor is shut down
      and its report awaited (bounded by `stop_timeout`), before daemon threads are cut off;
      the host's handlers are put back then.
    - `host_deadline`: how long the host waits after its own stop signal before it kills the
      process (gunicorn's `graceful_timeout`); a `stop_timeout` that doesn't fit is logged.

    `restore()` puts the host's handlers back (from the main thread) and drops the exit hook.
    """

    __slots__ = ("_chain", "_monitor", "_started_in", "_stop_timeout", "_watcher")

    def __init__(self, monitor: _Monitor, chain: SignalChain | None, stop_timeout: float) -> None:
        self._monitor = monitor
        self._chain = chain
        self._stop_timeout = stop_timeout
        self._watcher: threading.Thread | None = None
        self._started_in = StartedIn()
        self._started_in.mark()

    @classmethod
    def start(
        cls,
        monitor: _Monitor,
        signals: tuple[int, ...],
        stop_timeout: float,
        *,
        chain_signals: bool = True,
        shutdown_at_exit: bool = True,
        host_deadline: float | timedelta | None = None,
    ) -> Self:
        check_bool("chain_signals", chain_signals)
        check_bool("shutdown_at_exit", shutdown_at_exit)
        deadline = check_optional_seconds("host_deadline", host_deadline)
        if deadline is not None and stop_timeout >= deadline:
            logger.warning(
                "stop_timeout (%gs) does not fit in the host's deadline (%gs): the host may kill "
                "the process before the routines have stopped (keep drain_timeout < "
                "stop_timeout < the host's deadline)",
                stop_timeout,
                deadline,
                extra=fields(event="deadline_misfit"),
            )
        chain = None
        if chain_signals:
            # No lock, no logging in a signal handler: shutdown() only queues the request.
            chain = SignalChain(
                signals, lambda signum: monitor.shutdown(f"received {signal_name(signum)}")
            )
            chain.install()
        hooks = cls(monitor, chain, stop_timeout)
        try:
            monitor.start()
            if chain is not None:
                hooks._watch()
        except BaseException:
            hooks.restore()
            raise
        if shutdown_at_exit:
            atexit.register(hooks._at_exit)
        return hooks

    def restore(self) -> None:
        """Put the host's handlers back (main thread only) and drop the exit hook."""
        atexit.unregister(self._at_exit)
        if self._chain is not None:
            self._chain.restore()

    def _watch(self) -> None:
        """A thread that tells the chain when the shutdown is over (for deferred defaults)."""
        chain = self._chain
        assert chain is not None

        def watch() -> None:
            self._monitor.wait()
            chain.done()

        self._watcher = threading.Thread(target=watch, name="routines:monitor:host", daemon=True)
        self._watcher.start()

    def _at_exit(self) -> None:
        if self._started_in.forked():  # a child exiting: the monitor is its parent's
            return
        self._monitor.shutdown("the interpreter is exiting")
        report = self._monitor.wait(self._stop_timeout + _EXIT_GRACE)
        if report is None:
            logger.warning(
                "the monitor did not report before the interpreter exited",
                extra=fields(event="exit_timed_out"),
            )
        if threading.current_thread() is threading.main_thread():
            self.restore()
