"""What the durable tier's figures (7-11) share: the real servers, a fresh database for every
trial, and child processes that print what they do.

PostgreSQL is `ROUTINES_BENCH_POSTGRES_URL` (else `ROUTINES_TEST_POSTGRES_URL`, else
`postgresql://postgres@127.0.0.1:5432/test`); every trial gets a database of its own, created
from that server and dropped after. Redis is `ROUTINES_BENCH_REDIS_URL` (else
`redis://127.0.0.1:6379/15`): rq's trials empty that one database before and after.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import Countdown

from routines import durable

HERE = Path(__file__).resolve().parent
PG_URL = os.environ.get(
    "ROUTINES_BENCH_POSTGRES_URL",
    os.environ.get("ROUTINES_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
)
REDIS_URL = os.environ.get("ROUTINES_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
_counter = [0]


def postgres_missing() -> str | None:
    """Why PostgreSQL can't be used (None when it can)."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[bench]')"
    try:
        with psycopg.connect(PG_URL, connect_timeout=3):
            return None
    except psycopg.Error as error:
        return f"PostgreSQL at {PG_URL} does not answer ({type(error).__name__})"


def redis_missing() -> str | None:
    try:
        import redis
    except ImportError:
        return "redis is not installed (pip install -e '.[bench]')"
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=3).ping()
    except redis.RedisError as error:
        return f"Redis at {REDIS_URL} does not answer ({type(error).__name__})"
    return None


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@contextlib.contextmanager
def fresh_database(tag: str) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped (with its connections) afterwards."""
    import psycopg

    _counter[0] += 1
    name = f"routines_bench_{tag}_{os.getpid()}_{_counter[0]}"
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield _with_database(PG_URL, name)
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def fresh_directory() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="routines-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def fresh_store_url(backend: str) -> Iterator[str]:
    """The URL of a new, empty `routines.durable` store: `sqlite` (a file in a new directory)
    or `postgres` (a new database), removed afterwards."""
    if backend == "sqlite":
        with fresh_directory() as directory:
            yield f"sqlite:///{directory / 'jobs.db'}"
    else:
        with fresh_database("routines") as url:
            yield url


@contextlib.contextmanager
def procrastinate_app(name: str, function: Any) -> Iterator[tuple[str, Any, Any]]:
    """A new database with procrastinate's schema: its URL, a closed `App`, and `function`
    as the app's task `name`."""
    from procrastinate import App, PsycopgConnector

    with fresh_database("procrastinate") as url:
        app = App(connector=PsycopgConnector(conninfo=url))
        task = app.task(name=name)(function)
        with app.open():
            app.schema_manager.apply_schema()
        yield url, app, task


@contextlib.contextmanager
def fresh_redis() -> Iterator[Any]:
    """A Redis client on the benchmarks' database, emptied before and after."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


class Child:
    """`benchmarks/_child.py ROLE SIDE CONFIG` in a process of its own, in its own process group.

    It prints one JSON object per line; `read()` waits (bounded) for the next one. Leaving the
    `with` block kills what is left of the group, so no trial leaves a process behind.
    """

    def __init__(self, role: str, side: str, **config: Any) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "_child.py"), role, side, json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self._buffer = ""
        self.ended = False  # its stdout reached end of file
        self.others: set[int] = set()  # its processes outside its group, to kill with it

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
        if self.process.stdin is not None:
            self.process.stdin.close()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def read(self, timeout: float) -> dict[str, Any] | None:
        """The next JSON line as a dict, or None if none came within `timeout` seconds (or the
        process ended and every line was read)."""
        stdout = self.process.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            line, newline, rest = self._buffer.partition("\n")
            if newline:
                self._buffer = rest
                if line.startswith("{"):  # else a library's own output: not ours
                    found: dict[str, Any] = json.loads(line)
                    return found
                continue
            if self.ended:
                return None
            ready, _, _ = select.select([stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            chunk = os.read(stdout.fileno(), 65536).decode()
            if chunk:
                self._buffer += chunk
            else:
                self.ended = True

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        """Read until a line whose `event` is `event`; raise if none comes in time."""
        deadline = time.monotonic() + timeout
        while (line := self.read(max(0.0, deadline - time.monotonic()))) is not None:
            if line.get("event") == event:
                return line
        if self.ended:
            msg = f"the child ended (exit status {self.process.wait(5)}) before {event!r}"
            raise RuntimeError(msg)
        msg = f"no {event!r} from the child within {timeout}s"
        raise TimeoutError(msg)

    def send(self, line: str) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(line + "\n")
        stdin.flush()

    def terminate(self, timeout: float = 30.0) -> None:
        """SIGTERM, and wait for it to end (killed if it has not within `timeout`)."""
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL its process group and `others` (rq's work horse has a session of its own)."""
        for pid in self.others:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)


def version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def process_backlog(queue: durable.Queue, total: int, *, handlers: int) -> float:
    """Jobs a second of one `QueueWorker(concurrency=handlers)` of trivial jobs working the
    `total` jobs already in `queue`: from starting it until the last outcome is stored."""
    ran = Countdown(total)
    worker = durable.QueueWorker(queue, lambda job: ran.arrive(), concurrency=handlers)
    began = time.perf_counter()
    thread = threading.Thread(target=worker.start, name="bench-worker")
    thread.start()
    ran.wait(600.0)
    deadline = time.monotonic() + 60.0
    while queue.counts()["completed"] < total:  # the last outcomes are being written
        if time.monotonic() > deadline:
            msg = "the last outcomes were not written within 60 s"
            raise RuntimeError(msg)
        threading.Event().wait(0.001)
    elapsed = time.perf_counter() - began
    worker.stop()
    thread.join(60.0)
    return total / elapsed
