"""Supervision: restart policies, and the decision that follows each run of a routine.

A `Supervisor` holds one routine's restart history. After every run it decides, as a pure step
on the time it is given, whether the routine starts again after a backoff (`Restart`) or its
supervision is over (`Final`), with the events that say so; it logs failures, the repeats of
a crash loop briefly. `run()` is the restart loop on a thread the Monitor gives it, under the
Monitor's lock and stopping flag; the Monitor acts on what it is told.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal, Protocol, TypeAlias, TypeVar

from typing_extensions import final

from ._clock import SYSTEM_CLOCK, Clock
from ._context import Routine, running_as
from ._flag import Flag
from ._logs import RepeatedFailures, fields, get_logger
from ._report import EventKind
from ._status import describe_error
from ._validate import (
    check_choice,
    check_fraction,
    check_int,
    check_routine,
    check_seconds,
    routine_name,
)

__all__ = [
    "Decision",
    "Final",
    "GiveUpAction",
    "RestartMode",
    "Restart",
    "RestartPolicy",
    "RestartWindow",
    "SupervisionHooks",
    "Supervised",
    "Supervisor",
    "plan_supervision",
    "supervised",
]

logger = get_logger("supervise")

RestartMode: TypeAlias = Literal["always", "on-failure", "never"]
GiveUpAction: TypeAlias = Literal["shutdown", "continue"]
_RESTART_MODES: tuple[RestartMode, ...] = ("always", "on-failure", "never")
_GIVE_UP_ACTIONS: tuple[GiveUpAction, ...] = ("shutdown", "continue")
Child = TypeVar("Child", contravariant=True)


@final
@dataclass(frozen=True)
class RestartPolicy:
    """How a Monitor restarts a routine whose `start()` raised (or returned).

    `"on-failure"` restarts a routine that raised; `"always"` also one that returned on its own;
    `"never"` restarts none. The n-th restart within the `within`-second window waits
    `min(backoff * 2**(n-1), max_backoff)`, varied by +- `jitter`. A failure that would need more
    than `max_restarts` restarts in the window is final: the routine is given up, and with
    `on_give_up="shutdown"` the whole Monitor shuts down. The `*_seconds`
    attributes hold the durations as float seconds.
    """

    restart: RestartMode = "on-failure"
    backoff: float | timedelta = 1.0
    max_backoff: float | timedelta = 60.0
    jitter: float = 0.1
    max_restarts: int = 5
    within: float | timedelta = 60.0
    on_give_up: GiveUpAction = "shutdown"
    backoff_seconds: float = field(init=False, repr=False, compare=False)
    max_backoff_seconds: float = field(init=False, repr=False, compare=False)
    within_seconds: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_choice("restart", self.restart, _RESTART_MODES)
        check_choice("on_give_up", self.on_give_up, _GIVE_UP_ACTIONS)
        backoff = check_seconds("backoff", self.backoff)
        max_backoff = check_seconds("max_backoff", self.max_backoff)
        if max_backoff < backoff:
            msg = f"max_backoff must be >= backoff ({backoff:g}), got {self.max_backoff!r}"
            raise ValueError(msg)
        within = check_seconds("within", self.within, allow_zero=False)
        check_fraction("jitter", self.jitter)
        check_int("max_restarts", self.max_restarts, minimum=0)
        # frozen: the durations in seconds are worked out once, here
        object.__setattr__(self, "backoff_seconds", backoff)
        object.__setattr__(self, "max_backoff_seconds", max_backoff)
        object.__setattr__(self, "within_seconds", within)

    def delay(self, restart_number: int, uniform: Callable[[], float] = random.random) -> float:
        """Seconds to wait before the `restart_number`-th restart (1-based) in the window."""
        doubled = self.backoff_seconds * 2.0 ** min(restart_number - 1, 64)
        base = min(doubled, self.max_backoff_seconds)
        return base * (1.0 + self.jitter * (2.0 * uniform() - 1.0))


@dataclass(slots=True)
class RestartWindow:
    """The restart times of one routine inside its policy's `within` window."""

    policy: RestartPolicy
    # A tuple, made again at each restart: it holds at most max_restarts times, and every
    # routine of a Monitor has a window, where an empty tuple costs nothing (an empty deque is a
    # 512-byte block, an empty list 56 bytes).
    times: tuple[float, ...] = ()

    def next_restart(self, now: float) -> int | None:
        """Record a restart at `now` and return its number in the window; None to give up."""
        since = now - self.policy.within_seconds
        times = tuple(time for time in self.times if time > since)
        if len(times) >= self.policy.max_restarts:
            self.times = times
            return None
        self.times = (*times, now)
        return len(self.times)


