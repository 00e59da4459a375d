"""Routines that outlive a process and span a fleet, on a database the app already has.

`open_store()` opens a store on SQLite (one host) or PostgreSQL (a fleet); `store.queue(name)`
gives a durable queue. Importing this package imports no database driver: psycopg is imported
when a `postgresql://` store is opened.
"""

from __future__ import annotations

from ._errors import Fail, MigrationsIncomplete, Retry, Snooze, StoreError, StoreUnavailable
from ._lease import Lease
from ._migrations import Migration, MigrationRunner
from ._model import (
    Job,
    JobState,
    LeaseInfo,
    MigrationError,
    MigrationStatus,
    QueueInfo,
    QueueLimits,
    ScheduleInfo,
    ScheduleRun,
)
from ._queue import Queue
from ._scheduled import Scheduled
from ._singleton import Singleton
from ._store import Store, open_store
from ._tasks import Task, Tasks
from ._worker import QueueWorker

__all__ = [
    "Fail",
    "Job",
    "JobState",
    "Lease",
    "LeaseInfo",
    "Migration",
    "MigrationError",
    "MigrationRunner",
    "MigrationStatus",
    "MigrationsIncomplete",
    "Queue",
    "QueueInfo",
    "QueueLimits",
    "QueueWorker",
    "Retry",
    "ScheduleInfo",
    "ScheduleRun",
    "Scheduled",
    "Singleton",
    "Snooze",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Task",
    "Tasks",
    "open_store",
]
