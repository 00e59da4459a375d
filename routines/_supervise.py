"""Restart policies: when a routine that ended is started again, how soon, and when to give up."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal, TypeAlias

from typing_extensions import final

from ._context import Routine
from ._validate import (
    check_choice,
    check_fraction,
    check_int,
    check_routine,
    check_seconds,
    routine_name,
)

__all__ = ["RestartPolicy", "RestartWindow", "Supervised", "supervised"]

RestartMode: TypeAlias = Literal["always", "on-failure", "never"]
GiveUpAction: TypeAlias = Literal["shutdown", "continue"]
_RESTART_MODES: tuple[RestartMode, ...] = ("always", "on-failure", "never")
_GIVE_UP_ACTIONS: tuple[GiveUpAction, ...] = ("shutdown", "continue")


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
    # A list, not a deque: it holds at most max_restarts times, and every routine of a Monitor
    # has one, where an empty deque costs a 512-byte block.
    times: list[float] = field(default_factory=list)

    def next_restart(self, now: float) -> int | None:
        """Record a restart at `now` and return its number in the window; None to give up."""
        while self.times and self.times[0] <= now - self.policy.within_seconds:
            del self.times[0]
        if len(self.times) >= self.policy.max_restarts:
            return None
        self.times.append(now)
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


def supervised(routine: Routine, policy: RestartPolicy) -> Routine:
    """Give one routine a restart policy that overrides the Monitor's."""
    check_routine("routine", routine)
    if isinstance(routine, Supervised):
        routine = routine.routine
    if not isinstance(policy, RestartPolicy):
        msg = f"policy must be a RestartPolicy, got {policy!r}"
        raise TypeError(msg)
    return Supervised(routine, policy)
