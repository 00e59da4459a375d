"""Small routines and tools the tests share."""

from __future__ import annotations

import functools
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from typing_extensions import Self

import routines
from routines.testing import FakeClock

WAIT = 5.0  # the bound on every wait for something that should happen at once


class Gate(routines.BackgroundRoutine):
    """Signals `started` when it runs, then waits for stop (or `release`), then returns."""

    def __init__(self, name: str | None = None, *, on_run: Callable[[], object] | None = None):
        super().__init__(name)
        self.started = threading.Event()
        self.returned = threading.Event()
        self.runs = 0
        self._on_run = on_run

    def run(self) -> None:
        self.runs += 1
        self.started.set()
        try:
            if self._on_run is not None:
                self._on_run()
            self.wait(None)
        finally:
            self.returned.set()


class Stubborn:
    """A routine that ignores stop() until `release` is set (a hung routine)."""

    def __init__(self, name: str = "stubborn") -> None:
        self.name = name
        self.started = threading.Event()
        self.release = threading.Event()
        self.stop_calls = 0
        self.stop_called = threading.Event()

    def start(self) -> None:
        self.started.set()
        self.release.wait(30)

    def stop(self) -> None:
        self.stop_calls += 1
        self.stop_called.set()


class Started:
    """A routine whose start() runs on a thread; `finish()` joins it (bounded).

    The `run` fixture (conftest.py) starts routines this way and stops them after the test.
    """

    def __init__(self, routine: routines.Routine, name: str = "test-start") -> None:
        self.routine = routine
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._start, name=name)
        self.thread.start()

    def _start(self) -> None:
        try:
            self.routine.start()
        except BaseException as exc:
            self.error = exc

    def finish(self, timeout: float = WAIT) -> BaseException | None:
        """Wait for start() to return; what it raised, if anything."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "start() did not return"
        return self.error

    def stop(self) -> BaseException | None:
        self.routine.stop()
        return self.finish()


class Fatal(BaseException):
    """Not an `Exception`: it ends a periodic routine or a pool instead of being reported and
    skipped."""


class Unprintable(Exception):
    """An API error whose `__str__` reads a key that is not there."""

    def __str__(self) -> str:
        fields: dict[str, str] = {}
        return fields["message"]


def start_in_thread(routine: routines.Routine, name: str = "test-routine") -> threading.Thread:
    thread = threading.Thread(target=routine.start, name=name, daemon=True)
    thread.start()
    return thread


def join(thread: threading.Thread) -> None:
    thread.join(WAIT)
    assert not thread.is_alive(), f"{thread.name} did not end within {WAIT}s"


@contextmanager
def in_background(fn: Callable[[], object], name: str = "test-driver") -> Iterator[None]:
    """Run `fn` on a helper thread for the duration of the block, then join it (bounded).

    For driving a test (sending signals, say) while the main thread blocks in `Monitor.run()`.
    """
    thread = threading.Thread(target=fn, name=name)
    thread.start()
    try:
        yield
    finally:
        join(thread)


LOG = "routines"  # the library's logger


class LogWatcher(logging.Handler):
    """Collects the `routines` logger's records and waits (bounded) for one to arrive.

    Records logged on other threads reach pytest's caplog a moment after this handler sees them,
    so tests that wait for a log line from another thread use this.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._cond = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._cond:
            self.records.append(record)
            self._cond.notify_all()

    def text(self) -> str:
        with self._cond:
            return "\n".join(record.getMessage() for record in self.records)

    def wait_for(self, fragment: str, timeout: float = WAIT) -> logging.LogRecord:
        def find() -> logging.LogRecord | None:
            return next((r for r in self.records if fragment in r.getMessage()), None)

        with self._cond:
            assert self._cond.wait_for(lambda: find() is not None, timeout), (
                f"no log record containing {fragment!r} within {timeout}s: {self.text()}"
            )
            record = find()
            assert record is not None
            return record

    def __enter__(self) -> LogWatcher:
        logger = logging.getLogger("routines")
        self._level = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logger = logging.getLogger("routines")
        logger.removeHandler(self)
        logger.setLevel(self._level)


