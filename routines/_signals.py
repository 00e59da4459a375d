"""Catching signals for the Monitor: handlers that only record, and a pump that reads them.

A Python signal handler runs in the main thread between two bytecodes, possibly while that
thread holds a lock, so it must not take one. Here the handler only appends the signal to a
list. CPython's C-level handler has already written a byte to our wakeup socket
(`signal.set_wakeup_fd`), which wakes the main thread, blocked in `recv()` on that socket; it
then takes the list. The bytes only wake: when a flood fills the socket, the bytes dropped
lose no signal, as the list has them all. Everything else happens on ordinary threads.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import FrameType
from typing import Final

from typing_extensions import Self, final

from ._flag import Flag
from ._helpers import Helpers
from ._logs import fields, get_logger
from ._validate import check_callable

logger = get_logger("monitor")

__all__ = [
    "SignalCatcher",
    "SignalChain",
    "SignalPump",
    "check_on_signal",
    "check_signals",
    "signal_name",
    "wait_interruptibly",
]

_WAKE = 0  # what wake() writes: not a signal number (every byte only wakes the pump)
# Each retry of a restore follows a handler that raised, which takes a new signal: a storm of
# signals could make a few, never this many.
_RESTORE_ATTEMPTS = 1000
# A socket timeout must fit in a C timeval; longer waits end early, which callers allow for.
_LONGEST_WAIT = 86400.0
# The longest single wait of the main thread in `wait_interruptibly()`.
_MAIN_THREAD_SLICE = 0.1
# Where a wakeup socket that could not be given back stays open (see SignalCatcher.close).
_STILL_THE_WAKEUP_FD: list[tuple[socket.socket, socket.socket]] = []
# `signal.set_wakeup_fd(fd)` with no warning when a flood fills the socket (the bytes only wake).
# A partial, not a function: calling it runs no bytecode (see SignalCatcher.__enter__).
_set_wakeup_fd_quietly: Final = functools.partial(signal.set_wakeup_fd, warn_on_full_buffer=False)


class SignalCatcher:
    """Installs handlers for `signals` in the main thread and restores the old ones on exit."""

    def __init__(self, signals: Iterable[int]) -> None:
        self._signals = tuple(dict.fromkeys(signals))
        self._previous: dict[int, signal.Handlers | object] = {}
        # The wakeup fd found on entry, while ours is set: one item, else none.
        self._previous_wakeup_fd: list[int] = []
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)
        self._received: list[int] = []  # appended by the handler, taken by `wait()`

    def __enter__(self) -> Self:
        if threading.current_thread() is not threading.main_thread():
            self.close()
            msg = (
                "Monitor.run() installs signal handlers, which Python allows only in the main "
                "thread; in another thread pass signals=() (and no on_signal) and call "
                "monitor.shutdown() instead"
            )
            raise RuntimeError(msg)
        # Handlers first, wakeup fd last, and the restore in the reverse order: while the wakeup
        # fd is ours, our handlers are in place, and they only record (a Ctrl-C then raises no
        # KeyboardInterrupt that could lose track of the fd). Each previous handler is noted
        # before it is replaced, so that an interruption between the two loses none.
        try:
            for signum in self._signals:
                self._previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self._record)
            # One C call sets our fd and keeps the one it replaces: no bytecode runs between the
            # two, so no signal handler can raise there and lose the fd to restore.
            self._previous_wakeup_fd.extend(map(_set_wakeup_fd_quietly, [self._writer.fileno()]))
        except BaseException:
            self._restore()
            raise
        self.wake()  # a signal recorded before the fd was ours wrote no byte to wake wait()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._restore()

    def _restore(self) -> None:
        """Put back every handler and the wakeup fd, then re-raise what a handler raised meanwhile.

        Once a Python handler is back it may run at any bytecode (a SIGINT landing now raises
        KeyboardInterrupt from Python's default handler), and `signal.signal()` runs pending
        handlers before it swaps. Stopping half-way would leave the process deaf to SIGTERM, so
        each step is retried until everything is back; only then does the exception go on. The
        wakeup socket is closed only once it is no longer the wakeup fd (see `close`).
        """
        interrupted: BaseException | None = None
        try:
            for _ in range(_RESTORE_ATTEMPTS):
                try:
                    self._restore_what_is_left()
                except BaseException as exc:  # noqa: BLE001 - raised below, once all is back
                    interrupted = interrupted or exc
                else:
                    break
        finally:
            self.close()
        if interrupted is not None:
            raise interrupted

    def _restore_what_is_left(self) -> None:
        # The wakeup fd first, while only our handlers (which never raise) can run: once a
        # previous handler is back, a KeyboardInterrupt may break off the restore at any line.
        if self._previous_wakeup_fd:
            previous_fd = self._previous_wakeup_fd[0]
            try:
                # warn_on_full_buffer comes back as CPython's default: Python can't read it
                signal.set_wakeup_fd(previous_fd)
            except (OSError, ValueError):  # its owner closed it meanwhile: it can't come back
                signal.set_wakeup_fd(-1)
                logger.warning(
                    "the signal wakeup fd found before run() (%d) was closed meanwhile: "
                    "none is set now",
                    previous_fd,
                    extra=fields(event="wakeup_fd_lost"),
                )
            self._previous_wakeup_fd.clear()
        while self._previous:
            signum, previous = next(iter(self._previous.items()))
            # getsignal() gives None for a handler not installed from Python: SIG_DFL then
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)  # type: ignore[arg-type]
            del self._previous[signum]

    def _record(self, signum: int, frame: FrameType | None) -> None:
        """The Python-level handler: one append, no lock (the C-level handler has already
        written a byte to the wakeup socket, which wakes `wait()`)."""
        self._received.append(signum)

    def _take(self) -> list[int]:
        """The signals recorded since the last call, in order. Being a call, it runs the
        handlers still pending first: the byte that woke `wait()` may come before them."""
        taken, self._received = self._received, []
        return taken

    def close(self) -> None:
        """Close the wakeup socket, unless it is still the wakeup fd (a restore that could not
        finish): then it stays open, for ever, since a closed one would make every later signal
        fail to write to it, or write to whatever file reuses its number."""
        if self._previous_wakeup_fd:
            _STILL_THE_WAKEUP_FD.append((self._reader, self._writer))
            return
        self._reader.close()
        self._writer.close()

    def wake(self) -> None:
        """Make `wait()` return; callable from any thread, never blocks."""
        with contextlib.suppress(OSError):  # full (a wake is pending anyway) or closed
            self._writer.send(bytes([_WAKE]))

    def pump(
        self,
        handle: Callable[[int], object],
        *,
        until: Callable[[], bool],
        timeout: float | None = None,
    ) -> None:
        """Hand each signal received to `handle` until `until()` is true (checked after every
        wake-up: call `wake()` when it turns true) or `timeout` seconds have passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not until():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            for signum in self.wait(remaining):
                handle(signum)

    def wait(self, timeout: float | None = None) -> list[int]:
        """Block until a signal arrives, `wake()` is called or `timeout` runs out (a timeout of
        more than a day may end after a day); return the signals received."""
        # A blocking recv() rather than select(), which fails for descriptors past 1024. A signal
        # interrupts it, runs the handler, and its byte is there to read: the bytes only wake.
        self._reader.settimeout(None if timeout is None else min(timeout, _LONGEST_WAIT))
        with contextlib.suppress(TimeoutError, InterruptedError):
            self._reader.recv(4096)
        return self._take()


@final
class SignalPump:
    """`Monitor.run()`'s signal handling: catches `shutdown_signals` and the keys of
    `on_signal` (in the main thread), runs each `on_signal` callback on a helper thread, one at a
    time, and hands each shutdown signal to `on_shutdown_signal`, on the thread that pumps."""

    def __init__(
        self,
        shutdown_signals: tuple[int, ...],
        on_signal: dict[int, Callable[[], object]],
        on_shutdown_signal: Callable[[int], object],
    ) -> None:
        self._shutdown_signals = shutdown_signals
        self._on_signal = on_signal
        self._on_shutdown_signal = on_shutdown_signal
        self._catcher = SignalCatcher((*shutdown_signals, *on_signal))
        self._callbacks = (
            Helpers("routines:monitor:signals", "on_signal", serial=True) if on_signal else None
        )

    def __enter__(self) -> Self:
        try:
            self._catcher.__enter__()
        except BaseException:
            self.close(0.0)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._catcher.__exit__(None, None, None)

    def close(self, grace: float) -> None:
        """Let queued `on_signal` callbacks run for up to `grace` seconds; drop the rest."""
        if self._callbacks is not None:
            self._callbacks.close(grace)

    def wake(self) -> None:
        """Make `pump()` look at its `until` now; from any thread, never blocks."""
        self._catcher.wake()

    def serve(
        self,
        start: Callable[[], object],
        *,
        done: Callable[[], bool],
        interrupted: Callable[[BaseException], object],
        settle: float,
        wait: Callable[[float], object],
    ) -> None:
        """`start()`, then handle signals until `done()` (call `wake()` when it turns true).

        If anything breaks that after `start()` (an exception in the pump, a KeyboardInterrupt
        of the program's), `interrupted(error)` is told, to begin a shutdown: signals are still
        handled for up to `settle` seconds (a second one can force the end), or, should the
        pump break again, `wait(seconds left)` waits for the end; then the error goes on.
        """
        started = False
        try:
            start()
            started = True
            self.pump(until=done)
        except BaseException as error:
            if started:
                interrupted(error)
                deadline = time.monotonic() + settle
                try:
                    self.pump(until=done, timeout=settle)
                except Exception:
                    logger.exception(
                        "the signal pump broke again; waiting for the end without it",
                        extra=fields(event="pump_failed"),
                    )
                    wait(max(0.0, deadline - time.monotonic()))
            raise

    def pump(self, *, until: Callable[[], bool], timeout: float | None = None) -> None:
        """Handle signals until `until()` is true or `timeout` seconds have passed."""
        self._catcher.pump(self._handle, until=until, timeout=timeout)

    def _handle(self, signum: int) -> None:
        callback = self._on_signal.get(signum)
        if callback is not None and self._callbacks is not None:
            logger.info(
                "received %s: calling its on_signal callback",
                signal_name(signum),
                extra=fields(event="signal"),
            )
            self._callbacks.submit(callback)
        if signum in self._shutdown_signals:
            self._on_shutdown_signal(signum)


@final
class SignalChain:
    """Handlers for hosts that own the main thread (a web server): each asks for a shutdown and
    then hands the signal on to the handler that was there before, the host's.

    A handler only calls `on_signal(signum)`, which must take no lock (`Monitor.shutdown()`
    does not). When the previous handler was SIG_DFL (terminate), the termination waits until
    `done()` is called (the shutdown is over): the signal is then delivered again, and with
    nothing left to wait for, the default action happens. A SIG_IGN'd signal only shuts down.
    """

    def __init__(self, signals: tuple[int, ...], on_signal: Callable[[int], object]) -> None:
        self._signals = signals
        self._on_signal = on_signal
        self._previous: dict[int, object] = {}
        self._deferred: list[int] = []  # signals whose default action waits for done()
        self._done = False

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            msg = (
                "chain_signals=True installs signal handlers, which Python allows only in the "
                "main thread: call start() there, or leave chain_signals off and call shutdown()"
            )
            raise RuntimeError(msg)
        try:
            for signum in self._signals:
                self._previous[signum] = signal.signal(signum, self._handle)
        except BaseException:
            self.restore()
            raise

    def restore(self) -> None:
        """Put the previous handlers back where ours are still installed (main thread only)."""
        for signum, previous in list(self._previous.items()):
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, signal.SIG_DFL if previous is None else previous)  # type: ignore[arg-type]
            del self._previous[signum]

    def done(self) -> None:
        """The shutdown is over: deliver the deferred signals again, to the main thread."""
        self._done = True
        for signum in self._deferred:
            signal.pthread_kill(threading.main_thread().ident or 0, signum)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        previous = self._previous.get(signum)
        if callable(previous):
            self._on_signal(signum)
            previous(signum, frame)
        elif previous in (None, signal.SIG_DFL):
            if self._done:
                signal.signal(signum, signal.SIG_DFL)
                signal.raise_signal(signum)  # the default action, now that shutdown is over
                return
            self._deferred.append(signum)
            self._on_signal(signum)
            if self._done:  # done() came in between and may have missed it: act as it would
                signal.signal(signum, signal.SIG_DFL)
                signal.raise_signal(signum)
        else:
            self._on_signal(signum)


