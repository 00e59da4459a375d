"""A store on each backend: SQLite (a file under the test's tmp_path) and PostgreSQL (a schema of
its own, random, dropped after the test whatever happens).

PostgreSQL comes from ROUTINES_TEST_POSTGRES_URL, else postgresql://postgres@127.0.0.1:5432/test.
When nothing answers there the PostgreSQL tests skip, saying how to run them; with
ROUTINES_REQUIRE_POSTGRES=1 (as in CI) they fail instead.
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from routines import durable
from routines._cli import output

from .support import Cli, Clock

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@functools.cache
def _find_postgres() -> tuple[str | None, str]:
    """The URL of a PostgreSQL server that answers, or None and why not."""
    url = os.environ.get("ROUTINES_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL
    try:
        import psycopg
    except ImportError:
        return None, "psycopg is not installed (pip install -e '.[test]')"
    try:
        with psycopg.connect(url, connect_timeout=3):
            pass
    except psycopg.Error as error:
        return None, (
            f"no PostgreSQL answers at {url} ({type(error).__name__}: {error}); to run these "
            "tests start PostgreSQL and set ROUTINES_TEST_POSTGRES_URL to its URL (a user that "
            "may create schemas)"
        )
    return url, ""


def postgres_url() -> str:
    """The test server's URL; skips the test when there is none (fails it in CI)."""
    url, reason = _find_postgres()
    if url is None:
        if os.environ.get("ROUTINES_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"ROUTINES_REQUIRE_POSTGRES=1, but {reason}", pytrace=False)
        pytest.skip(reason)
    return url


def drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class Target:
    """Where a test's stores live; `open()` opens one more store there, closed after the test."""

    def __init__(self, kind: str, url: str, schema: str) -> None:
        self.kind = kind
        self.url = url
        self.schema = schema
        self._opened: list[durable.Store] = []

    def __repr__(self) -> str:
        return f"Target({self.kind!r}, {self.url!r}, {self.schema!r})"

    def open(self, *, timeout: float = 5.0) -> durable.Store:
        store = durable.open_store(self.url, timeout=timeout, schema=self.schema)
        self._opened.append(store)
        return store

    def close(self) -> None:
        for store in self._opened:
            store.close()


@contextmanager
def make_target(kind: str, tmp_path: Path) -> Iterator[Target]:
    """A fresh place for stores of `kind`, emptied afterwards (on PostgreSQL: its schema
    dropped, even when the test failed)."""
    if kind == "sqlite":
        target = Target("sqlite", f"sqlite:///{tmp_path}/store.db", "routines")
        try:
            yield target
        finally:
            target.close()
        return
    url = postgres_url()
    target = Target("postgres", url, f"test_{secrets.token_hex(6)}")
    try:
        yield target
    finally:
        try:
            target.close()
        finally:
            drop_schema(url, target.schema)


# The engines the durable suite runs on: every test that takes `target`, `store` or `queue` is
# the contract suite, run once per entry. A new driver passes when it is one more entry here
# (and one more branch in `make_target`), and the suite is green on it (docs/backends.md).
DRIVERS = ("sqlite", "postgres")


@pytest.fixture(params=DRIVERS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    with make_target(request.param, tmp_path) as made:
        yield made


@pytest.fixture
def sqlite_target(tmp_path: Path) -> Iterator[Target]:
    with make_target("sqlite", tmp_path) as made:
        yield made


@pytest.fixture
def postgres_target(tmp_path: Path) -> Iterator[Target]:
    with make_target("postgres", tmp_path) as made:
        yield made


@pytest.fixture
def store(target: Target) -> durable.Store:
    return target.open()


@pytest.fixture
def queue(store: durable.Store) -> durable.Queue:
    return store.queue("emails")


# -- the `routines` command on the test's store ------------------------------------------------


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, target: Target) -> Cli:
    """The command on the test's target: its URL and schema in the environment, tables as
    wide as on a terminal of 100 columns."""
    monkeypatch.setenv("ROUTINES_STORE_URL", target.url)
    monkeypatch.setenv("ROUTINES_STORE_SCHEMA", target.schema)
    monkeypatch.delenv("COLUMNS", raising=False)
    return Cli(capsys)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    made = Clock()
    monkeypatch.setattr(output, "utc_now", made)
    return made
