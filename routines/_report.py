"""What a Monitor tells its caller: events as they happen, and how each routine ended."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final, Literal, TypeAlias

from typing_extensions import final

from ._context import Routine
from ._helpers import Helpers
from ._logs import fields, get_logger
from ._status import RoutineState, describe_error, error_dict
from ._threads import thread_stack

if TYPE_CHECKING:
    from . import _supervise

__all__ = [
    "EventKind",
    "OutcomeState",
    "Reporter",
    "ReportingHooks",
    "RoutineEvent",
    "RoutineOutcome",
    "RoutineRecord",
    "ShutdownReport",
    "report_headline",
]

logger = get_logger("monitor")

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

    def to_dict(self) -> dict[str, object]:
        """A dict that `json.dumps()` takes; the error as its type and message."""
        return {
            "kind": self.kind,
            "routine": self.routine,
            "time": self.time,
            "error": error_dict(self.error),
        }


@dataclass(frozen=True)
class RoutineOutcome:
    """How one routine ended; `stack` is its thread's stack if it did not stop in time."""

    name: str
    state: OutcomeState
    error: BaseException | None = None
    stack: str | None = None

    def to_dict(self) -> dict[str, object]:
        """A dict that `json.dumps()` takes; the error as its type and message."""
        return {
            "name": self.name,
            "state": self.state,
            "error": error_dict(self.error),
            "stack": self.stack,
        }


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

    def to_dict(self) -> dict[str, object]:
        """A dict that `json.dumps()` takes: every field, `ok` and `exit_code`."""
        return {
            "reason": self.reason,
            "signal": self.signal,
            "forced": self.forced,
            "duration": self.duration,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "outcomes": [outcome.to_dict() for outcome in self.outcomes],
        }

    def __str__(self) -> str:
        lines = [report_headline(self)]
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


def report_headline(report: ShutdownReport) -> str:
    """The report's first line: what `str(report)` prints first, and the Monitor logs."""
    verdict = "ok" if report.ok else "NOT ok"
    forced = ", forced" if report.forced else ""
    return f"shutdown ({report.reason}) in {report.duration:.3f}s{forced}: {verdict}"


@final
class Reporter:
    """A Monitor's side of telling: its events, delivered to `on_event` one at a time and in
    order on a helper thread, and the outcome its report gives each routine."""

    __slots__ = ("_events", "_on_event", "_open")

    def __init__(self, on_event: Callable[[RoutineEvent], object] | None) -> None:
        self._on_event = on_event
        self._events = (
            None
            if on_event is None
            else Helpers("routines:monitor:events", "on_event", serial=True)
        )
        self._open = True

    def emit(self, routine: str, kind: EventKind, error: BaseException | None = None) -> None:
        """Deliver an event, unless the report is written (`seal()`)."""
        if self._events is None or not self._open:
            return
        event = RoutineEvent(kind, routine, time.time(), error)
        on_event = self._on_event
        assert on_event is not None
        self._events.submit(lambda: on_event(event))

    def seal(self) -> None:
        """The report is written: events from now on are dropped."""
        self._open = False

    def close(self, grace: float) -> None:
        """Deliver the events queued so far for at most `grace` seconds; drop the rest."""
        self._open = False
        if self._events is not None:
            self._events.close(grace)

    def at_deadline(
        self, record: RoutineRecord, *, forced: bool, stop_timeout: float
    ) -> RoutineOutcome:
        """The outcome the report gives a routine: how it ended if it did (with a raise of its
        `stop()`, or a `stop()` that never returned, shown too), else timed out or abandoned."""
        name, stop_error = record.name, record.stop_error
        if record.stop_pending and not forced:
            logger.warning(
                "routine %r: its stop() has not returned", name, extra=fields(name, "stop_hung")
            )
            stop_error = TimeoutError(
                f"stop() did not return within stop_timeout ({stop_timeout:g}s)"
            )
        if record.outcome is not None:
            if record.outcome.error is None and stop_error is not None:
                return replace(record.outcome, error=stop_error)
            return record.outcome
        stack = thread_stack(record.thread) if record.thread is not None else None
        if forced:
            logger.warning(
                "routine %r abandoned, still running", name, extra=fields(name, "abandoned")
            )
            return RoutineOutcome(name, "abandoned", stop_error, stack)
        logger.warning(
            "routine %r did not stop within %gs (its thread's stack is in the report)",
            name,
            stop_timeout,
            extra=fields(name, "stop_timed_out", thread_stack=stack),
        )
        self.emit(name, "stop_timed_out", stop_error)
        return RoutineOutcome(name, "timed_out", stop_error, stack)

    def report(
        self,
        records: Iterable[RoutineRecord],
        *,
        reason: str,
        signal: int | None,
        forced: bool,
        stop_timeout: float,
        started: float,
    ) -> ShutdownReport:
        """The report of a shutdown that began at `started` (monotonic): each routine's outcome
        `at_deadline()`; events from now on are dropped."""
        outcomes = tuple(
            self.at_deadline(record, forced=forced, stop_timeout=stop_timeout) for record in records
        )
        self.seal()
        return ShutdownReport(reason, signal, forced, time.monotonic() - started, outcomes)


class RoutineRecord:
    """A Monitor's record of one routine, guarded by the Monitor's lock: what its status and
    its outcome in the report are made of. Except `stop_error` and `stop_pending`, which
    `StopCalls` writes when a stop() returns without that lock, the error first: a reader
    under the lock that sees `stop_pending` False sees the error too."""

    __slots__ = (
        "name",
        "outcome",
        "routine",
        "state",
        "stop_error",
        "stop_pending",
        "supervisor",
        "thread",
    )

    def __init__(self, routine: Routine, supervisor: _supervise.Supervisor) -> None:
        self.routine = routine
        self.name = supervisor.name
        self.supervisor = supervisor
        self.thread: threading.Thread | None = None
        self.state: RoutineState = "idle"
        self.stop_error: BaseException | None = None
        self.stop_pending = False  # its stop() was called and has not returned yet
        self.outcome: RoutineOutcome | None = None


@final
class ReportingHooks:
    """A Monitor's side of each routine's supervision (`SupervisionHooks`), under its lock: the
    record's state and the events; a final outcome goes to the Monitor's `finish`. One per
    Monitor, not three callbacks per routine: those cost about 670 bytes a routine (benchmarks,
    figure 6)."""

    __slots__ = ("_finish", "_reporter")

    def __init__(
        self, reporter: Reporter, finish: Callable[[RoutineRecord, _supervise.Final], None]
    ) -> None:
        self._reporter = reporter
        self._finish = finish

    def started(self, child: RoutineRecord) -> None:
        child.state = "running"
        self._reporter.emit(child.name, "started")

    def restarting(
        self, child: RoutineRecord, restart: _supervise.Restart, error: BaseException | None
    ) -> None:
        child.state = "restarting"
        for event in restart.events:
            self._reporter.emit(child.name, event, error)

    def ended(self, child: RoutineRecord, final: _supervise.Final) -> None:
        self._finish(child, final)
