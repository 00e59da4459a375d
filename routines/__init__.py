"""Supervise long-running background routines on threads, and shut them down cleanly."""

from __future__ import annotations

from ._callback import CallbackRoutine
from ._clock import Clock
from ._combined import CombinedRoutine, StopOrder
from ._context import Routine, sleep, stopping
from ._errors import PoolClosed, PoolFull, RoutinesError
from ._monitor import Monitor, monitor
from ._periodic import REINVOKE_IMMEDIATELY, PeriodicRoutine, with_error_message
from ._pool import WorkerPool
from ._report import EventKind, OutcomeState, RoutineEvent, RoutineOutcome, ShutdownReport
from ._routine import BackgroundRoutine, NoopRoutine
from ._status import RoutineState, RoutineStatus
from ._supervise import GiveUpAction, RestartMode, RestartPolicy, supervised

__all__ = [
    "BackgroundRoutine",
    "CallbackRoutine",
    "Clock",
    "CombinedRoutine",
    "EventKind",
    "GiveUpAction",
    "Monitor",
    "NoopRoutine",
    "OutcomeState",
    "PeriodicRoutine",
    "PoolClosed",
    "PoolFull",
    "REINVOKE_IMMEDIATELY",
    "RestartMode",
    "RestartPolicy",
    "Routine",
    "RoutineEvent",
    "RoutineOutcome",
    "RoutineState",
    "RoutineStatus",
    "RoutinesError",
    "ShutdownReport",
    "StopOrder",
    "WorkerPool",
    "monitor",
    "sleep",
    "stopping",
    "supervised",
    "with_error_message",
]
