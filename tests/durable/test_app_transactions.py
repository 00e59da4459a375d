"""Enqueue in the app's own transaction (`connection=`, spec/OPERATIONS.md section 4), on both
backends: a committed job exists and a worker process runs it (on PostgreSQL woken by the NOTIFY
sent in the app's transaction); a rolled-back one never existed and leaves its key free; keys
de-duplicate across concurrent transactions; bad connections are refused with nothing written and
the app's transaction as it was; and each recipe of docs/durable.md (psycopg, sqlite3, Django,
SQLAlchemy) runs as written there."""

from __future__ import annotations

import json
import re
import reprlib
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from routines import durable

from .conftest import Target, drop_schema
from .support import PROGRAMS, ProgramGroup, path_of, poll
from helpers import WAIT, in_background

pytestmark = pytest.mark.timeout(30)

DOCS = Path(__file__).parents[2] / "docs" / "durable.md"
EMPTY = dict.fromkeys(("queued", "processing", "completed", "errored", "failed", "canceled"), 0)


def recipe(name: str) -> str:
    """The code of the recipe `name` in docs/durable.md, as written there."""
    found = re.search(rf"<!-- recipe: {name} -->\n```python\n(.*?)```", DOCS.read_text(), re.S)
    assert found is not None, f"docs/durable.md has no recipe {name!r}"
    return found.group(1)


class Base(DeclarativeBase):
    pass


class Order(Base):
    """The SQLAlchemy recipe's mapped class."""

    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    total: Mapped[int]


class Declined(Exception):
    """What a recipe's `charge` raises: the order and its job roll back together."""


class App:
    """The app's side of a test: its own connections to the store's database (on PostgreSQL
    with the search path at the test's schema, so its `orders` table is dropped with it)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.kind = target.kind
        self._opened: list[Any] = []
        self.database_url = ""
        self.database_file = ""
        if self.kind == "postgres":
            from psycopg.conninfo import make_conninfo

            self.database_url = make_conninfo(
                target.url, options=f"-c search_path={target.schema}", connect_timeout=5
            )
        else:
            self.database_file = str(path_of(target))

    def connect(self, *, shared: bool = False, **options: Any) -> Any:
        """A connection of the app's (closed after the test): psycopg's or sqlite3's defaults,
        so in a transaction until it commits, unless `options` say otherwise; `shared`: sqlite3
        lets other threads use it."""
        if self.kind == "postgres":
            import psycopg

            connection: Any = psycopg.connect(self.database_url, **options)
        else:
            connection = sqlite3.connect(
                self.database_file, timeout=WAIT, check_same_thread=not shared, **options
            )
        self._opened.append(connection)
        return connection

    def admin(self) -> Any:
        """A connection for looking on (autocommit; PostgreSQL: pg_stat_activity)."""
        return self.connect(autocommit=True) if self.kind == "postgres" else self.connect()

    def create_orders(self) -> None:
        identity = (
            "bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
            if self.kind == "postgres"
            else "INTEGER PRIMARY KEY"
        )
        with closing(self.connect()) as connection:
            connection.execute(f"CREATE TABLE orders (id {identity}, total integer NOT NULL)")
            connection.commit()

    def orders(self) -> list[int]:
        with closing(self.connect()) as connection:
            rows = connection.execute("SELECT total FROM orders ORDER BY id").fetchall()
            connection.rollback()
        return [total for (total,) in rows]

    def jobs(self) -> list[tuple[Any, str]]:
        """(payload, state) of every job the store holds, by id: read from its table."""
        if self.kind == "postgres":
            query = "SELECT payload::text, state FROM jobs ORDER BY id"  # the search path's
        else:
            query = f"SELECT payload, state FROM {self.target.schema}_jobs ORDER BY id"
        with closing(self.connect()) as connection:
            rows = connection.execute(query).fetchall()
            connection.rollback()
        return [(json.loads(payload), state) for payload, state in rows]

    def recipe(self, name: str, queue: durable.Queue, **names: Any) -> Callable[[int], int]:
        """`place_order` of the recipe `name`, run as written; `declining` makes `charge` raise."""
        namespace: dict[str, Any] = {
            "emails": queue,
            "charge": self.charge,
            "DATABASE_URL": self.database_url,
            "DATABASE_FILE": self.database_file,
            **names,
        }
        exec(recipe(name), namespace)
        place_order: Callable[[int], int] = namespace["place_order"]
        return place_order

    declining = False

    def charge(self, order_id: int) -> None:
        if self.declining:
            raise Declined(order_id)

    def close(self) -> None:
        for connection in self._opened:
            connection.close()


@pytest.fixture
def app(target: Target) -> Iterator[App]:
    with closing(App(target)) as made:
        yield made


@pytest.fixture
def postgres_app(postgres_target: Target) -> Iterator[App]:
    with closing(App(postgres_target)) as made:
        yield made


@pytest.fixture
def postgres_queue(postgres_target: Target) -> durable.Queue:
    return postgres_target.open().queue("emails")


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[ProgramGroup]:
    group = ProgramGroup(tmp_path, "worker")
    try:
        yield group
    finally:
        group.close()


def plain_recipe(app: App) -> str:
    return "psycopg" if app.kind == "postgres" else "sqlite3"


def wait_listening(app: App, count: int = 1) -> None:
    """PostgreSQL: until `count` listeners of the test's channel have run LISTEN (bounded)."""
    if app.kind != "postgres":
        return
    admin = app.admin()
    listen = f'LISTEN "{app.target.schema}_jobs"'
    query = "SELECT count(*) FROM pg_stat_activity WHERE query = %s AND state = 'idle'"
    assert poll(lambda: admin.execute(query, [listen]).fetchone()[0] >= count), "no listener"


