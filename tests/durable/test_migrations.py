"""Out-of-band migrations in this process, on both backends: batches until complete, progress
from the data, errors recorded and retried, direction switched at run time, one batch at a time
across runners, stop between batches, `require_migrations_complete`.
(Real processes and SIGKILL: test_migration_processes.py.)"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

import routines
from routines import durable

from .conftest import Target
from .support import path_of, poll, sqlite_lease, write_lock
from helpers import WAIT, LogWatcher, join


class Doubling:
    """A migration over rows in memory: `up()` doubles the next `batch` rows, `down()` undoes
    them; both idempotent. Counts the batches running at once."""

    def __init__(self, id: str = "double", rows: int = 20, batch: int = 5) -> None:
        self.id = id
        self.values: list[int | None] = [None] * rows
        self.batch = batch
        self.lock = threading.Lock()
        self.running = 0
        self.most_at_once = 0
        self.batches = 0
        self.fail_next: BaseException | None = None
        self.hold: threading.Event | None = None

    def progress(self) -> float:
        with self.lock:
            return sum(value is not None for value in self.values) / len(self.values)

    def _batch(self, forward: bool) -> None:
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            self.batches += 1
            error, self.fail_next = self.fail_next, None
        try:
            if self.hold is not None:
                self.hold.wait(WAIT)
            if error is not None:
                raise error
            with self.lock:
                todo = [
                    index for index, value in enumerate(self.values) if (value is None) == forward
                ][: self.batch]
                for index in todo:
                    self.values[index] = index * 2 if forward else None
        finally:
            with self.lock:
                self.running -= 1

    def up(self) -> None:
        self._batch(True)

    def down(self) -> None:
        self._batch(False)


@pytest.fixture
def run() -> Iterator[Callable[[routines.Routine], threading.Thread]]:
    started: list[tuple[routines.Routine, threading.Thread]] = []

    def start(routine: routines.Routine) -> threading.Thread:
        thread = threading.Thread(target=routine.start, name="test-migrations")
        thread.start()
        started.append((routine, thread))
        return thread

    yield start
    for routine, thread in started:
        routine.stop()
        join(thread)


def status_of(store: durable.Store, migration_id: str) -> durable.MigrationStatus | None:
    return next((s for s in store.migrations() if s.id == migration_id), None)


def test_batches_run_until_the_migration_is_complete(
    store: durable.Store, run: Callable[..., threading.Thread]
) -> None:
    migration = Doubling()
    runner = durable.MigrationRunner(store, [migration], interval=0.01)
    run(runner)
    assert poll(lambda: (s := status_of(store, "double")) is not None and s.complete)
    status = status_of(store, "double")
    assert status is not None
    assert (status.progress, status.reverse, status.errors) == (1.0, False, ())
    assert migration.values == [index * 2 for index in range(20)]
    assert migration.batches == 4
    store.require_migrations_complete(["double"])
    assert runner.status().runs == 4


def test_the_runner_records_its_migrations_before_any_batch(
    store: durable.Store, run: Callable[..., threading.Thread]
) -> None:
    migration = Doubling()
    migration.hold = threading.Event()
    run(durable.MigrationRunner(store, [migration], interval=0.01))
    try:
        assert poll(lambda: status_of(store, "double") is not None)
        status = status_of(store, "double")
        assert status is not None
        assert status.progress == 0.0
    finally:
        migration.hold.set()


def test_a_raising_batch_is_recorded_and_retried_at_the_next_interval(
    store: durable.Store, run: Callable[..., threading.Thread]
) -> None:
    migration = Doubling()
    migration.fail_next = RuntimeError("deadlock detected")
    with LogWatcher():
        runner = durable.MigrationRunner(store, [migration], interval=0.01)
        run(runner)
        assert poll(lambda: (s := status_of(store, "double")) is not None and s.complete)
    status = status_of(store, "double")
    assert status is not None
    (error,) = status.errors
    assert "RuntimeError: deadlock detected" in error.error
    assert runner.status().failures == 1


def test_reversing_midway_runs_down_back_to_zero(
    store: durable.Store, run: Callable[..., threading.Thread]
) -> None:
    migration = Doubling(rows=40, batch=2)
    run(durable.MigrationRunner(store, [migration], interval=0.01))
    assert poll(lambda: 0.2 <= migration.progress() < 1.0)
    store.set_migration_direction("double", reverse=True)
    assert poll(lambda: (s := status_of(store, "double")) is not None and s.complete)
    status = status_of(store, "double")
    assert status is not None
    assert (status.reverse, status.progress) == (True, 0.0)
    assert migration.values == [None] * 40
    with pytest.raises(durable.MigrationsIncomplete, match="double"):
        store.require_migrations_complete(["double"])


def test_two_runners_of_one_migration_never_run_a_batch_at_once(
    store: durable.Store, target: Target, run: Callable[..., threading.Thread]
) -> None:
    migration = Doubling(rows=60, batch=2)
    run(durable.MigrationRunner(store, [migration], interval=0.001))
    run(durable.MigrationRunner(target.open(), [migration], interval=0.001))
    assert poll(lambda: (s := status_of(store, "double")) is not None and s.complete)
    assert migration.most_at_once == 1


class CompletedByAnother(Doubling):
    """Half done at the runner's first look, complete at every later one: another replica ran
    the last batch between the runner's check and its taking of the lease."""

    def __init__(self) -> None:
        super().__init__()
        self.looks = 0

    def progress(self) -> float:
        with self.lock:
            self.looks += 1
            return 0.5 if self.looks == 1 else 1.0


