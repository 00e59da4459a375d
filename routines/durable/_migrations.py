"""Out-of-band migrations: data migrations too slow for a deploy, run in batches in the
background, their progress recorded, reversible (Sourcegraph's `oobmigration`)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Final, Protocol, runtime_checkable

from typing_extensions import final

from .._flag import Flag
from .._lifecycle import StatefulLifecycle
from .._logs import RepeatedFailures, fields, get_logger
from .._record import RunRecord
from .._status import RoutineStatus
from .._validate import check_name, check_seconds
from ._backend import MigrationStore
from ._errors import StoreUnavailable, error_report
from ._lease import Lease, keep_renewed
from ._model import MAX_TEXT, check_text
from ._outage import warn_unavailable
from ._store import Store, store_access

__all__ = ["Migration", "MigrationRunner"]

logger = get_logger("durable.migrations")

_LEASE_PREFIX: Final = "migration:"  # a migration's lease is named this and its id
_MAX_ID: Final = MAX_TEXT - len(_LEASE_PREFIX)  # so that its lease's name is a valid name
# A migration's lease lasts this many intervals (and at least 3 store timeouts), renewed every
# third of it while a batch runs: a runner that died mid-batch frees it that soon.
_LEASE_INTERVALS: Final = 5


@runtime_checkable
class Migration(Protocol):
    """An out-of-band migration: `up()` and `down()` each do one batch, idempotently;
    `progress()` says how far it is (0.0 to 1.0), computed from the data itself."""

    id: str  # stable across releases

    def progress(self) -> float: ...

    def up(self) -> None: ...

    def down(self) -> None: ...


@final
class MigrationRunner:
    """Runs out-of-band migrations in the background, one batch per interval each (a Routine).

    Every `interval` seconds, for each migration not yet complete in its direction (progress
    1.0 forward, 0.0 in reverse, as `store.set_migration_direction()` says), it takes the lease
    `migration:<id>` (so only one replica runs a migration's batch at a time), looks again
    (another replica may have run the last batch meanwhile), runs one batch (`up()` or
    `down()`), records an exception as an error instead of raising it (the last 100 are kept),
    recomputes `progress()` and stores it. A batch is never interrupted: a stop is seen
    between batches. The migrations are recorded in the store as the runner starts.
    """

    def __init__(
        self,
        store: Store,
        migrations: Iterable[Migration],
        *,
        interval: float | timedelta = 1.0,
        name: str = "migrations",
    ) -> None:
        if not isinstance(store, Store):
            msg = f"store must be a durable store (durable.open_store()), got {store!r}"
            raise TypeError(msg)
        self._store = store
        self._access = store_access(store)
        self._migrations = _check_migrations(migrations)
        self._interval = check_seconds("interval", interval, allow_zero=False)
        self.name: str = check_name(name) or "migrations"
        self._lease_ttl = max(3 * store.timeout, _LEASE_INTERVALS * self._interval, 1.0)
        self._lifecycle = StatefulLifecycle()
        self._record = RunRecord()
        self._failures = RepeatedFailures(max(60.0, 10 * self._interval))
        self._registered = False

    def start(self) -> None:
        """Run batches until `stop()` (a batch going on finishes first)."""
        self._lifecycle.run_through(self.name, lambda: self._run(self._lifecycle.flag))

    def stop(self) -> None:
        self._lifecycle.stop()

    @property
    def store(self) -> Store:
        """The store the migrations' progress is recorded in."""
        return self._store

    @property
    def migration_ids(self) -> tuple[str, ...]:
        """The ids of the migrations it runs, in the order given."""
        return tuple(migration.id for migration in self._migrations)

    def status(self) -> RoutineStatus:
        """Batches run here (`runs`), those that raised (`failures`), the last error."""
        return self._record.status(self.name, self._lifecycle.state)

    def __repr__(self) -> str:
        return f"<MigrationRunner {self.name!r}: {', '.join(m.id for m in self._migrations)}>"

    # -- on start()'s thread ------------------------------------------------------------------

    def _run(self, stop: Flag) -> None:
        store = self._store
        ttl = self._lease_ttl
        leases = {m.id: store.lease(_LEASE_PREFIX + m.id, ttl) for m in self._migrations}
        while not stop.is_set():
            began = time.monotonic()
            try:
                self._register()
                for migration in self._migrations:
                    if stop.is_set():
                        return
                    self._step(migration, leases[migration.id])
            except StoreUnavailable as error:
                warn_unavailable(
                    logger,
                    f"migration runner {self.name!r}",
                    "the store is unavailable",
                    error,
                    routine=self.name,
                    then=f"; trying again in {self._interval:g}s",
                )
            self._record.scheduled(time.time() + self._interval)
            stop.wait(max(0.0, began + self._interval - time.monotonic()))

    def _register(self) -> None:
        """Record the migrations in the store, so that it lists them before any batch ran."""
        if self._registered:
            return
        with self._access.migration_log("register_migrations") as log:
            log.register_migrations([migration.id for migration in self._migrations])
        self._registered = True

    def _step(self, migration: Migration, lease: Lease) -> None:
        """One batch of `migration`, if it is not complete and no other replica runs one."""
        if self._next_batch(migration) is None:
            return
        if not lease.acquire():
            return  # another replica runs this migration's batches now
        try:
            # Checked again under the lease: the replica that held it may have run the last
            # batch since the check above, and a complete migration runs no batch more.
            reverse = self._next_batch(migration)
            if reverse is not None:
                self._batch(migration, lease, reverse=reverse)
        finally:
            try:
                lease.release()
            except StoreUnavailable:  # it expires by itself
                logger.debug("migration %r: could not release its lease", migration.id)
        if reverse is not None:
            progress = self._progress(migration)
            if progress is not None:
                self._store_progress(migration, progress)

    def _next_batch(self, migration: Migration) -> bool | None:
        """The direction of `migration`'s next batch (True: down), or None when there is none:
        complete in its direction, or `progress()` failed. A new progress is stored."""
        with self._access.migration_log("migrations") as log:
            (status,) = log.migrations([migration.id])
        progress = self._progress(migration)
        if progress is None:
            return None
        if progress != status.progress:
            self._store_progress(migration, progress)
        if (progress <= 0.0) if status.reverse else (progress >= 1.0):
            return None
        return status.reverse

    def _batch(self, migration: Migration, lease: Lease, *, reverse: bool) -> None:
        """Run one batch, never interrupted; keep its lease alive meanwhile."""
        done = Flag()

        def unavailable(error: StoreUnavailable) -> None:
            warn_unavailable(
                logger,
                f"migration {migration.id!r}",
                "renewing its lease during a batch",
                error,
                routine=self.name,
                then="; trying again",
                migration=migration.id,
            )

        def renew() -> None:
            if not keep_renewed(lease, (done,), unavailable=unavailable):
                logger.warning(
                    "migration %r: its lease was lost during a batch",
                    migration.id,
                    extra=fields(self.name, "lease_lost", migration=migration.id),
                )

        renewer = threading.Thread(target=renew, name=f"routine:{self.name}:lease", daemon=True)
        renewer.start()
        began = time.monotonic()
        try:
            (migration.down if reverse else migration.up)()
        except Exception as error:  # noqa: BLE001 - recorded, and retried at the next interval
            self._record.ran(time.monotonic() - began, failure=error)
            batch = "down" if reverse else "up"
            self._failed(migration, error, f"a batch {batch} raised", "batch_failed")
        else:
            self._record.ran(time.monotonic() - began)
        finally:
            done.set()
            renewer.join(lease.ttl)

    def _progress(self, migration: Migration) -> float | None:
        """`migration.progress()`, checked; None (and an error recorded) if it fails."""
        try:
            progress = migration.progress()
            if isinstance(progress, bool) or not isinstance(progress, (int, float)):
                msg = f"progress() must return a number from 0.0 to 1.0, got {progress!r}"
                raise TypeError(msg)  # noqa: TRY301 - recorded like any error of the migration
            if not (math.isfinite(progress) and 0.0 <= progress <= 1.0):
                msg = f"progress() must return a number from 0.0 to 1.0, got {progress!r}"
                raise ValueError(msg)  # noqa: TRY301 - recorded like any error of the migration
        except Exception as error:  # noqa: BLE001 - recorded; tried again at the next interval
            self._failed(migration, error, "progress() failed", "progress_failed")
            return None
        return float(progress)

    def _failed(self, migration: Migration, error: Exception, what: str, event: str) -> None:
        """Log an error of `migration` (its repeats briefly) and record it in the store (the
        last 100 are kept)."""
        self._failures.log(
            logger,
            error,
            time.monotonic(),
            f"migration {migration.id!r}: {what}",
            routine=self.name,
            event=event,
        )
        self._write(
            migration,
            "record an error",
            "record_migration_error",
            lambda log: log.record_migration_error(migration.id, error_report(error)),
        )

    def _store_progress(self, migration: Migration, progress: float) -> None:
        self._write(
            migration,
            "store its progress",
            "store_migration_progress",
            lambda log: log.store_migration_progress(migration.id, progress),
        )

    def _write(
        self,
        migration: Migration,
        what: str,
        operation: str,
        write: Callable[[MigrationStore], object],
    ) -> None:
        """One write about `migration`; if the store is unavailable, a warning that it could
        not `what` (the next interval writes again)."""
        try:
            with self._access.migration_log(operation) as log:
                write(log)
        except StoreUnavailable as error:
            warn_unavailable(
                logger,
                f"migration {migration.id!r}",
                f"could not {what}",
                error,
                routine=self.name,
                migration=migration.id,
            )


def _check_migrations(migrations: object) -> tuple[Migration, ...]:
    if isinstance(migrations, (str, bytes)) or not isinstance(migrations, Iterable):
        msg = f"migrations must be an iterable of migrations, got {migrations!r}"
        raise TypeError(msg)
    checked: list[Migration] = []
    seen: set[str] = set()
    for index, migration in enumerate(migrations):
        for method in ("progress", "up", "down"):
            if not callable(getattr(migration, method, None)):
                msg = (
                    f"migrations[{index}] must have progress(), up() and down(), got "
                    f"{migration!r} without a callable {method}()"
                )
                raise TypeError(msg)
        migration_id = check_text(
            f"migrations[{index}].id", getattr(migration, "id", None), longest=_MAX_ID
        )
        if migration_id in seen:
            msg = f"migrations[{index}].id {migration_id!r} is given twice"
            raise ValueError(msg)
        seen.add(migration_id)
        checked.append(migration)
    if not checked:
        msg = "migrations must hold at least one migration, got none"
        raise ValueError(msg)
    return tuple(checked)