def state_of(queue: durable.Queue, job_id: int) -> str | None:
    job = queue.get(job_id)
    return None if job is None else job.state


def payloads(queue: durable.Queue, ids: list[int]) -> list[object]:
    return [None if (job := queue.get(job_id)) is None else job.payload for job_id in ids]


def in_transaction(connection: Any) -> bool:
    if isinstance(connection, sqlite3.Connection):
        return connection.in_transaction
    from psycopg.pq import TransactionStatus

    return bool(connection.info.transaction_status == TransactionStatus.INTRANS)


# -- commit and rollback ------------------------------------------------------------------------


def test_the_plain_recipe_commits_the_order_and_its_job_and_a_worker_process_runs_it(
    target: Target, app: App, workers: ProgramGroup
) -> None:
    """On PostgreSQL the worker polls once a minute: only the NOTIFY sent in the app's
    transaction, delivered at its commit, can start the job within seconds."""
    queue = target.open().queue("emails")
    app.create_orders()
    record = workers.next_record()
    poll_interval = "60" if target.kind == "postgres" else "0.1"
    process = workers.launch(
        "worker", target.url, target.schema, "emails", str(record), "fast", "1", poll_interval
    )
    wait_listening(app)
    # A first job, committed as usual, run: the worker is past its first claim, waiting.
    warm_up = queue.enqueue("warm-up")
    assert poll(lambda: state_of(queue, warm_up) == "completed"), queue.get(warm_up)

    place_order = app.recipe(plain_recipe(app), queue)
    order_id = place_order(42)
    committed = time.monotonic()
    assert poll(lambda: len(record.read_text().splitlines()) == 2), record.read_text()
    started = time.monotonic() - committed
    job_id = int(record.read_text().splitlines()[1].split()[0])
    job = queue.get(job_id)
    assert job is not None
    assert job.payload == {"order": order_id}
    assert started < 3.0, f"the job started {started:.1f}s after the commit"
    assert app.orders() == [42]
    workers.stop_all()
    assert process.returncode == 0


def test_a_recipe_whose_charge_raises_leaves_neither_the_order_nor_its_job(
    store: durable.Store, app: App
) -> None:
    app.create_orders()
    place_order = app.recipe(plain_recipe(app), store.queue("emails"))
    app.declining = True
    with pytest.raises(Declined):
        place_order(42)
    assert app.orders() == []
    assert app.jobs() == []


