"""Supervise long-running background routines on threads, and shut them down cleanly."""

from __future__ import annotations

from ._callback import CallbackRoutine
from ._clock import Clock
from ._combined import CombinedRoutine
from ._context import Routine, sleep, stopping
from ._errors import PoolClosed, PoolFull, RoutinesError
from ._monitor import Monitor, monitor
from ._periodic import REINVOKE_IMMEDIATELY, PeriodicRoutine, with_error_message
from ._pool import WorkerPool
from ._routine import BackgroundRoutine, NoopRoutine
from ._status import RoutineEvent, RoutineOutcome, RoutineStatus, ShutdownReport
from ._supervise import RestartPolicy, supervised

__all__ = [
    "BackgroundRoutine",
    "CallbackRoutine",
    "Clock",
    "CombinedRoutine",
    "Monitor",
    "NoopRoutine",
    "PeriodicRoutine",
    "PoolClosed",
    "PoolFull",
    "REINVOKE_IMMEDIATELY",
    "RestartPolicy",
    "Routine",
    "RoutineEvent",
    "RoutineOutcome",
    "RoutineStatus",
    "RoutinesError",
    "ShutdownReport",
    "WorkerPool",
    "monitor",
    "sleep",
    "stopping",
    "supervised",
    "with_error_message",
]
