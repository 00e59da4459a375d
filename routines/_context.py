"""The routine protocol, and "the routine running on this thread".

Each thread keeps a stack of stop flags: the flag of every routine of this library whose work
runs on the thread, plus the one a Monitor sets when it stops the routine it started there.
`stopping()` and `sleep()` look at that stack.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable

from ._flag import Flag, wait_any
from ._validate import check_seconds

__all__ = ["Routine", "running_as", "sleep", "stopping"]


@runtime_checkable
class Routine(Protocol):
    """Anything with `start()` (runs the work, returns when done) and `stop()` (asks it to end).

    `stop()` is thread-safe, idempotent and quick, may be called before `start()` (which then
    returns at once) and from any thread. A routine may have a `name: str` attribute.
    """

    def start(self) -> None: ...

    def stop(self) -> None: ...


# The stop flags of the routines running on each thread, by thread id; a thread's entry exists
# only while it runs a routine. (A plain dict of lists costs an idle routine thread less than a
# threading.local; each thread only ever touches its own entry.)
_flags_by_thread: dict[int, list[Flag]] = {}
_no_flags: list[Flag] = []


def _flags() -> list[Flag]:
    return _flags_by_thread.get(threading.get_ident(), _no_flags)


class running_as:
    """Mark the current thread as running a routine whose stop flag is `flag`.

    A plain class, not a generator: every routine thread holds one for its whole life, and a
    generator-based context manager costs several times the memory.
    """

    __slots__ = ("_flag",)

    def __init__(self, flag: Flag) -> None:
        self._flag = flag

    def __enter__(self) -> None:
        _flags_by_thread.setdefault(threading.get_ident(), []).append(self._flag)

    def __exit__(self, *exc_info: object) -> None:
        ident = threading.get_ident()
        flags = _flags_by_thread[ident]
        flags.pop()
        if not flags:
            del _flags_by_thread[ident]


def stopping() -> bool:
    """True once the routine running on the current thread was asked to stop.

    False outside any routine.
    """
    return any(flag.is_set() for flag in _flags())


def sleep(seconds: float) -> bool:
    """A drop-in for `time.sleep` in routine loops: returns True early when asked to stop.

    Sleeps `seconds` of real time and returns False, unless the routine running on this thread
    is (or becomes) stopping, in which case it returns True at once. Outside a routine it is a
    plain sleep that returns False.
    """
    duration = check_seconds("seconds", seconds)
    flags = _flags()
    if not flags:
        time.sleep(duration)  # allowed: outside a routine there is nothing to wake the sleep
        return False
    return wait_any(tuple(flags), duration)
