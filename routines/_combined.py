"""`CombinedRoutine`: several routines started, stopped and restarted as one."""

from __future__ import annotations

import threading
from typing import Literal, TypeAlias

from typing_extensions import final

from ._context import Routine, running_as
from ._flag import Flag
from ._helpers import Helpers
from ._lifecycle import Lifecycle
from ._threads import ThreadGroup
from ._validate import check_choice, check_name, check_routine, routine_name

__all__ = ["CombinedRoutine"]

StopOrder: TypeAlias = Literal["concurrent", "lifo", "fifo"]
_STOP_ORDERS: tuple[StopOrder, ...] = ("concurrent", "lifo", "fifo")


@final
class CombinedRoutine:
    """One routine made of several, each on its own thread (Erlang's one_for_all).

    `start()` returns when every child has returned. `stop()` asks; the stop sequence runs on
    `start()`'s thread: all at once (`"concurrent"`), or one after another in reverse start
    order (`"lifo"`) or start order (`"fifo"`), each waiting for the previous child to return.
    If a child raises, the others are stopped and `start()` raises the first error.
    """

    def __init__(
        self,
        *routines: Routine,
        name: str | None = None,
        stop_order: StopOrder = "concurrent",
    ) -> None:
        if not routines:
            msg = "CombinedRoutine needs at least one routine, got none"
            raise ValueError(msg)
        seen: set[int] = set()
        for index, routine in enumerate(routines):
            check_routine(f"routines[{index}]", routine)
            if id(routine) in seen:
                msg = f"routines[{index}] is passed twice: {routine!r}"
                raise ValueError(msg)
            seen.add(id(routine))
        self._children = routines
        self._child_names = tuple(routine_name(routine) for routine in routines)
        self.name = check_name(name) or f"combined[{', '.join(self._child_names)}]"
        self._stop_order: StopOrder = check_choice("stop_order", stop_order, _STOP_ORDERS)
        self._lifecycle = Lifecycle()

    def start(self) -> None:
        with self._lifecycle.run(self.name) as go:
            if go:
                _CombinedRun(
                    self.name,
                    self._children,
                    self._child_names,
                    self._stop_order,
                    self._lifecycle.flag,
                ).run()

    def stop(self) -> None:
        """Stop the children in the group's order; with no run going (before the first start,
        or after the group ended or failed), call every child's `stop()` at once, as a Monitor
        does at shutdown: a pool that failed, or never started, hands back its queue."""
        if not self._lifecycle.stop():  # decided under the lock a start() begins under
            for child in self._children:
                child.stop()

    def __repr__(self) -> str:
        return f"<CombinedRoutine {self.name!r}>"


class _CombinedRun:
    """One `start()` of a CombinedRoutine: the children's threads and the stop sequence."""

    def __init__(
        self,
        name: str,
        children: tuple[Routine, ...],
        child_names: tuple[str, ...],
        stop_order: StopOrder,
        stop_flag: Flag,
    ) -> None:
        self.children = children
        self.child_names = child_names
        self.concurrent = stop_order == "concurrent"
        self.stop_flag = stop_flag
        count = len(children)
        self.cond = threading.Condition(threading.Lock())
        self.group = ThreadGroup(f"routine {name!r}", cond=self.cond)
        self.done = [False] * count
        self.asked = [False] * count
        self.child_flags = [Flag() for _ in range(count)]
        self.stop_calls = Helpers(f"routine:{name}:stop", "a stop() call", serial=False)
        order = list(range(count))
        self.stop_sequence = order[::-1] if stop_order == "lifo" else order

    def run(self) -> None:
        self.stop_flag.subscribe(self._wake)
        try:
            with self.group:
                self._start_children()
                with self.cond:
                    while not all(self.done):
                        if self.stop_flag.is_set() or self.group.error is not None:
                            self._ask_next_to_stop()
                        self.cond.wait()
        finally:
            self.stop_flag.unsubscribe(self._wake)
            self.stop_calls.close()

    def _start_children(self) -> None:
        for index, name in enumerate(self.child_names):
            try:
                self.group.start(self._run_child, index, name=f"routine:{name}")
            except RuntimeError as exc:  # out of threads: the group fails as one
                with self.cond:
                    for never_started in range(index, len(self.done)):
                        self.done[never_started] = True
                self.group.fail(exc)
                return

    def _wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def _ask_next_to_stop(self) -> None:
        if self.concurrent:
            for index in range(len(self.done)):
                self._ask_to_stop(index)
            return
        for index in self.stop_sequence:
            if not self.done[index]:
                self._ask_to_stop(index)  # the next one waits until this one has returned
                return

    def _ask_to_stop(self, index: int) -> None:
        if self.asked[index] or self.done[index]:
            return
        self.asked[index] = True
        self.child_flags[index].set()
        self.stop_calls.submit(self.children[index].stop)

    def _run_child(self, index: int) -> None:
        try:
            with running_as(self.child_flags[index]):
                self.children[index].start()  # what it raises is the group's to keep
        finally:
            with self.cond:
                self.done[index] = True
                self.cond.notify_all()