def test_the_job_is_invisible_to_the_store_until_the_app_commits(
    queue: durable.Queue, app: App
) -> None:
    connection = app.connect()
    job_id = queue.enqueue({"n": 1}, connection=connection)
    assert in_transaction(connection)
    assert queue.get(job_id) is None
    assert queue.counts() == EMPTY
    connection.commit()
    job = queue.get(job_id)
    assert job is not None
    assert (job.payload, job.state) == ({"n": 1}, "queued")


def test_a_rolled_back_job_never_existed_and_its_key_is_free_again(
    queue: durable.Queue, app: App
) -> None:
    connection = app.connect()
    queue.enqueue("rolled back", key="receipt:42", connection=connection)
    connection.rollback()
    assert queue.counts() == EMPTY
    again = queue.enqueue("committed", key="receipt:42")
    job = queue.get(again)
    assert job is not None
    assert (job.payload, job.key, job.state) == ("committed", "receipt:42", "queued")
    assert app.jobs() == [("committed", "queued")]


def test_enqueue_many_in_the_apps_transaction_is_all_or_none(
    queue: durable.Queue, app: App
) -> None:
    connection = app.connect()
    queue.enqueue_many([1, 2, 3], connection=connection)
    connection.rollback()
    assert app.jobs() == []
    ids = queue.enqueue_many([4, 5, 6], connection=connection)
    connection.commit()
    assert payloads(queue, ids) == [4, 5, 6]


def test_an_enqueue_many_of_nothing_writes_nothing_and_still_checks_the_connection(
    queue: durable.Queue, app: App
) -> None:
    connection = app.connect()
    assert queue.enqueue_many([], connection=connection) == []
    connection.commit()
    assert app.jobs() == []
    with pytest.raises(TypeError, match=r"connection"):
        queue.enqueue_many([], connection=object())


def test_an_autocommit_connection_commits_the_job_at_once(queue: durable.Queue, app: App) -> None:
    options: dict[str, Any] = (
        {"autocommit": True} if app.kind == "postgres" else {"isolation_level": None}
    )
    connection = app.connect(**options)
    job_id = queue.enqueue(1, key="k", connection=connection)
    ids = queue.enqueue_many([2, 3], connection=connection)
    assert not in_transaction(connection)
    assert [state_of(queue, i) for i in (job_id, *ids)] == ["queued"] * 3


def test_a_worker_in_this_process_runs_the_job_when_the_app_commits(
    store: durable.Store, app: App, run: Callable[[durable.QueueWorker], object]
) -> None:
    """It polls every 30 s: the wake-up given at the enqueue (and on PostgreSQL the NOTIFY at
    the commit) starts the job; the rolled-back job before it never runs."""
    queue = store.queue("emails")
    handled: list[object] = []
    done = threading.Event()

    def handle(job: durable.Job) -> None:
        handled.append(job.payload)
        done.set()

    run(durable.QueueWorker(queue, handle, poll_interval=30))
    wait_listening(app)
    connection = app.connect()
    queue.enqueue("rolled back", connection=connection)
    connection.rollback()
    queue.enqueue("committed", connection=connection)
    connection.commit()
    assert done.wait(WAIT), queue.counts()
    assert handled == ["committed"]


# -- keys -----------------------------------------------------------------------------------------


def test_a_key_deduplicates_against_committed_jobs_and_the_transactions_own(
    queue: durable.Queue, app: App
) -> None:
    committed = queue.enqueue("first", key="a")
    connection = app.connect()
    assert queue.enqueue("again", key="a", connection=connection) == committed
    own = queue.enqueue("mine", key="b", connection=connection)
    assert queue.enqueue_many(["mine too", "and me"], key="b", connection=connection) == [own] * 2
    connection.commit()
    assert app.jobs() == [("first", "queued"), ("mine", "queued")]


def wait_blocked(app: App, connection: Any, entered: threading.Event) -> None:
    """Until the second transaction's INSERT waits for the first one (bounded): PostgreSQL
    shows its backend waiting on a lock; SQLite's trace callback saw it start."""
    if app.kind == "postgres":
        admin = app.admin()
        pid = connection.info.backend_pid
        query = "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s"
        assert poll(lambda: admin.execute(query, [pid]).fetchone()[0] == "Lock"), "not waiting"
    else:
        assert entered.wait(WAIT), "the second INSERT did not start"


