"""What the Monitor tells its caller: events as they happen, and how each routine ended."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from ._status import describe_error

__all__ = ["EventKind", "OutcomeState", "RoutineEvent", "RoutineOutcome", "ShutdownReport"]

OutcomeState: TypeAlias = Literal["stopped", "finished", "failed", "timed_out", "abandoned"]
EventKind: TypeAlias = Literal[
    "started", "stopped", "finished", "failed", "restarting", "gave_up", "stop_timed_out"
]


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


_GOOD_STATES: Final[frozenset[str]] = frozenset({"stopped", "finished"})


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
