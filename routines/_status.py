"""What a routine says about itself: its `RoutineStatus`, and errors described for people."""

from __future__ import annotations

import logging
import reprlib
from dataclasses import asdict, dataclass, field, replace
from typing import Literal, TypeAlias

from ._validate import routine_name

__all__ = [
    "DURATION_BUCKETS",
    "DurationHistogram",
    "RoutineState",
    "RoutineStatus",
    "describe_error",
    "describe_value",
    "error_dict",
    "error_text",
    "forked_status",
    "supervised_status",
]

RoutineState: TypeAlias = Literal[
    "idle", "running", "stopping", "stopped", "finished", "failed", "restarting"
]


# Upper bounds of the run-duration histograms, in seconds (Prometheus' defaults, and longer).
DURATION_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)


@dataclass(frozen=True)
class DurationHistogram:
    """How long runs took: `counts[i]` runs took at most `DURATION_BUCKETS[i]` seconds
    (cumulative, as Prometheus has them), `count` runs in all, `sum` seconds in all."""

    counts: tuple[int, ...]
    count: int
    sum: float

    def to_dict(self) -> dict[str, object]:
        return {
            "buckets": dict(zip(map(str, DURATION_BUCKETS), self.counts, strict=True)),
            "count": self.count,
            "sum": self.sum,
        }


def describe_error(error: BaseException | None) -> str | None:
    """`"ValueError: bad thing"`, or None for no error. Never raises (see `error_text`)."""
    if error is None:
        return None
    text = error_text(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def error_dict(error: BaseException | None) -> dict[str, str] | None:
    """An error as JSON takes it: `{"type": "ValueError", "message": "bad thing"}`."""
    if error is None:
        return None
    return {"type": type(error).__name__, "message": error_text(error)}


def describe_value(value: object) -> str:
    """A short `repr()` of a value (`reprlib.repr`), for a log line or an error message; never
    raises: a `__repr__` of foreign code may, and so does an int past CPython's digit limit."""
    try:
        return reprlib.repr(value)
    except Exception:  # noqa: BLE001 - a description must never raise
        return f"<{type(value).__name__} object: repr() failed>"


def error_text(error: BaseException) -> str:
    """The error's own text, and this never raises.

    An exception's `__str__` is foreign code, and may raise (an API error whose `__str__` reads
    a missing key): then its `repr()` stands in, and when that raises too, a marker alone.
    """
    try:
        return str(error)  # allowed: the guarded call every description goes through
    except Exception:  # noqa: BLE001 - a description must never raise
        try:
            return f"<str() failed> {error!r}"
        except Exception:  # noqa: BLE001 - a description must never raise
            return "<str() failed>"


@dataclass(frozen=True)
class RoutineStatus:
    """One routine's state at a moment; the counters are set by periodic routines and pools.

    `queued` is a pool's count of accepted items that have not started yet. `last_run_at` and
    `last_success_at` are when the last run, and the last run that did not fail, ended;
    `next_run_at` is when a periodic routine's next run is due. All three are wall-clock
    `time.time()` seconds, for people and dashboards (scheduling never uses them), or None.
    `paused` is True while a routine runs but takes no work because it was told to hold off
    (a durable queue worker whose queue is paused): its `state` stays `"running"`. `limited` is
    True while a routine's work is held to limits it shares with others (a durable queue worker
    whose queue has limits, as it last read them: it claims only what they allow).
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
    last_run_at: float | None = None
    last_success_at: float | None = None
    next_run_at: float | None = None
    paused: bool = False
    limited: bool = False
    # For metrics (a histogram of the run durations): not part of what a status says it is.
    run_durations: DurationHistogram | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, object]:
        """A dict that `json.dumps()` takes, with every field."""
        found = asdict(self)
        if self.run_durations is not None:
            found["run_durations"] = self.run_durations.to_dict()
        return found


def supervised_status(
    routine: object,
    name: str,
    state: RoutineState,
    restarts: int,
    error: BaseException | None,
) -> RoutineStatus:
    """A supervised routine's status: its supervisor's `state`, `restarts` and last `error`,
    with the routine's own counters if it has a `status()`."""
    last_error = describe_error(error)
    own = _own_status(routine)
    if own is None:
        return RoutineStatus(name, state, restarts, last_error)
    last_error = last_error or own.last_error
    return replace(own, name=name, state=state, restarts=restarts, last_error=last_error)


def _own_status(routine: object) -> RoutineStatus | None:
    """A routine's own `status()` (periodic routines and pools have one), if it gives one.

    It is the routine's code: whatever it raises is logged at debug level, and None returned.
    """
    status = getattr(routine, "status", None)
    if not callable(status):
        return None
    try:
        own = status()
    except Exception:
        name = routine_name(routine)
        logging.getLogger("routines.monitor").debug(
            "routine %r: status() raised", name, exc_info=True, extra={"routine": name}
        )
        return None
    return own if isinstance(own, RoutineStatus) else None


def forked_status(status: RoutineStatus, why: str) -> RoutineStatus:
    """`status` as seen from a process forked after the routine started: not running here."""
    return replace(status, state="stopped", last_error=why)