def test_a_migration_completed_while_the_runner_took_its_lease_runs_no_batch_more(
    store: durable.Store, run: Callable[..., threading.Thread]
) -> None:
    """The check is made again under the lease (two real runners once ran a 21st batch of a
    migration of 20: the check said one more, and the other runner had run it before the lease
    was free)."""
    migration = CompletedByAnother()
    run(durable.MigrationRunner(store, [migration], interval=0.01))
    assert poll(lambda: (s := status_of(store, "double")) is not None and s.complete)
    assert poll(lambda: migration.looks >= 3)  # and it looked again at the next interval
    assert migration.batches == 0


def test_a_renewal_the_store_did_not_answer_is_tried_again_before_the_lease_runs_out(
    sqlite_target: Target, run: Callable[..., threading.Thread]
) -> None:
    # The lease lasts 3 store timeouts (1.5 s) and is renewed a third in. That renewal waits out
    # the timeout on a write lock held here and fails two thirds in: the next try must come
    # before the lease runs out (and another runner could start a batch), not a third later.
    store = sqlite_target.open(timeout=0.5)
    migration = Doubling()
    migration.hold = threading.Event()
    runner = durable.MigrationRunner(store, [migration], interval=0.01)

    def lease() -> tuple[int, int]:
        return sqlite_lease(sqlite_target, "migration:double")

    with LogWatcher() as logs:
        run(runner)
        assert poll(lambda: migration.running == 1)
        token, expires_at = lease()
        with write_lock(path_of(sqlite_target)):
            logs.wait_for("renewing its lease during a batch")
        assert poll(lambda: lease()[1] > expires_at or "lease was lost" in logs.text())
        assert "lease was lost" not in logs.text()
        assert lease()[0] == token  # renewed by its holder, not taken by another
    migration.hold.set()


def test_a_stop_lets_the_batch_going_on_finish(
    store: durable.Store, run: Callable[..., threading.Thread]
) -> None:
    migration = Doubling()
    migration.hold = threading.Event()
    runner = durable.MigrationRunner(store, [migration], interval=0.01)
    thread = run(runner)
    assert poll(lambda: migration.running == 1)
    runner.stop()
    assert thread.is_alive()  # the batch is not interrupted
    migration.hold.set()
    join(thread)
    assert migration.progress() == 0.25  # that batch, and no other
    assert migration.batches == 1


def test_a_progress_that_is_not_a_fraction_is_recorded_as_an_error(
    store: durable.Store, run: Callable[..., threading.Thread]
) -> None:
    class Broken(Doubling):
        def progress(self) -> float:
            return 1.5

    with LogWatcher():
        run(durable.MigrationRunner(store, [Broken()], interval=0.01))
        assert poll(lambda: (s := status_of(store, "double")) is not None and bool(s.errors))
    status = status_of(store, "double")
    assert status is not None
    assert "progress() must return a number from 0.0 to 1.0, got 1.5" in status.errors[0].error


