"""The exceptions this library raises."""

from __future__ import annotations

__all__ = ["PoolClosed", "PoolFull", "RoutinesError"]


class RoutinesError(Exception):
    """Base class of the exceptions that `routines` raises."""


class PoolFull(RoutinesError):
    """`WorkerPool.submit` found the buffer full and was told not to wait (longer)."""


class PoolClosed(RoutinesError):
    """`WorkerPool.submit` was called after the pool was stopped."""