@contextmanager
def root_logging_restored() -> Iterator[None]:
    """The root logger's handlers and level as they were once the block ends: for a program's
    main() run in this process (`routines worker` configures logging, as a program does)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(level)


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXAMPLE_WAIT = 15.0  # a fresh interpreter on a loaded 2-core machine


class Program:
    """A program run as a subprocess, its output read line by line as it comes.

    With `stdin`, its standard input is a pipe kept open (and empty) until it exits. With
    `own_group`, it leads a process group of its own (a host with workers, a reloader and
    its child), which `send_group()` signals as a terminal's Ctrl-C would, and which is killed
    whole on exit.
    """

    def __init__(
        self,
        argv: list[str],
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        own_group: bool = False,
        stdin: bool = False,
    ) -> None:
        self.own_group = own_group
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=env,
            start_new_session=own_group,
        )
        self._cond = threading.Condition()
        self._lines: list[str] = []
        self._errors: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self._lines)),
            threading.Thread(target=self._read, args=(self.process.stderr, self._errors)),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[str], into: list[str]) -> None:
        for line in stream:
            with self._cond:
                into.append(line)
                self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "".join(self._lines)

    @property
    def errors(self) -> str:
        with self._cond:
            return "".join(self._errors)

    def expect(self, fragment: str, timeout: float = EXAMPLE_WAIT, *, stderr: bool = False) -> str:
        """Wait until a line of stdout (or stderr) contains `fragment`; return that line."""
        lines = self._errors if stderr else self._lines

        def find() -> str | None:
            return next((line for line in lines if fragment in line), None)

        with self._cond:
            found = self._cond.wait_for(find, timeout)
        assert found, f"no {fragment!r} within {timeout}s; stdout:\n{self.output}\n{self.errors}"
        return found

    def send(self, signum: int) -> None:
        self.process.send_signal(signum)

    def send_group(self, signum: int) -> None:
        """Signal the whole process group (own_group only), as Ctrl-C in a terminal does."""
        assert self.own_group
        os.killpg(self.process.pid, signum)

    def wait(self, timeout: float = EXAMPLE_WAIT) -> int:
        """Wait for the program to exit; its exit code."""
        code = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        return code

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.own_group:
            # Also the workers or reloader children that may outlive the leader.
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        elif self.process.poll() is None:
            self.process.kill()
        self.wait()
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.stdout.close()
        self.process.stderr.close()


class Example(Program):
    """An example program (under examples/, or a path) run with this interpreter."""

    def __init__(self, name: str, *args: str, stdin: bool = False) -> None:
        super().__init__([sys.executable, "-u", str(EXAMPLES / name), *args], stdin=stdin)


class EventLog:
    """An `on_event` callback that keeps every event and waits (bounded) for one to arrive."""

    def __init__(self, then: Callable[[routines.RoutineEvent], object] | None = None) -> None:
        self.events: list[routines.RoutineEvent] = []
        self._cond = threading.Condition()
        self._then = then

    def __call__(self, event: routines.RoutineEvent) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()
        if self._then is not None:
            self._then(event)

    def count(self, routine: str, kind: str) -> int:
        with self._cond:
            return sum(1 for e in self.events if (e.routine, e.kind) == (routine, kind))

    def kinds(self, routine: str | None = None) -> list[str]:
        """The kinds of the events so far, in order: of one routine, or of all."""
        with self._cond:
            return [e.kind for e in self.events if routine is None or e.routine == routine]

    def wait_for(self, routine: str, kind: str, count: int = 1, timeout: float = WAIT) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.count(routine, kind) >= count, timeout), (
                f"no {count} {kind!r} events of {routine!r} within {timeout}s: {self.events}"
            )


# -- monitors, and routines that fail, return or count their starts ----------------------------

NO_RESTART = routines.RestartPolicy(restart="never")

# Restarts at once, never gives up in a test's lifetime unless told.
FAST = routines.RestartPolicy(backoff=0.001, max_backoff=0.001, jitter=0.0, max_restarts=100)
SLOW = routines.RestartPolicy(backoff=60.0, max_backoff=60.0, jitter=0.0)


class Flaky(routines.BackgroundRoutine):
    """Raises on its first `failures` starts (every start by default), then runs until stopped."""

    def __init__(self, name: str | None = None, *, failures: float = math.inf) -> None:
        super().__init__(name)
        self.failures = failures
        self.starts = 0
        self.start_times: list[float] = []
        self.started_as: list[object] = []
        self.errors: list[BaseException] = []
        self.recovered = threading.Event()

    def run(self) -> None:
        self.starts += 1
        self.start_times.append(time.monotonic())
        self.started_as.append(self)
        if self.starts <= self.failures:
            error = RuntimeError(f"{self.name} crashed")
            self.errors.append(error)
            raise error
        self.recovered.set()
        self.wait(None)


class Returner(routines.BackgroundRoutine):
    """Returns on its own on its first `returns` starts, then runs until stopped."""

    def __init__(self, name: str | None = None, *, returns: float = math.inf) -> None:
        super().__init__(name)
        self.returns = returns
        self.starts = 0
        self.waiting = threading.Event()

    def run(self) -> None:
        self.starts += 1
        if self.starts <= self.returns:
            return
        self.waiting.set()
        self.wait(None)


class Counting(routines.BackgroundRoutine):
    """Runs until stopped; counts its starts and signals each one."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name)
        self.starts = 0
        self.running = threading.Event()

    def run(self) -> None:
        self.starts += 1
        self.running.set()
        self.wait(None)