@final
class Supervised:
    """A routine with its own restart policy; made by `routines.supervised()`."""

    __slots__ = ("policy", "routine")

    def __init__(self, routine: Routine, policy: RestartPolicy) -> None:
        self.routine = routine
        self.policy = policy

    @property
    def name(self) -> str:
        return routine_name(self.routine)

    def start(self) -> None:
        self.routine.start()

    def stop(self) -> None:
        self.routine.stop()

    def __repr__(self) -> str:
        return f"supervised({self.routine!r}, {self.policy!r})"


def plan_supervision(
    routines: tuple[Routine, ...], default: RestartPolicy | None
) -> list[tuple[Routine, RestartPolicy]]:
    """Each routine given to a Monitor with its policy: its own (from `supervised()`) or
    `default`. Raises naming the argument for a non-routine, a bad default, or a repeat."""
    if default is None:
        default = RestartPolicy()
    elif not isinstance(default, RestartPolicy):
        msg = f"restart must be a RestartPolicy or None, got {default!r}"
        raise TypeError(msg)
    plan: list[tuple[Routine, RestartPolicy]] = []
    seen: set[int] = set()
    for index, given in enumerate(routines):
        check_routine(f"routines[{index}]", given)
        routine, policy = (
            (given.routine, given.policy) if isinstance(given, Supervised) else (given, default)
        )
        if id(routine) in seen:
            msg = f"routines[{index}] is passed twice to one Monitor: {routine!r}"
            raise ValueError(msg)
        seen.add(id(routine))
        plan.append((routine, policy))
    return plan


def supervised(routine: Routine, policy: RestartPolicy) -> Routine:
    """Give one routine a restart policy that overrides the Monitor's."""
    check_routine("routine", routine)
    if isinstance(routine, Supervised):
        routine = routine.routine
    if not isinstance(policy, RestartPolicy):
        msg = f"policy must be a RestartPolicy, got {policy!r}"
        raise TypeError(msg)
    return Supervised(routine, policy)


@final
@dataclass(frozen=True, slots=True)
class Restart:
    """Start the routine again after `delay` seconds: the `number`-th restart in its window."""

    delay: float
    number: int
    events: tuple[EventKind, ...]  # to emit now, in order


@final
@dataclass(frozen=True, slots=True)
class Final:
    """The routine's supervision is over: how it ended, and the events that say so.

    `shutdown_reason` is set when the policy gave up with `on_give_up="shutdown"`.
    """

    state: Literal["stopped", "finished", "failed"]
    error: BaseException | None
    events: tuple[EventKind, ...]
    shutdown_reason: str | None = None


Decision: TypeAlias = Restart | Final


class SupervisionHooks(Protocol[Child]):
    """What a `Supervisor` tells whoever runs it (the Monitor), under its lock; `child` is that
    one's record of the routine, handed back as it was given."""

    def started(self, child: Child) -> None: ...

    def restarting(self, child: Child, restart: Restart, error: BaseException | None) -> None: ...

    def ended(self, child: Child, final: Final) -> None: ...


