"""Supervise long-running background routines on threads, and shut them down cleanly."""

from __future__ import annotations

from ._callback import CallbackRoutine
from ._clock import Clock
from ._combined import CombinedRoutine
from ._context import Routine, sleep, stopping
from ._errors import PoolClosed, PoolFull, RoutinesError
from ._routine import BackgroundRoutine, NoopRoutine
from ._status import RoutineEvent, RoutineOutcome, RoutineStatus, ShutdownReport

__all__ = [
    "BackgroundRoutine",
    "CallbackRoutine",
    "Clock",
    "CombinedRoutine",
    "NoopRoutine",
    "PoolClosed",
    "PoolFull",
    "Routine",
    "RoutineEvent",
    "RoutineOutcome",
    "RoutineStatus",
    "RoutinesError",
    "ShutdownReport",
    "sleep",
    "stopping",
]
