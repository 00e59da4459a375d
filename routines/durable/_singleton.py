"""`Singleton`: a routine that runs on one replica at a time, while this process holds a lease."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Final, Literal, TypeAlias

from typing_extensions import final

from .._context import Routine, running_as
from .._flag import Flag, wait_any
from .._lifecycle import Lifecycle
from .._logs import fields, get_logger
from .._status import RoutineStatus, supervised_status
from .._threads import ThreadGroup
from .._validate import (
    check_name,
    check_optional_seconds,
    check_routine,
    routine_name,
)
from ._errors import StoreUnavailable
from ._lease import Lease, keep_renewed
from ._outage import warn_unavailable
from ._store import Store, store_access

__all__ = ["Singleton"]

logger = get_logger("durable.lease")

_State: TypeAlias = Literal["idle", "waiting", "holding", "stopped", "failed"]
_STANDING_BY: Final = "standing by: another replica holds the lease"


@final
class Singleton:
    """Runs `routine` on one replica at a time: only while this process holds the lease `name`.

    It tries to take the lease every `retry_interval` (default `ttl / 3`); once it holds it, it
    starts the routine on its own thread and renews every `ttl / 3` (a renewal the store did not
    answer is tried again after `ttl / 12`). If the lease is lost, or no renewal has succeeded
    for `2 * ttl / 3` (watched by its own timer, not after a call that may block), it stops the
    routine before the lease can expire, waits for it to return, and goes back to trying.
    `stop()` stops the routine and releases the lease, so another replica takes over within its
    `retry_interval`. A routine that returns or raises on its own ends the Singleton the same
    way (so a restart policy applies). `ttl` must be at least 3 times the store's timeout.
    `token` is the fencing token of the lease it holds now, or None.

    The promise: at most one holder acts at a time, as long as a holder's pauses (a GC, a frozen
    VM) stay under `ttl / 3`; the fencing token covers the rest.
    """

    def __init__(
        self,
        routine: Routine,
        store: Store,
        *,
        name: str | None = None,
        ttl: float | timedelta = 30.0,
        retry_interval: float | timedelta | None = None,
    ) -> None:
        self.routine = check_routine("routine", routine)
        if not isinstance(store, Store):
            msg = f"store must be a durable store (durable.open_store()), got {store!r}"
            raise TypeError(msg)
        self.name: str = check_name(name) or routine_name(routine)
        self._lease = Lease(store_access(store), self.name, ttl)
        ttl_seconds = self._lease.ttl
        if ttl_seconds < 3 * store.timeout:
            msg = (
                f"ttl must be at least 3 times the store's timeout ({3 * store.timeout:g}s), so "
                f"that a renewal that waits out the timeout still comes in time; got {ttl!r}"
            )
            raise ValueError(msg)
        retry = check_optional_seconds("retry_interval", retry_interval, allow_zero=False)
        self._retry_interval = ttl_seconds / 3 if retry is None else retry
        self._lifecycle = Lifecycle()
        self._state: _State = "idle"

    @property
    def token(self) -> int | None:
        return self._lease.token

    def start(self) -> None:
        """Hold the lease and run the routine while holding it, until `stop()` or the routine
        ends by itself (then what it raised is raised here)."""
        with self._lifecycle.run(self.name) as go:
            try:
                if go:
                    _Hold(self._lease, self.routine, self.name, self._retry_interval).run(
                        self._lifecycle.flag, self._set_state
                    )
            except BaseException:
                self._state = "failed"
                raise
            self._state = "stopped"

    def stop(self) -> None:
        self._lifecycle.stop()

    def status(self) -> RoutineStatus:
        """The routine's status while this replica holds the lease; while it stands by, its
        counters and a last error that says so."""
        state = self._state
        inner = supervised_status(self.routine, self.name, "running", 0, None)
        if state == "holding":
            return inner
        if state == "waiting":
            return RoutineStatus(self.name, "running", last_error=_STANDING_BY, runs=inner.runs)
        return RoutineStatus(self.name, state if state != "failed" else "failed", runs=inner.runs)

    def _set_state(self, state: _State) -> None:
        self._state = state

    def __repr__(self) -> str:
        return f"<Singleton {self.name!r} of {self.routine!r}>"


class _Hold:
    """One `start()` of a Singleton: take the lease, run the routine while it holds."""

    def __init__(self, lease: Lease, routine: Routine, name: str, retry_interval: float) -> None:
        self.lease = lease
        self.routine = routine
        self.name = name
        self.retry_interval = retry_interval

    def run(self, stop: Flag, set_state: Callable[[_State], None]) -> None:
        while not stop.is_set():
            set_state("waiting")
            if not self._acquire():
                stop.wait(self.retry_interval)
                continue
            set_state("holding")
            logger.info(
                "singleton %r: holding the lease (token %s): starting its routine",
                self.name,
                self.lease.token,
                extra=fields(self.name, "lease_acquired", token=self.lease.token),
            )
            try:
                ended_by_itself = self._run_while_held(stop)
            except BaseException:  # the routine raised: it ends the Singleton, as its own end
                self._release()
                raise
            if ended_by_itself or stop.is_set():
                self._release()
                return

    def _acquire(self) -> bool:
        try:
            return self.lease.acquire()
        except StoreUnavailable as error:
            self._unavailable(error, "taking the lease")
            return False

    def _unavailable(self, error: StoreUnavailable, doing: str) -> None:
        warn_unavailable(logger, f"singleton {self.name!r}", doing, error, routine=self.name)

    def _release(self) -> None:
        try:
            self.lease.release()
        except StoreUnavailable as error:  # it expires by itself within ttl
            self._unavailable(error, "releasing the lease (it expires by itself)")

    def _run_while_held(self, stop: Flag) -> bool:
        """Run the routine while the lease holds; True if it ended by itself (its error, if
        any, is raised)."""
        ttl = self.lease.ttl
        routine_ended = Flag()
        lost = Flag()
        renewed = [time.monotonic()]  # when the last renewal succeeded
        # What the routine's thread sees as stopping: also true, at once, when the last renewal
        # is older than 2/3 of the ttl, so that a holder thawed from a long pause sees it in
        # its first `routines.stopping()` before the watchdog thread has even run.
        held = _HeldFlag(lambda: renewed[0] + 2 * ttl / 3)
        group = ThreadGroup(f"singleton {self.name!r}")

        told_to_stop = [False]  # the routine returned with `held` set: it was stopped

        def run_routine() -> None:
            try:
                with running_as(held):
                    self.routine.start()
            finally:
                told_to_stop[0] = held.is_set()
                routine_ended.set()

        def renew() -> None:
            def unavailable(error: StoreUnavailable) -> None:
                self._unavailable(error, "renewing the lease")

            def now_renewed() -> None:
                renewed[0] = time.monotonic()

            until = (stop, routine_ended, lost)
            if not keep_renewed(self.lease, until, unavailable=unavailable, renewed=now_renewed):
                lost.set()

        with group:
            group.start(run_routine, name=f"routine:{self.name}")
            group.start(renew, name=f"routine:{self.name}:lease")
            while not (stop.is_set() or routine_ended.is_set() or lost.is_set()):
                # Our own timer: a renewal that blocks can't keep the routine running past it.
                left = renewed[0] + 2 * ttl / 3 - time.monotonic()
                if left <= 0:
                    logger.warning(
                        "singleton %r: no renewal for 2/3 of the ttl: stopping its routine "
                        "before the lease can expire",
                        self.name,
                        extra=fields(self.name, "lease_lost"),
                    )
                    lost.set()
                    break
                wait_any((stop, routine_ended, lost), min(left, ttl / 3))
            if routine_ended.is_set() and told_to_stop[0] and not (stop.is_set() or lost.is_set()):
                # Thawed from a pause, the routine saw the renewal overdue before this thread
                # did: the lease may be gone, so this is a loss, not the routine's own end.
                logger.warning(
                    "singleton %r: no renewal for 2/3 of the ttl: its routine stopped",
                    self.name,
                    extra=fields(self.name, "lease_lost"),
                )
                lost.set()
            ended_by_itself = routine_ended.is_set() and not stop.is_set() and not lost.is_set()
            if lost.is_set() and not routine_ended.is_set():
                logger.warning(
                    "singleton %r: the lease was lost: stopping its routine",
                    self.name,
                    extra=fields(self.name, "lease_lost"),
                )
            if not routine_ended.is_set():
                held.set()
                self.routine.stop()
            lost.set()  # ends the renewals
        return ended_by_itself


class _HeldFlag(Flag):
    """A stop flag that is also set once `deadline()` (monotonic) has passed."""

    __slots__ = ("_deadline",)

    def __init__(self, deadline: Callable[[], float]) -> None:
        super().__init__()
        self._deadline = deadline

    def is_set(self) -> bool:
        return super().is_set() or time.monotonic() >= self._deadline()