@pytest.mark.parametrize("first_ends", ["commit", "rollback"])
def test_a_keyed_enqueue_in_two_concurrent_transactions_stores_one_job(
    queue: durable.Queue, app: App, first_ends: str
) -> None:
    # The second one enqueues from a thread of its own.
    first, second = app.connect(), app.connect(shared=True)
    entered = threading.Event()
    if app.kind == "sqlite":
        second.set_trace_callback(lambda statement: "INSERT" in statement and entered.set())
    first_id = queue.enqueue("first", key="k", connection=first)
    found: list[int] = []
    thread = threading.Thread(
        target=lambda: found.append(queue.enqueue("second", key="k", connection=second))
    )
    thread.start()
    try:
        wait_blocked(app, second, entered)
        getattr(first, first_ends)()
    finally:
        thread.join(WAIT)
    assert not thread.is_alive()
    second.commit()
    if first_ends == "commit":
        assert found == [first_id]
        assert app.jobs() == [("first", "queued")]
    else:
        assert app.jobs() == [("second", "queued")]
        assert payloads(queue, found) == ["second"]


def test_while_the_app_holds_its_transaction_open_the_stores_writers_wait_their_timeout(
    target: Target, app: App
) -> None:
    """SQLite: every write waits for the app's write lock; PostgreSQL: only an enqueue of the
    same key waits (on the unique index). Then `StoreUnavailable`, and after the commit or the
    rollback all is as usual."""
    queue = target.open(timeout=0.3).queue("emails")
    connection = app.connect()
    queue.enqueue("the app's", key="k", connection=connection)
    if target.kind == "sqlite":
        with pytest.raises(durable.StoreUnavailable, match=r"timeout 0\.3s"):
            queue.enqueue("another, without a key")
    else:
        assert payloads(queue, [queue.enqueue("another, without a key")]) == [
            "another, without a key"
        ]
    began = time.monotonic()
    with pytest.raises(durable.StoreUnavailable, match=r"timeout 0\.3s"):
        queue.enqueue("the same key", key="k")
    assert time.monotonic() - began < WAIT
    connection.rollback()
    assert payloads(queue, [queue.enqueue("the same key", key="k")]) == ["the same key"]


# -- the connection checked -----------------------------------------------------------------------


def open_transaction(connection: Any) -> None:
    """The app's own write, in the transaction a refused enqueue must leave as it was."""
    connection.execute("CREATE TABLE IF NOT EXISTS orders (total integer)")
    connection.execute("INSERT INTO orders (total) VALUES (7)")


def assert_untouched(connection: Any) -> None:
    assert in_transaction(connection)
    assert connection.execute("SELECT total FROM orders").fetchall() == [(7,)]
    connection.rollback()


def test_a_connection_of_another_kind_is_a_type_error_naming_it(
    tmp_path: Path, queue: durable.Queue, app: App
) -> None:

    other = app.connect() if app.kind == "sqlite" else None
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path}/other.db")
    try:
        cases: list[tuple[object, str]] = [
            (object(), "(a object)"),
            (queue.store.url, reprlib.repr(queue.store.url)),
            (Session(engine), "(a sqlalchemy.orm.session.Session): pass session.connection()"),
        ]
        if app.kind == "postgres":
            cases.append((sqlite3.connect(":memory:"), "sqlite3.Connection"))
        else:
            cases.append((other.cursor(), "sqlite3.Cursor"))
        for bad, shown in cases:
            with pytest.raises(TypeError, match=r"^connection must be") as caught:
                queue.enqueue(1, connection=bad)
            assert shown in str(caught.value)
            if isinstance(bad, sqlite3.Connection):
                bad.close()
    finally:
        engine.dispose()
    assert queue.counts() == EMPTY


def test_a_closed_connection_is_a_value_error_naming_it(queue: durable.Queue, app: App) -> None:
    connection = app.connect()
    connection.close()
    with pytest.raises(ValueError, match=r"connection must be .*open"):
        queue.enqueue(1, connection=connection)
    assert queue.counts() == EMPTY


