"""Threads started together and awaited together, and reading a thread's stack for a report."""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Final

from typing_extensions import Self, final

from ._logs import fields, get_logger

__all__ = ["ThreadGroup", "join_all", "thread_stack"]

logger = get_logger("threads")

# A thread of a group has left its work once it counted itself out; this only bounds the join
# that follows, for the moment the thread takes to end.
JOIN_GRACE: Final = 5.0


@final
class ThreadGroup:
    """A nursery of daemon threads: start them, count them out, keep the first error.

    ```python
    with ThreadGroup("routine 'poller'", on_error=lambda exc: stop_flag.set()) as group:
        group.start(loop, flag, name="routine:poller:2")
        loop(flag)  # work on this thread too
    # here every thread has ended; the first error (of any thread, or of the block) is raised
    ```

    A `BaseException` that escapes a thread's target, or the block, is the group's error if it
    is the first, and is passed to `on_error` (to stop the others). Leaving the block waits,
    without a timeout, until every thread has counted out: a group's threads end when asked,
    and whoever supervises the owner bounds the whole. Then they are joined within a grace, and
    any still alive is logged.

    `cond` is the condition the group counts under and notifies when the last thread leaves or
    an error is kept; an owner that waits for more than that passes its own, so that one
    lock guards both.
    """

    __slots__ = ("_name", "_on_error", "_threads", "cond", "error", "running")

    def __init__(
        self,
        name: str,
        *,
        on_error: Callable[[BaseException], object] | None = None,
        cond: threading.Condition | None = None,
    ) -> None:
        self._name = name
        self._on_error = on_error
        self._threads: list[threading.Thread] = []
        self.cond = cond if cond is not None else threading.Condition(threading.Lock())
        self.running = 0  # threads started and not yet counted out; guarded by `cond`
        self.error: BaseException | None = None  # the first error; guarded by `cond`

    def start(self, target: Callable[..., object], *args: object, name: str) -> None:
        """Run `target(*args)` on a new daemon thread called `name`.

        Raises what `Thread.start()` raises (RuntimeError when the process can't have more
        threads); the group is then as if this call had not happened.
        """
        thread = threading.Thread(target=self._run, args=(target, args), name=name, daemon=True)
        with self.cond:
            self.running += 1
        try:
            thread.start()
        except BaseException:
            with self.cond:
                self.running -= 1
                if not self.running:
                    self.cond.notify_all()
            raise
        self._threads.append(thread)

    def fail(self, error: BaseException) -> None:
        """Keep `error` if it is the first, and pass it to `on_error`."""
        with self.cond:
            if self.error is None:
                self.error = error
            self.cond.notify_all()
        if self._on_error is not None:
            self._on_error(error)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every thread has counted out; False if `timeout` ran out first."""
        with self.cond:
            return self.cond.wait_for(lambda: not self.running, timeout)

    def join(self, grace: float = JOIN_GRACE) -> list[threading.Thread]:
        """Join every thread within `grace` seconds; log and return those still alive."""
        alive = join_all(self._threads, grace)
        if alive:
            logger.error(
                "%s: threads still alive after they ended their work: %s",
                self._name,
                [thread.name for thread in alive],
                extra=fields(event="threads_alive"),
            )
        return alive

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self.fail(exc)
        self.wait()
        self.join(JOIN_GRACE)
        if self.error is not None and self.error is not exc:
            raise self.error

    def _run(self, target: Callable[..., object], args: tuple[object, ...]) -> None:
        try:
            target(*args)
        except BaseException as exc:  # noqa: BLE001 - kept: the group's owner raises it
            self.fail(exc)
        finally:
            with self.cond:
                self.running -= 1
                if not self.running:  # only the last wakes the owner: the others can't end it
                    self.cond.notify_all()

    def __repr__(self) -> str:
        return f"<ThreadGroup {self._name} running={self.running}>"


def join_all(threads: Iterable[threading.Thread], timeout: float) -> list[threading.Thread]:
    """Join every thread against one deadline `timeout` seconds away; return those still alive."""
    deadline = time.monotonic() + timeout
    alive = []
    for thread in threads:
        if thread.ident is None:  # never started
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            alive.append(thread)
    return alive


def thread_stack(thread: threading.Thread) -> str | None:
    """The formatted stack of a running thread, or None if it is not running."""
    frame = sys._current_frames().get(thread.ident) if thread.ident is not None else None
    if frame is None:
        return None
    return "".join(traceback.format_stack(frame))
