"""One liveness mark per process and store, shared by the process's workers.

A driver knows how its engine keeps a mark (`MarkKeeper`: PostgreSQL a session-level advisory
lock on a connection of its own, SQLite an `flock` on a file beside the database); `SharedMark`
opens that mark for the first worker that holds it and closes it after the last. One mark per
process, not per worker, because what it tells a sweeper is whether a process lives, and each
PostgreSQL mark costs a connection: a process running five queues' workers holds one, not
five. Its workers then claim under one id (`worker_id`), the process's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from typing_extensions import final

if TYPE_CHECKING:
    from .._flag import Flag
    from ._backend import Mark

__all__ = ["MarkKeeper", "SharedMark"]


class MarkKeeper(Protocol):
    """An engine's mark, held from when it is made until `close()`."""

    @property
    def worker_id(self) -> str: ...

    def held(self) -> bool: ...

    def wait(self, timeout: float, stop: Flag) -> bool: ...

    def close(self) -> None:
        """Free the mark (the process lives on without one); never raises."""
        ...


@final
class SharedMark:
    """The mark of one store in this process: opened for its first holder, closed after its
    last (or when the store closes)."""

    __slots__ = ("_holders", "_keeper", "_lock", "_open")

    def __init__(self, open_mark: Callable[[], MarkKeeper]) -> None:
        self._open = open_mark
        self._lock = threading.Lock()
        self._keeper: MarkKeeper | None = None
        self._holders = 0

    def hold(self) -> Mark:
        with self._lock:
            keeper = self._keeper
            if keeper is None:
                keeper = self._keeper = self._open()
            self._holders += 1
        return _Hold(self, keeper)

    def close(self) -> None:
        """The store closes: the mark is freed, whoever still holds it."""
        with self._lock:
            keeper, self._keeper, self._holders = self._keeper, None, 0
        if keeper is not None:
            keeper.close()

    def _release(self, keeper: MarkKeeper) -> None:
        with self._lock:
            if keeper is not self._keeper:
                return  # freed already, when the store closed
            self._holders -= 1
            if self._holders:
                return
            self._keeper = None
        keeper.close()


@final
class _Hold:
    """One worker's hold of its process's mark."""

    __slots__ = ("_keeper", "_lock", "_released", "_shared")

    def __init__(self, shared: SharedMark, keeper: MarkKeeper) -> None:
        self._shared = shared
        self._keeper = keeper
        self._lock = threading.Lock()
        self._released = False

    @property
    def worker_id(self) -> str:
        return self._keeper.worker_id

    def held(self) -> bool:
        return not self._released and self._keeper.held()

    def wait(self, timeout: float, stop: Flag) -> bool:
        return not self._released and self._keeper.wait(timeout, stop)

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._shared._release(self._keeper)

    def __repr__(self) -> str:
        return f"<Mark {self.worker_id!r} held={self.held()}>"
