"""`CombinedRoutine`: several routines started, stopped and restarted as one."""

from __future__ import annotations

import threading
from typing import Literal, TypeAlias

from typing_extensions import final

from ._context import Routine, running_as
from ._flag import Flag
from ._lifecycle import Lifecycle
from ._stopcalls import StopCaller
from ._threads import join_all
from ._validate import check_choice, check_name, check_routine, routine_name

__all__ = ["CombinedRoutine"]

StopOrder: TypeAlias = Literal["concurrent", "lifo", "fifo"]
_STOP_ORDERS: tuple[StopOrder, ...] = ("concurrent", "lifo", "fifo")
# A child's thread has returned from start() once it set its done flag; this bounds the join.
_JOIN_GRACE = 5.0


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
                _CombinedRun(self).run()

    def stop(self) -> None:
        self._lifecycle.stop()

    def __repr__(self) -> str:
        return f"<CombinedRoutine {self.name!r}>"


class _CombinedRun:
    """The state of one `start()` of a CombinedRoutine."""

    def __init__(self, combined: CombinedRoutine) -> None:
        self.combined = combined
        count = len(combined._children)
        self.cond = threading.Condition(threading.Lock())
        self.done = [False] * count
        self.asked = [False] * count
        self.child_flags = [Flag() for _ in range(count)]
        self.first_error: BaseException | None = None
        self.stop_caller = StopCaller(f"routine:{combined.name}:stop")
        order = list(range(count))
        self.stop_sequence = order[::-1] if combined._stop_order == "lifo" else order

    def run(self) -> None:
        stop_flag = self.combined._lifecycle.flag
        stop_flag.subscribe(self._wake)
        threads = [
            threading.Thread(
                target=self._run_child, args=(index,), name=f"routine:{name}", daemon=True
            )
            for index, name in enumerate(self.combined._child_names)
        ]
        try:
            for index, thread in enumerate(threads):
                try:
                    thread.start()
                except RuntimeError as exc:  # out of threads: the group fails as one
                    with self.cond:
                        for never_started in range(index, len(threads)):
                            self.done[never_started] = True
                        if self.first_error is None:
                            self.first_error = exc
                    break
            with self.cond:
                while not all(self.done):
                    if stop_flag.is_set() or self.first_error is not None:
                        self._ask_next_to_stop()
                    self.cond.wait()
        finally:
            stop_flag.unsubscribe(self._wake)
            self.stop_caller.close()
            join_all(threads, _JOIN_GRACE)
        if self.first_error is not None:
            raise self.first_error

    def _wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def _ask_next_to_stop(self) -> None:
        if self.combined._stop_order == "concurrent":
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
        self.stop_caller.call(self.combined._children[index].stop)

    def _run_child(self, index: int) -> None:
        error: BaseException | None = None
        with running_as(self.child_flags[index]):
            try:
                self.combined._children[index].start()
            except BaseException as exc:  # noqa: BLE001 - handed on: start() re-raises it
                error = exc
        with self.cond:
            self.done[index] = True
            if error is not None and self.first_error is None:
                self.first_error = error
            self.cond.notify_all()
