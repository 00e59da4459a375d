"""What the queues, leases and routines of `routines.durable` use of a store.

A `Store` is the public face; `StoreAccess` is its inside, one per store: the backend, lent for
one call at a time with the driver's errors turned into `StoreError`/`StoreUnavailable`, the
refusal to work in a process forked after the store was opened, and the in-process wake-ups of
the workers of each queue. A store whose database did not answer when it was opened opens at
the first call that finds it answering: until then every call raises `StoreUnavailable`, so a
web process boots and serves while its database is down, and the tier's routines wait for it
as they ride out any outage. `Store` hands it to the queues and leases it makes; a routine given a
store reaches it with `store_access(store)` in `_store.py`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from typing_extensions import final

from .._flag import Flag
from .._status import describe_error
from ._backend import Backend, JobStore, LeaseStore, Listener, Mark, MigrationStore, TickStore
from ._errors import StoreError, StoreUnavailable

__all__ = ["StoreAccess"]

R = TypeVar("R")


@final
class StoreAccess:
    """The backend of one store and the wake-ups of its queues' workers; thread-safe."""

    __slots__ = ("_backend", "_lock", "_opened", "_opening", "_pid", "_watchers", "timeout", "url")

    def __init__(self, backend: Backend, *, url: str, timeout: float) -> None:
        self._backend: Backend | None = backend
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._opened = False  # the backend's open() has succeeded
        self._opening = threading.Lock()  # one thread at a time tries to open it
        self.url = url  # the password, if any, masked
        self.timeout = timeout
        # The flags of the workers waiting on each queue, set after an enqueue to it commits
        # (other processes' enqueues reach them through the backend's listener).
        self._watchers: dict[str, set[Flag]] = {}

    @contextmanager
    def using(self, operation: str) -> Iterator[Backend]:
        """The backend, for one call named `operation`; its driver errors come out as
        `StoreError` or `StoreUnavailable`."""
        backend = self.backend()
        try:
            if not self._opened:
                self._open(backend, operation)
            yield backend
        except StoreError:
            raise
        except Exception as error:
            kind = backend.classify(error)
            if kind is None:
                raise
            if kind == "unavailable":
                msg = (
                    f"{operation}: the store {self.url} is unavailable (timeout "
                    f"{self.timeout:g}s): {describe_error(error)}"
                )
                raise StoreUnavailable(msg) from error
            msg = f"{operation}: the store {self.url} failed: {describe_error(error)}"
            raise StoreError(msg) from error

    @contextmanager
    def jobs(self, operation: str) -> Iterator[JobStore]:
        """The backend's queues, for one call (see `using`)."""
        with self.using(operation) as backend:
            yield self._role(backend.jobs, "jobs")

    @contextmanager
    def leases(self, operation: str) -> Iterator[LeaseStore]:
        with self.using(operation) as backend:
            yield self._role(backend.leases, "leases")

    @contextmanager
    def ticks(self, operation: str) -> Iterator[TickStore]:
        with self.using(operation) as backend:
            yield self._role(backend.ticks, "the ticks of schedules")

    @contextmanager
    def migration_log(self, operation: str) -> Iterator[MigrationStore]:
        with self.using(operation) as backend:
            yield self._role(backend.migration_log, "the state of migrations")

    def listener(self) -> Listener | None:
        """A listener for other processes' enqueues, made without a call to the database (it
        connects when it first waits), so a worker starts while the database is down."""
        return self._role(self.backend().jobs, "jobs").listener()

    def mark(self) -> Mark | None:
        """This process's liveness mark on the store, held for a worker while it runs; made
        without waiting for the database (it is taken as soon as it can be)."""
        return self._role(self.backend().jobs, "jobs").hold_mark()

    def doorbell(self, queue: str) -> Listener | None:
        """Where the database can't announce enqueues, a listener for the enqueues to `queue`
        of this host's other processes; made without a call to the database."""
        return self._role(self.backend().jobs, "jobs").doorbell(queue)

    def _role(self, role: R | None, what: str) -> R:
        if role is None:
            msg = f"the store {self.url} keeps no {what}: open a store that does for this"
            raise StoreError(msg)
        return role

    def _open(self, backend: Backend, operation: str) -> None:
        """Open the backend (connect, create or upgrade the schema) if no call has yet."""
        if not self._opening.acquire(timeout=self.timeout):
            msg = (
                f"{operation}: the store {self.url} is unavailable (timeout {self.timeout:g}s): "
                "another thread is still trying to open it"
            )
            raise StoreUnavailable(msg)
        try:
            if not self._opened:
                backend.open()
                self._opened = True
        finally:
            self._opening.release()

    @property
    def opened(self) -> bool:
        """Whether the backend has been opened: its database answered at least once."""
        return self._opened

    def backend(self) -> Backend:
        """The backend, if the store is open and was opened in this process."""
        self.check_process()
        backend = self._backend
        if backend is None:
            msg = f"the store {self.url} is closed: open a new one with durable.open_store()"
            raise RuntimeError(msg)
        return backend

    def check_process(self) -> None:
        if os.getpid() != self._pid:
            msg = (
                f"the store {self.url} was opened in process {self._pid}, before a fork: "
                "open the store after forking, in the process that uses it "
                "(with gunicorn, in the post_worker_init hook)"
            )
            raise RuntimeError(msg)

    def detach(self) -> Backend | None:
        """Take the backend out, to close it; None if it already was."""
        self.check_process()
        with self._lock:
            backend, self._backend = self._backend, None
        return backend

    # -- in-process wake-ups ----------------------------------------------------------------------

    def watch(self, queue: str, flag: Flag) -> None:
        """Set `flag` whenever a job is enqueued to `queue` in this process."""
        with self._lock:
            self._watchers.setdefault(queue, set()).add(flag)

    def unwatch(self, queue: str, flag: Flag) -> None:
        with self._lock:
            watchers = self._watchers.get(queue)
            if watchers is not None:
                watchers.discard(flag)
                if not watchers:
                    del self._watchers[queue]

    def enqueued(self, queue: str) -> None:
        """Jobs were enqueued to `queue` (committed): wake its workers in this process."""
        self.wake(queue)

    def wake(self, queue: str) -> None:
        """`queue` changed (jobs enqueued, put back or made due; paused or resumed): its
        workers in this process claim again."""
        with self._lock:
            flags = tuple(self._watchers.get(queue, ()))
        for flag in flags:
            flag.set()
