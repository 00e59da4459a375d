"""`Singleton` in this process, on both backends: it runs its routine only while it holds the
lease, hands over on stop, ends with its routine, and stops it when the lease is lost.
(Real processes, SIGKILL and SIGSTOP: test_fleet_processes.py.)"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

import routines
from routines import durable

from .conftest import Target
from .support import WITHOUT_A_STABLE_NAME, path_of, poll, sqlite_lease, write_lock
from helpers import WAIT, Gate, LogWatcher, join


@pytest.fixture
def store(target: Target) -> durable.Store:
    return target.open(timeout=0.2)


class Started:
    def __init__(self, routine: routines.Routine) -> None:
        self.routine = routine
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._start, name="test-singleton")
        self.thread.start()

    def _start(self) -> None:
        try:
            self.routine.start()
        except BaseException as exc:
            self.error = exc

    def finish(self) -> BaseException | None:
        self.routine.stop()
        join(self.thread)
        return self.error


@pytest.fixture
def run() -> Iterator[Callable[[routines.Routine], Started]]:
    started: list[Started] = []

    def start(routine: routines.Routine) -> Started:
        started.append(Started(routine))
        return started[-1]

    yield start
    for each in started:
        each.routine.stop()
        each.thread.join(WAIT)


def test_only_the_holder_runs_its_routine_and_stop_hands_over(
    store: durable.Store, target: Target, run: Callable[..., Started]
) -> None:
    first_gate, second_gate = Gate("first"), Gate("second")
    first = durable.Singleton(first_gate, store, name="billing", ttl=1.0)
    second = durable.Singleton(second_gate, target.open(timeout=0.2), name="billing", ttl=1.0)
    started_first = run(first)
    assert first_gate.started.wait(WAIT)
    run(second)
    assert poll(lambda: second.status().last_error is not None)  # standing by
    assert not second_gate.started.is_set()
    token = first.token
    assert started_first.finish() is None  # stops its routine, releases the lease
    assert first_gate.returned.is_set()
    assert second_gate.started.wait(WAIT)  # within its retry_interval
    assert second.token is not None
    assert token is not None
    assert second.token > token


def test_a_routine_that_returns_ends_the_singleton_and_releases_the_lease(
    store: durable.Store,
) -> None:
    ran = threading.Event()
    singleton = durable.Singleton(routines.CallbackRoutine(ran.set, name="once"), store, ttl=1.0)
    singleton.start()  # returns when its routine does
    assert ran.is_set()
    assert singleton.token is None
    assert store.lease("once", ttl=1.0).acquire()  # released


def test_a_routine_that_raises_ends_the_singleton_with_its_error_and_releases(
    store: durable.Store,
) -> None:
    def fail() -> None:
        raise RuntimeError("the job broke")

    singleton = durable.Singleton(routines.CallbackRoutine(fail, name="broken"), store, ttl=1.0)
    with pytest.raises(RuntimeError, match="the job broke"):
        singleton.start()
    assert store.lease("broken", ttl=1.0).acquire()


def test_a_lost_lease_stops_the_routine_and_the_singleton_tries_again(
    store: durable.Store, target: Target, run: Callable[..., Started]
) -> None:
    gate = Gate("job")
    singleton = durable.Singleton(gate, store, ttl=1.0, retry_interval=0.1)
    with LogWatcher() as logs:
        run(singleton)
        assert gate.started.wait(WAIT)
        thief = target.open(timeout=0.2).lease("job", ttl=30)
        _expire(target, "job")  # as if its renewals had failed for a whole ttl
        assert thief.acquire()
        logs.wait_for("stopping its routine")
        assert gate.returned.wait(WAIT)
        assert poll(lambda: singleton.status().last_error is not None)  # standing by again
        thief.release()
        assert poll(lambda: gate.runs == 2)  # took the lease back, started the routine anew


def test_a_renewal_the_store_did_not_answer_is_tried_again_before_the_routine_is_stopped(
    sqlite_target: Target, run: Callable[..., Started]
) -> None:
    # ttl 6 s, store timeout 0.5 s: the first renewal, 2 s in, waits out the timeout on a write
    # lock held here and fails at 2.5 s. The next try must come before the Singleton's own timer
    # stops the routine (4 s in, two thirds of the ttl), not a third of the ttl later (4.5 s).
    gate = Gate("job")
    singleton = durable.Singleton(gate, sqlite_target.open(timeout=0.5), ttl=6.0)
    with LogWatcher() as logs:
        run(singleton)
        assert gate.started.wait(WAIT)
        token, expires_at = sqlite_lease(sqlite_target, "job")
        with write_lock(path_of(sqlite_target)):
            logs.wait_for("renewing the lease")
        assert poll(
            lambda: sqlite_lease(sqlite_target, "job")[1] > expires_at or gate.returned.is_set()
        )
        assert not gate.returned.is_set(), logs.text()
        assert sqlite_lease(sqlite_target, "job")[0] == token == singleton.token


def _expire(target: Target, name: str) -> None:
    """Make the lease `name` expired on the database's clock."""
    if target.kind == "sqlite":
        import sqlite3

        with sqlite3.connect(target.url.removeprefix("sqlite:///"), timeout=WAIT) as connection:
            connection.execute(
                f"UPDATE {target.schema}_leases SET expires_at = 0 WHERE name = ?", [name]
            )
        return
    import psycopg

    with psycopg.connect(target.url, autocommit=True) as connection:
        connection.execute(
            f"UPDATE \"{target.schema}\".leases SET expires_at = now() - interval '1 day'"
            " WHERE name = %s",
            [name],
        )