def started_monitor(*members: routines.Routine, **options: object) -> routines.Monitor:
    """A Monitor over `members` (catching no signals unless told), started."""
    options.setdefault("signals", ())
    monitor = routines.Monitor(*members, **options)  # type: ignore[arg-type]
    monitor.start()
    return monitor


class Harness:
    """Makes started monitors and, at teardown, releases blocked routines and shuts all down.

    The `harness` fixture (conftest.py) gives a test one and closes it after the test.
    """

    def __init__(self) -> None:
        self.monitors: list[routines.Monitor] = []
        self.blocked: list[Stubborn] = []

    def monitor(self, *given: routines.Routine, **options: Any) -> routines.Monitor:
        options.setdefault("signals", ())
        monitor = routines.Monitor(*given, **options)
        self.monitors.append(monitor)
        monitor.start()
        return monitor

    def blocker(self, name: str = "blocked") -> Stubborn:
        """A routine whose start() blocks, whatever stop() says, until the test ends."""
        blocked = Stubborn(name)
        self.blocked.append(blocked)
        return blocked

    def finish(self, monitor: routines.Monitor) -> routines.ShutdownReport:
        """Shut the monitor down and return its report."""
        monitor.shutdown("test over")
        report = monitor.wait(WAIT)
        assert report is not None, "the monitor did not shut down"
        return report

    def ended(self, monitor: routines.Monitor) -> routines.ShutdownReport:
        """The report of a monitor that ends by itself."""
        report = monitor.wait(WAIT)
        assert report is not None, "the monitor did not end by itself"
        return report

    def close(self) -> None:
        for blocked in self.blocked:
            blocked.release.set()
        for monitor in self.monitors:
            monitor.shutdown("test over")
            assert monitor.wait(WAIT) is not None, "the monitor did not shut down"


def status_of(monitor: routines.Monitor, name: str) -> routines.RoutineStatus:
    (status,) = (s for s in monitor.status() if s.name == name)
    return status


# -- periodic routines on a FakeClock ----------------------------------------------------------


class Calls:
    """A handler that records the fake time of each run and may take fake time itself.

    `takes` is how long every run takes, or the durations of the first runs (then 0).
    """

    def __init__(
        self, clock: FakeClock, *, takes: float | list[float] = 0.0, result: object = None
    ) -> None:
        self.clock = clock
        self.durations = iter(takes) if isinstance(takes, list) else None
        self.takes = 0.0 if isinstance(takes, list) else takes
        self.result = result
        self.times: list[float] = []
        self.threads: list[str] = []
        self.lock = threading.Lock()

    def __call__(self) -> object:
        with self.lock:
            self.times.append(self.clock.now())
            self.threads.append(threading.current_thread().name)
        takes = next(self.durations, 0.0) if self.durations is not None else self.takes
        if takes:
            self.clock.advance(takes)
        return self.result

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.times)


def step(clock: FakeClock, seconds: float, sleepers: int = 1) -> None:
    """Advance the clock, then wait until the routine is waiting again."""
    clock.advance(seconds)
    clock.wait_for_sleepers(sleepers)


class ObjectHandler:
    """A handler object with Sourcegraph's ErrorHandler and Finalizer hooks."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.handled: list[Exception] = []
        self.shutdowns: list[str] = []

    def __call__(self) -> None:
        if self.error is not None:
            raise self.error

    def handle_error(self, exc: Exception) -> None:
        self.handled.append(exc)

    def on_shutdown(self) -> None:
        self.shutdowns.append(threading.current_thread().name)


# -- handlers that are coroutines (OPERATIONS.md section 8): calling one runs none of its body --


async def async_handler(*args: object) -> None:
    raise AssertionError("an async handler must never be accepted, so never called")


async def async_generator_handler(*args: object) -> Any:
    yield args


class AsyncCallable:
    async def __call__(self, *args: object) -> None:
        raise AssertionError("never called")

    async def method(self, *args: object) -> None:
        raise AssertionError("never called")


# Every way to hand over an async def function, for every argument that takes a callable.
ASYNC_HANDLERS = {
    "async-def": async_handler,
    "async-generator": async_generator_handler,
    "partial": functools.partial(async_handler),
    "partial-of-partial": functools.partial(functools.partial(async_handler, 1)),
    "async-call-object": AsyncCallable(),
    "async-bound-method": AsyncCallable().method,
}