def wait_interruptibly(flag: Flag, timeout: float | None) -> bool:
    """`flag.wait(timeout)`, but on the main thread in slices of 0.1 s, so that a signal's
    handler (Ctrl-C's) runs while it waits: a signal sent to the process may be taken by another
    thread, and then does not interrupt an untimed lock wait. A timeout past what a thread can
    wait waits that long."""
    if threading.current_thread() is not threading.main_thread():
        return flag.wait(None if timeout is None else min(timeout, threading.TIMEOUT_MAX))
    deadline = None if timeout is None else time.monotonic() + timeout
    while not flag.is_set():
        left = _MAIN_THREAD_SLICE if deadline is None else deadline - time.monotonic()
        if left <= 0:
            return False
        flag.wait(min(left, _MAIN_THREAD_SLICE))
    return True


def signal_name(signum: int) -> str:
    """`"SIGTERM"` for 15; the number for signals Python has no name for."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def check_signals(arg: str, signals: object) -> tuple[int, ...]:
    """`signals` as a tuple of catchable signal numbers without repeats, or raise naming `arg`."""
    if isinstance(signals, (str, bytes, int)) or not isinstance(signals, Iterable):
        msg = f"{arg} must be an iterable of signal numbers, got {signals!r}"
        raise TypeError(msg)
    return tuple(dict.fromkeys(_check_signal(arg, signum) for signum in signals))


def check_on_signal(on_signal: object) -> dict[int, Callable[[], object]]:
    """`on_signal` as a dict of catchable signal numbers to callbacks, or raise naming it."""
    if on_signal is None:
        return {}
    if not isinstance(on_signal, Mapping):
        msg = f"on_signal must be a mapping of signal numbers to callables, got {on_signal!r}"
        raise TypeError(msg)
    return {
        _check_signal("on_signal", signum): check_callable(
            f"on_signal[{signum!r}]", callback, takes=0
        )
        for signum, callback in on_signal.items()
    }


def _check_signal(arg: str, signum: object) -> int:
    if not isinstance(signum, int) or isinstance(signum, bool):
        msg = f"{arg} must hold signal numbers, got {signum!r}"
        raise TypeError(msg)
    if signum not in signal.valid_signals():
        msg = f"{arg} holds {signum!r}, which is not a signal number on this platform"
        raise ValueError(msg)
    uncatchable = {getattr(signal, name, None) for name in ("SIGKILL", "SIGSTOP")}
    if signum in uncatchable:
        msg = f"{arg} holds {signal_name(signum)}, which cannot be caught"
        raise ValueError(msg)
    return int(signum)