@final
class Supervisor:
    """One routine's supervision: after each run, a restart after a backoff, or the end.

    `uniform` is the source of the backoff's jitter, a [0, 1) number per restart; `clock` times
    the restart window and the backoff waits.
    """

    __slots__ = (
        "_clock",
        "_failures",
        "_uniform",
        "last_error",
        "name",
        "policy",
        "restarts",
        "window",
    )

    def __init__(
        self,
        name: str,
        policy: RestartPolicy,
        *,
        uniform: Callable[[], float] = random.random,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.name = name
        self._clock = clock
        self.policy = policy
        self.window = RestartWindow(policy)
        self.restarts = 0
        self.last_error: BaseException | None = None  # of the last run that raised, if it did
        self._uniform = uniform
        # A crash loop repeats the same error: its traceback once, the repeats briefly; the
        # same error after a quiet spell longer than the policy's window is a new incident.
        self._failures = RepeatedFailures(policy.within_seconds)

    def after_run(self, error: BaseException | None, *, stop_asked: bool, now: float) -> Decision:
        """What follows a run that raised `error` (or returned), at monotonic time `now`.

        `stop_asked`: a stop was asked before the run ended, so it ends "stopped" whatever it
        did; read it as the run ends, or a stop asked a moment later would turn a crash into a
        clean stop.
        """
        if stop_asked:
            return Final("stopped", error, ("stopped",))
        policy = self.policy
        if error is not None:
            self.last_error = error
            self._log_failure(error, now)
            if policy.restart == "never":
                return Final("failed", error, ("failed",))
            happened: EventKind = "failed"
        else:
            self.last_error = None
            if policy.restart != "always":
                return Final("finished", None, ("finished",))
            happened = "finished"
        number = self.window.next_restart(now)
        if number is None:
            return self._give_up(error, happened)
        self.restarts += 1
        delay = policy.delay(number, self._uniform)
        logger.info(
            "routine %r: restart %d in %.3gs",
            self.name,
            number,
            delay,
            extra=fields(self.name, "restarting", restart=number, delay=delay),
        )
        return Restart(delay, number, (happened, "restarting"))

    def run(
        self,
        routine: Routine,
        lock: threading.Condition,
        stopping: Flag,
        hooks: SupervisionHooks[Child],
        child: Child,
    ) -> None:
        """Start `routine` on this thread, and again after each `Restart`, until a `Final`.

        `hooks` hears of each start, restart and the end, about `child`, under `lock`.
        `stopping`, set under `lock` when shutdown begins, marks this thread stopping, ends a
        backoff at once, and makes the supervision end (`interrupted()`) instead of starting
        the routine again.
        """
        clock = self._clock
        with running_as(stopping):
            delay = 0.0
            while True:
                clock.wait(stopping, delay)  # the backoff; shutdown ends it at once
                with lock:
                    # Checked under the lock: shutdown may set the mark just after the wait.
                    if stopping.is_set():
                        hooks.ended(child, self.interrupted())
                        return
                    hooks.started(child)
                error: BaseException | None = None
                try:
                    routine.start()
                except BaseException as exc:  # noqa: BLE001 - handed on to the report and the policy
                    error = exc
                # Read at once: a stop asked after start() ended must not turn a crash into a
                # clean stop just because the lock was taken a moment later.
                stop_asked = stopping.is_set()
                with lock:
                    decision = self.after_run(error, stop_asked=stop_asked, now=clock.now())
                    if isinstance(decision, Final):
                        hooks.ended(child, decision)
                        return
                    hooks.restarting(child, decision, error)
                delay = decision.delay

    def interrupted(self) -> Final:
        """Shutdown found the routine waiting: before its first start, or in a backoff."""
        if self.last_error is None:
            return Final("stopped", None, ("stopped",))
        return Final("failed", self.last_error, ("failed",))

    def _give_up(self, error: BaseException | None, happened: EventKind) -> Final:
        policy = self.policy
        logger.error(
            "routine %r: giving up after %d restarts within %gs",
            self.name,
            policy.max_restarts,
            policy.within_seconds,
            extra=fields(self.name, "gave_up"),
        )
        reason = None
        if policy.on_give_up == "shutdown":
            last = f", last error: {describe_error(error)}" if error is not None else ""
            reason = (
                f"routine {self.name!r} gave up after {policy.max_restarts} restarts "
                f"within {policy.within_seconds:g}s{last}"
            )
        return Final("failed", error, (happened, "gave_up"), shutdown_reason=reason)

    def _log_failure(self, error: BaseException, now: float) -> None:
        self._failures.log(logger, error, now, f"routine {self.name!r} failed", routine=self.name)

    def __repr__(self) -> str:
        return f"<Supervisor of {self.name!r}: {self.restarts} restarts>"
