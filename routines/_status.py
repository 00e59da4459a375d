"""What the Monitor tells its caller: statuses, events, outcomes and the shutdown report."""

from __future__ import annotations

import signal as _signal
from dataclasses import dataclass
from typing import Literal, TypeAlias

__all__ = [
    "EventKind",
    "OutcomeState",
    "RoutineEvent",
    "RoutineOutcome",
    "RoutineState",
    "RoutineStatus",
    "ShutdownReport",
    "describe_error",
    "error_text",
]

RoutineState: TypeAlias = Literal[
    "idle", "running", "stopping", "stopped", "finished", "failed", "restarting"
]
OutcomeState: TypeAlias = Literal["stopped", "finished", "failed", "timed_out", "abandoned"]
EventKind: TypeAlias = Literal[
    "started", "stopped", "finished", "failed", "restarting", "gave_up", "stop_timed_out"
]


def describe_error(error: BaseException | None) -> str | None:
    """`"ValueError: bad thing"`, or None for no error. Never raises (see `error_text`)."""
    if error is None:
        return None
    text = error_text(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def error_text(error: BaseException) -> str:
    """`str(error)`, which never raises here.

    An exception's `__str__` is foreign code, and may raise (an API error whose `__str__` reads
    a missing key): then its `repr()` stands in, and when that raises too, a marker alone.
    """
    try:
        return str(error)
    except Exception:  # noqa: BLE001 - a description must never raise
        try:
            return f"<str() failed> {error!r}"
        except Exception:  # noqa: BLE001 - a description must never raise
            return "<str() failed>"


@dataclass(frozen=True)
class RoutineStatus:
    """One routine's state at a moment; the counters are set by periodic routines and pools.

    `queued` is a pool's count of accepted items that have not started yet.
    """

    name: str
    state: RoutineState
    restarts: int = 0
    last_error: str | None = None
    runs: int = 0
    failures: int = 0
    missed_runs: int = 0
    overdue_runs: int = 0
    last_run_duration: float | None = None
    queued: int = 0


@dataclass(frozen=True)
class RoutineEvent:
    """Something that happened to a supervised routine, delivered to `Monitor(on_event=...)`."""

    kind: EventKind
    routine: str
    time: float  # time.time(), for people and logs; scheduling never uses it
    error: BaseException | None = None


@dataclass(frozen=True)
class RoutineOutcome:
    """How one routine ended; `stack` is its thread's stack if it did not stop in time."""

    name: str
    state: OutcomeState
    error: BaseException | None = None
    stack: str | None = None


_GOOD_STATES: frozenset[str] = frozenset({"stopped", "finished"})


@dataclass(frozen=True)
class ShutdownReport:
    """What a Monitor's shutdown did: why, how long, and how every routine ended."""

    reason: str
    signal: int | None
    forced: bool
    duration: float
    outcomes: tuple[RoutineOutcome, ...]

    @property
    def ok(self) -> bool:
        """Every routine stopped or finished; none failed, timed out or was abandoned."""
        return all(outcome.state in _GOOD_STATES for outcome in self.outcomes)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "NOT ok"
        forced = ", forced" if self.forced else ""
        lines = [f"shutdown ({self.reason}) in {self.duration:.3f}s{forced}: {verdict}"]
        rows: list[tuple[str, str, str]] = [
            (o.name, o.state, describe_error(o.error) or "-") for o in self.outcomes
        ]
        rows = rows or [("(no routines)", "", "")]
        name_width = max(len("routine"), *(len(row[0]) for row in rows))
        state_width = max(len("state"), *(len(row[1]) for row in rows))
        lines.append(f"  {'routine':<{name_width}}  {'state':<{state_width}}  error")
        lines.extend(
            f"  {name:<{name_width}}  {state:<{state_width}}  {error}".rstrip()
            for name, state, error in rows
        )
        return "\n".join(lines)


def signal_name(signum: int) -> str:
    """`"SIGTERM"` for 15; the number for signals Python has no name for."""
    try:
        return _signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