def test_the_last_100_errors_are_kept(store: durable.Store) -> None:
    from .support import backend_of

    backend = backend_of(store)
    backend.register_migrations(["noisy"])
    for n in range(103):
        backend.record_migration_error("noisy", f"error {n}")
    status = status_of(store, "noisy")
    assert status is not None
    assert len(status.errors) == 100
    assert (status.errors[0].error, status.errors[-1].error) == ("error 102", "error 3")


def test_require_migrations_complete_names_every_incomplete_id(store: durable.Store) -> None:
    from .support import backend_of

    backend = backend_of(store)
    backend.register_migrations(["done", "halfway", "reversed"])
    backend.store_migration_progress("done", 1.0)
    backend.store_migration_progress("halfway", 0.5)
    backend.store_migration_progress("reversed", 1.0)
    store.set_migration_direction("reversed", reverse=True)
    store.require_migrations_complete(["done"])
    with pytest.raises(durable.MigrationsIncomplete) as caught:
        store.require_migrations_complete(["done", "halfway", "never-seen", "reversed"])
    assert caught.value.ids == ("halfway", "never-seen", "reversed")
    for migration_id in caught.value.ids:
        assert migration_id in str(caught.value)


def test_under_a_monitor_it_shows_in_status(store: durable.Store) -> None:
    monitor = routines.Monitor(
        durable.MigrationRunner(store, [Doubling()], interval=0.01), signals=()
    )
    monitor.start()
    try:
        assert poll(lambda: (s := status_of(store, "double")) is not None and s.complete)
        (status,) = monitor.status()
        assert (status.name, status.state, status.runs) == ("migrations", "running", 4)
    finally:
        monitor.shutdown()
        assert monitor.wait(WAIT) is not None


def test_a_runners_identity_is_never_taken_from_its_migrations(store: durable.Store) -> None:
    # OPERATIONS.md section 9: the runner's default name is a constant, and the fleet-wide
    # identity of each migration (its lease, migration:<id>) is the id it must have.
    assert durable.MigrationRunner(store, [Doubling("a")]).name == "migrations"
    assert durable.MigrationRunner(store, [Doubling("b")], name="backfill").name == "backfill"
    without_id = Doubling()
    del without_id.id
    with pytest.raises(TypeError, match=r"migrations\[0\]\.id"):
        durable.MigrationRunner(store, [without_id])


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"store": "sqlite:///x.db"}, TypeError, "store"),
        ({"migrations": []}, ValueError, "at least one"),
        ({"migrations": "double"}, TypeError, "migrations"),
        ({"migrations": [object()]}, TypeError, r"migrations\[0\]"),
        ({"migrations": [Doubling(), Doubling()]}, ValueError, "twice"),
        ({"migrations": [Doubling("m" * 191)]}, ValueError, r"migrations\[0\]\.id .* at most 190"),
        ({"interval": 0}, ValueError, "interval"),
        ({"interval": "1"}, TypeError, "interval"),
        ({"name": ""}, ValueError, "name"),
    ],
)
def test_bad_runner_arguments_are_refused_naming_them(
    store: durable.Store, kwargs: dict[str, object], error: type[Exception], fragment: str
) -> None:
    arguments: dict[str, object] = {"store": store, "migrations": [Doubling()], **kwargs}
    given, migrations = arguments.pop("store"), arguments.pop("migrations")
    with pytest.raises(error, match=fragment):
        durable.MigrationRunner(given, migrations, **arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("call", "error", "fragment"),
    [
        (lambda store: store.set_migration_direction("", reverse=True), ValueError, "migration_id"),
        (lambda store: store.set_migration_direction("x", reverse=1), TypeError, "reverse"),
        (lambda store: store.require_migrations_complete("x"), TypeError, "ids"),
        (lambda store: store.require_migrations_complete([3]), TypeError, r"ids\[0\]"),
    ],
)
def test_bad_store_arguments_are_refused_naming_them(
    store: durable.Store,
    call: Callable[[durable.Store], object],
    error: type[Exception],
    fragment: str,
) -> None:
    with pytest.raises(error, match=fragment):
        call(store)