def test_sqlite_a_connection_to_another_file_is_refused_and_left_as_it_was(
    sqlite_target: Target, tmp_path: Path
) -> None:
    queue = sqlite_target.open().queue("emails")

    def attaching() -> sqlite3.Connection:
        connection = sqlite3.connect(tmp_path / "app2.db")
        connection.execute("ATTACH DATABASE ? AS jobs", [str(path_of(sqlite_target))])
        return connection

    for connect, said in [
        (lambda: sqlite3.connect(tmp_path / "app.db"), "app.db"),
        (attaching, "attached as 'jobs'"),
        (lambda: sqlite3.connect(":memory:"), "in-memory"),
    ]:
        with closing(connect()) as connection:
            open_transaction(connection)
            with pytest.raises(ValueError, match=r"^connection must be .*store's file") as e:
                queue.enqueue(1, connection=connection)
            assert said in str(e.value)
            assert_untouched(connection)
    assert queue.counts() == EMPTY


def test_sqlite_a_connection_of_another_thread_is_refused(sqlite_target: Target) -> None:
    queue = sqlite_target.open().queue("emails")
    refused = threading.Event()
    with closing(sqlite3.connect(path_of(sqlite_target))) as connection:

        def enqueue() -> None:
            with pytest.raises(ValueError, match=r"^connection must be an open sqlite3.*thread"):
                queue.enqueue(1, connection=connection)
            refused.set()

        with in_background(enqueue):
            pass
    assert refused.is_set()
    assert queue.counts() == EMPTY


def test_postgres_a_connection_to_another_database_is_refused_and_left_as_it_was(
    postgres_target: Target, postgres_queue: durable.Queue
) -> None:
    import psycopg
    from psycopg.conninfo import make_conninfo

    queue = postgres_queue
    with psycopg.connect(make_conninfo(postgres_target.url, dbname="postgres")) as other:
        other.execute("CREATE TEMPORARY TABLE orders (total integer)")
        other.execute("INSERT INTO orders (total) VALUES (7)")
        with pytest.raises(ValueError, match=r"^connection must be to the store's database 'test'"):
            queue.enqueue(1, connection=other)
        assert_untouched(other)
    assert queue.counts() == EMPTY


def test_postgres_a_failed_transaction_is_refused_and_left_failed(
    postgres_queue: durable.Queue, postgres_app: App
) -> None:
    import psycopg
    from psycopg.pq import TransactionStatus

    connection = postgres_app.connect()
    with pytest.raises(psycopg.errors.DivisionByZero):
        connection.execute("SELECT 1 / 0")
    with pytest.raises(ValueError, match=r"^connection is in a failed transaction"):
        postgres_queue.enqueue(1, connection=connection)
    assert connection.info.transaction_status == TransactionStatus.INERROR
    assert postgres_queue.counts() == EMPTY


def test_postgres_a_role_that_may_not_write_the_jobs_table_is_refused(
    postgres_target: Target, postgres_queue: durable.Queue, postgres_app: App
) -> None:
    role = f"{postgres_target.schema}_reader"
    admin = postgres_app.admin()
    admin.execute(f'CREATE ROLE "{role}"')
    try:
        connection = postgres_app.connect()
        connection.execute(f'SET ROLE "{role}"')  # no USAGE on the store's schema
        with pytest.raises(ValueError, match=f"connection's role '{role}' may not write"):
            postgres_queue.enqueue(1, connection=connection)
        assert in_transaction(connection)
        connection.close()
    finally:
        admin.execute(f'DROP ROLE IF EXISTS "{role}"')
    assert postgres_queue.counts() == EMPTY


def test_postgres_a_jobs_table_of_the_same_names_that_is_not_the_stores_is_refused(
    postgres_target: Target, postgres_queue: durable.Queue, postgres_app: App
) -> None:
    """What a server of the same database and schema names would give: found by the table's
    oid, which the store read from its own connection."""
    connection = postgres_app.connect(autocommit=True)
    postgres_queue.enqueue(1, connection=connection)
    drop_schema(postgres_target.url, postgres_target.schema)
    postgres_target.open()  # the same names, another table
    with pytest.raises(ValueError, match=r"schema 'test_.*' is another one"):
        postgres_queue.enqueue(2, connection=connection)
    assert postgres_app.jobs() == []


