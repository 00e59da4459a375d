"""Small tools the durable tier's tests share."""

from __future__ import annotations

import functools
import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from routines import durable
from routines._cli.main import main
from routines.durable._model import Claim, Claimer, Outcome
from routines.durable._sql import Driver
from routines.durable._sqlstore import SQLStore
from routines.durable._store import store_access

from helpers import WAIT

if TYPE_CHECKING:
    from .conftest import Target

T = TypeVar("T")

PROGRAMS = Path(__file__).parent / "programs"


def path_of(target: Target) -> Path:
    """The file of a SQLite target."""
    return Path(target.url.removeprefix("sqlite:///"))


@contextmanager
def write_lock(path: Path, *, statement: str = "BEGIN IMMEDIATE") -> Iterator[sqlite3.Connection]:
    """Another connection holding a lock on the file (the write lock, by default) until the
    block ends."""
    connection = sqlite3.connect(path, isolation_level=None, timeout=WAIT)
    try:
        connection.execute(statement)
        yield connection
        connection.execute("COMMIT")
    finally:
        connection.close()


def sqlite_lease(target: Target, name: str) -> tuple[int, int]:
    """The token and expiry (the database's clock) of the lease `name` in a SQLite target."""
    with sqlite3.connect(path_of(target), timeout=WAIT) as connection:
        token, expires_at = connection.execute(
            f"SELECT token, expires_at FROM {target.schema}_leases WHERE name = ?", [name]
        ).fetchone()
    return token, expires_at


def backend_of(store: durable.Store) -> SQLStore:
    """The store's backend, to test the operations the queue worker will use directly."""
    backend = store_access(store).backend()
    assert isinstance(backend, SQLStore)
    return backend


def driver_of(store: durable.Store) -> Driver:
    """The driver under the store's SQL store, to test what an engine does its own way."""
    return backend_of(store).driver


# Jobs made in bulk, in the database, for tests of big tables: a recursive CTE numbers the rows
# (the one spelling both engines run as it is), so a test needs no thousands of enqueues.
_FILL = """
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count)
    INSERT INTO {jobs} (queue, payload, state, priority, attempts, max_attempts, key, task,
                        enqueued_at, run_after, finished_at, last_error)
    SELECT :queue, :payload{as_json}, :state, 0, :attempts, 5, :key, :task, {now}, {now},
           CASE WHEN :state IN ('completed', 'failed', 'canceled') THEN {now} END, :error
    FROM n
"""


def fill_jobs(
    store: durable.Store,
    count: int,
    *,
    queue: str = "emails",
    state: durable.JobState = "queued",
    task: str | None = None,
    key: str | None = None,
) -> None:
    """`count` jobs of `queue` in `state`, in one statement; with `task`, their payload calls
    it (and their task column says so, as `enqueue` writes it). Failed jobs have had one
    attempt, which raised."""
    payload = json.dumps({"task": task, "args": [], "kwargs": {}} if task else {"n": 1})
    params = {
        "count": count,
        "queue": queue,
        "state": state,
        "payload": payload,
        "attempts": 1 if state in ("failed", "errored", "processing") else 0,
        "key": key,
        "task": task,
        "error": "RuntimeError: boom" if state in ("failed", "errored") else None,
    }
    driver_of(store).run(lambda session: session.count(_FILL, params), transaction=True)


def claim_jobs(queue: durable.Queue, limit: int = 1) -> list[Claim]:
    """Claim up to `limit` jobs of `queue` as a worker would, without one running."""
    return backend_of(queue.store).claim(queue.name, Claimer("test-worker", 3600.0, 3), limit)


def end_jobs(queue: durable.Queue, outcome: Outcome, limit: int = 1) -> list[int]:
    """Claim up to `limit` jobs and end each with `outcome`; their ids."""
    backend = backend_of(queue.store)
    claims = claim_jobs(queue, limit)
    for claimed in claims:
        assert backend.finish(claimed, outcome)
    return [claimed.id for claimed in claims]