def test_under_a_monitor_it_shows_in_status_and_shutdown_releases_the_lease(
    store: durable.Store,
) -> None:
    gate = Gate("job")
    monitor = routines.Monitor(durable.Singleton(gate, store, ttl=1.0), signals=())
    monitor.start()
    assert gate.started.wait(WAIT)
    (status,) = monitor.status()
    assert (status.name, status.state) == ("job", "running")
    monitor.shutdown()
    report = monitor.wait(WAIT)
    assert report is not None
    assert report.outcomes[0].state == "stopped"
    assert store.lease("job", ttl=1.0).acquire()


def test_a_ttl_shorter_than_three_store_timeouts_is_refused(store: durable.Store) -> None:
    with pytest.raises(ValueError, match="ttl must be at least 3 times"):
        durable.Singleton(Gate(), store, ttl=0.5)


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"routine": 3}, TypeError, "routine"),
        ({"store": "sqlite:///x.db"}, TypeError, "store"),
        ({"name": ""}, ValueError, "name"),
        ({"ttl": -1}, ValueError, "ttl"),
        ({"ttl": "30"}, TypeError, "ttl"),
        ({"retry_interval": 0}, ValueError, "retry_interval"),
        ({"retry_interval": True}, TypeError, "retry_interval"),
    ],
)
def test_bad_arguments_are_refused_naming_them(
    store: durable.Store, kwargs: dict[str, object], error: type[Exception], fragment: str
) -> None:
    arguments: dict[str, object] = {"routine": Gate(), "store": store, "ttl": 1.0, **kwargs}
    routine, given_store = arguments.pop("routine"), arguments.pop("store")
    with pytest.raises(error, match=fragment):
        durable.Singleton(routine, given_store, **arguments)  # type: ignore[arg-type]


# -- fleet identities (OPERATIONS.md section 9) ---------------------------------------------------


def purge_old() -> None:
    """A module-level function: its name is the same in every process."""


def handle(item: object) -> None: ...


def test_a_singletons_default_name_is_its_routines_handlers_module_and_qualified_name(
    store: durable.Store,
) -> None:
    expected = f"{__name__}.purge_old"
    assert durable.Singleton(routines.PeriodicRoutine(purge_old), store).name == expected
    assert durable.Singleton(routines.CallbackRoutine(purge_old), store).name == expected
    pool = routines.WorkerPool(handle)
    assert durable.Singleton(pool, store).name == f"{__name__}.handle"


def test_a_singletons_default_name_is_its_routines_given_name_or_class(
    store: durable.Store,
) -> None:
    named = routines.PeriodicRoutine(lambda: None, name="janitor")
    assert durable.Singleton(named, store).name == "janitor"
    assert durable.Singleton(Gate(), store).name == "Gate"  # a BackgroundRoutine's class name
    assert durable.Singleton(Gate("billing"), store).name == "billing"


@WITHOUT_A_STABLE_NAME
@pytest.mark.parametrize(
    "kind", [routines.PeriodicRoutine, routines.CallbackRoutine], ids=["periodic", "callback"]
)
def test_a_singleton_of_a_routine_named_after_a_handler_with_no_stable_name_needs_a_name(
    store: durable.Store,
    handler: Callable[[], None],
    what: str,
    kind: Callable[[Callable[[], None]], routines.Routine],
) -> None:
    # Issue 25.10: a PeriodicRoutine of a lambda is named "<lambda>", like every other one.
    routine = kind(handler)
    with pytest.raises(ValueError, match=rf"name must be given: .* is {what}.*pass name="):
        durable.Singleton(routine, store)
    assert durable.Singleton(routine, store, name="purge.sessions").name == "purge.sessions"