# -- PostgreSQL's own ways ------------------------------------------------------------------------


def test_postgres_a_delay_of_days_does_not_depend_on_the_sessions_time_zone(
    postgres_queue: durable.Queue, postgres_app: App
) -> None:
    connection = postgres_app.connect()
    connection.execute("SET TimeZone = 'Europe/Paris'")
    # A number of days from now that crosses a change of Paris's UTC offset.
    (days,) = connection.execute(
        "SELECT n FROM generate_series(1, 366) AS n WHERE extract(timezone FROM now() + "
        "n * interval '1 day') <> extract(timezone FROM now()) LIMIT 1"
    ).fetchone()
    delay = timedelta(days=days, seconds=1)
    job_id = postgres_queue.enqueue(1, delay=delay, connection=connection)
    connection.commit()
    job = postgres_queue.get(job_id)
    assert job is not None
    assert job.run_after - job.enqueued_at == delay


@pytest.mark.parametrize("ends", ["commit", "rollback"])
def test_postgres_an_enqueue_in_a_pipeline_is_in_its_transaction(
    postgres_queue: durable.Queue, postgres_app: App, ends: str
) -> None:
    queue = postgres_queue
    connection = postgres_app.connect()
    with connection.pipeline():
        connection.execute("SELECT 1")
        ids = queue.enqueue_many([1, 2], connection=connection)
        keyed = queue.enqueue(3, key="k", connection=connection)
    getattr(connection, ends)()
    with postgres_app.connect(autocommit=True) as autocommit, autocommit.pipeline():
        queue.enqueue(4, key="k", connection=autocommit)  # committed at once
    if ends == "commit":
        assert queue.enqueue(5, key="k") == keyed
        assert payloads(queue, ids) == [1, 2]
    else:
        assert postgres_app.jobs() == [(4, "queued")]


def test_postgres_a_rolled_back_enqueue_notifies_no_one(
    postgres_target: Target, postgres_queue: durable.Queue, postgres_app: App
) -> None:
    listener = postgres_app.admin()
    listener.execute(f'LISTEN "{postgres_target.schema}_jobs"')
    connection = postgres_app.connect()
    postgres_queue.enqueue(1, connection=connection)
    connection.rollback()
    postgres_queue.store.queue("sms").enqueue(2, connection=connection)
    connection.commit()
    # Notifications arrive in commit order: the first one is the committed enqueue's.
    received = [note.payload for note in listener.notifies(timeout=WAIT, stop_after=1)]
    assert received == ["sms"]


# -- the frameworks' recipes ----------------------------------------------------------------------


def test_the_django_recipe_commits_the_order_and_its_job_or_neither(
    target: Target, app: App
) -> None:
    target.open()  # the store's tables, before Django connects
    process = subprocess.run(
        [sys.executable, str(PROGRAMS / "django_recipe.py"), target.url, target.schema],
        input=recipe("django"),
        capture_output=True,
        text=True,
        timeout=WAIT * 4,
    )
    assert process.returncode == 0, process.stderr
    report = json.loads(process.stdout)
    assert report["declined"].startswith("Declined(")
    assert "connection.connection" in report["wrapper"]
    assert app.orders() == [42]
    assert app.jobs() == [({"order": report["committed"]}, "queued")]


def test_the_sqlalchemy_recipe_commits_the_order_and_its_job_or_neither(
    target: Target, app: App
) -> None:
    queue = target.open().queue("emails")  # the store's schema, where the search path points
    if target.kind == "postgres":
        engine = sqlalchemy.create_engine(
            target.url.replace("postgresql://", "postgresql+psycopg://", 1),
            connect_args={"options": f"-c search_path={target.schema}"},
        )
    else:
        engine = sqlalchemy.create_engine(f"sqlite:///{app.database_file}")
    try:
        Base.metadata.create_all(engine)
        place_order = app.recipe("sqlalchemy", queue, engine=engine, Order=Order)
        order_id = place_order(42)
        app.declining = True
        with pytest.raises(Declined):
            place_order(43)
    finally:
        engine.dispose()
    assert app.orders() == [42]
    assert app.jobs() == [({"order": order_id}, "queued")]