def poll(check: Callable[[], T], *, timeout: float = WAIT, interval: float = 0.01) -> T:
    """Call `check` until it returns something truthy (returned) or `timeout` passes (the last
    value is returned): for decisions taken on the database's clock."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value
        pause.wait(interval)


def start_program(name: str, *args: str) -> subprocess.Popen[str]:
    """Start `programs/<name>.py` and wait (bounded) until it says it is ready."""
    process = subprocess.Popen(
        # faulthandler: a program that hangs shows its threads' stacks when aborted
        [sys.executable, "-X", "faulthandler", str(PROGRAMS / f"{name}.py"), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # the program prints "ready" before anything else
    if line.strip() != "ready":
        process.kill()
        _, err = process.communicate(timeout=WAIT)
        raise AssertionError(f"{name}.py did not start: {line!r} {err}")
    return process


def finish_program(process: subprocess.Popen[str], timeout: float = 30.0) -> tuple[str, str]:
    """Wait (bounded) for a program; return its stdout and stderr, failing if it failed."""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)  # its faulthandler writes every thread's stack
        try:
            _, err = process.communicate(timeout=WAIT)
        finally:
            process.kill()
        raise AssertionError(f"the program did not end within {timeout}s:\n{err}") from None
    assert process.returncode == 0, f"exit code {process.returncode}:\n{err}"
    return out, err


class ProgramGroup:
    """The processes of one test started from `programs/`, each writing its own record file
    `<kind>-<n>.txt` under `directory`; `close()` kills what is left (a fixture's teardown)."""

    def __init__(self, directory: Path, kind: str) -> None:
        self.directory = directory
        self.kind = kind
        self.processes: list[subprocess.Popen[str]] = []

    def next_record(self) -> Path:
        return self.directory / f"{self.kind}-{len(self.processes)}.txt"

    def launch(self, name: str, *args: str) -> subprocess.Popen[str]:
        process = start_program(name, *args)
        self.processes.append(process)
        return process

    def record_lines(self) -> list[list[str]]:
        """Every line of every record, split on whitespace, record by record."""
        found = []
        for record in sorted(self.directory.glob(f"{self.kind}-*.txt")):
            found += [line.split() for line in record.read_text().splitlines() if line]
        return found

    def stop_all(self) -> None:
        """SIGTERM to every process still running, then wait for each (it must exit 0)."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            if process.returncode is None:
                finish_program(process)

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=WAIT)


# -- handlers without a name that is the same in every process (OPERATIONS.md section 9) -------


def sync(region: str) -> None:
    """Synchronise one region: partial(sync, "eu") and partial(sync, "us") are two handlers."""


class Syncer:
    def __call__(self) -> None: ...

    def run(self) -> None: ...


def _nested() -> Callable[[], None]:
    def sync_inside() -> None: ...

    return sync_inside


# (handler, what the ValueError calls it), one of each kind that has no stable name.
WITHOUT_A_STABLE_NAME = pytest.mark.parametrize(
    ("handler", "what"),
    [
        (lambda: None, "a lambda"),
        (functools.partial(sync, "eu"), "a functools.partial"),
        (Syncer(), "a callable object"),
        (Syncer().run, "a method bound to an object"),
        (_nested(), "defined inside a function"),
    ],
    ids=["lambda", "partial", "callable-object", "bound-method", "nested-function"],
)


# -- the `routines` command, run in this process ----------------------------------------------


@dataclass(frozen=True)
class Ran:
    """What one command line did: its exit status, stdout and stderr."""

    code: int
    out: str
    err: str


class Cli:
    """`routines ...` run in this process (`main(argv)`), its output caught by capsys; the
    store comes from the environment the fixture set (a target's URL and schema)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *argv: str) -> Ran:
        try:
            code = main(list(argv))
        except SystemExit as exited:  # argparse: --help (0) or a usage error (2)
            code = exited.code if isinstance(exited.code, int) else 1
        captured = self.capsys.readouterr()
        assert "Traceback" not in captured.err, captured.err
        return Ran(code, captured.out, captured.err)

    def json(self, *argv: str) -> Any:
        """The one JSON document the command printed with --json (it must succeed)."""
        ran = self(*argv, "--json")
        assert ran.code == 0, ran.err
        assert ran.out.count("\n") == 1, ran.out
        return json.loads(ran.out)

    def lines(self, *argv: str) -> list[str]:
        """The lines the command printed (it must succeed, saying nothing on stderr)."""
        ran = self(*argv)
        assert (ran.code, ran.err) == (0, ""), ran
        return ran.out.splitlines()

    def fails(self, *argv: str) -> str:
        """The one line on stderr of a command that failed (exit status 1, nothing on stdout
        unless it did part of its work), without its `routines COMMAND: error: ` prefix."""
        ran = self(*argv)
        assert ran.code == 1, ran
        lines = ran.err.splitlines()
        assert len(lines) == 1, ran.err
        prefix = f"routines {argv[0]}: error: "
        assert lines[0].startswith(prefix), lines[0]
        return lines[0].removeprefix(prefix)

    def refuses(self, *argv: str) -> str:
        """argparse's message for a usage error (exit status 2)."""
        ran = self(*argv)
        assert ran.code == 2, ran
        return ran.err


class Clock:
    """The moment the commands count ages from, set by a test (None: this host's clock)."""

    def __init__(self) -> None:
        self.now: datetime | None = None

    def __call__(self) -> datetime:
        return self.now or datetime.now(timezone.utc)
