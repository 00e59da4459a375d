"""House rules every test obeys: no routine thread left behind, no uncaught thread exception,
and the signal handlers as they were. Then the fixtures that more than one test file uses."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator

import pytest

import routines
from routines._threads import join_all
from routines.testing import FakeClock

from helpers import Harness, Started


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak",
        action="store_true",
        help="also run the long reliability variants (tests marked soak); see tests/README.md",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "soak: a long reliability variant, run with --soak")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="a long variant: run with --soak")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


# Threads that end on their own shortly after the test (a stop-callback helper, say) get this
# long; anything alive after it is a leak.
THREAD_GRACE = 5.0


@pytest.fixture(autouse=True)
def no_thread_left_behind() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    leftover = [thread for thread in threading.enumerate() if thread not in before]
    alive = join_all(leftover, THREAD_GRACE)
    assert not alive, f"the test left threads running: {[t.name for t in alive]}"


@pytest.fixture(autouse=True)
def no_uncaught_thread_exception() -> Iterator[None]:
    caught: list[threading.ExceptHookArgs] = []
    previous = threading.excepthook
    threading.excepthook = caught.append
    try:
        yield
    finally:
        threading.excepthook = previous
    assert not caught, f"exceptions escaped threads: {[(a.thread, a.exc_value) for a in caught]}"


@pytest.fixture(autouse=True)
def signal_handlers_restored() -> Iterator[None]:
    watched = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
    before = {signum: signal.getsignal(signum) for signum in watched}
    wakeup_before = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup_before)
    yield
    after = {signum: signal.getsignal(signum) for signum in watched}
    assert after == before, "the test changed signal handlers and did not restore them"
    wakeup_after = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup_after)
    assert wakeup_after == wakeup_before, "the test left a signal wakeup fd installed"


# -- fixtures shared by several test files -----------------------------------------------------


@pytest.fixture
def harness() -> Iterator[Harness]:
    """Started monitors for the test; at teardown, blocked routines released and all shut down."""
    made = Harness()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at the end of the test: what hangs on it ends, so no thread outlives the test."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def run() -> Iterator[Callable[[routines.Routine], Started]]:
    """Start routines on threads; stop them and join their threads after the test."""
    started: list[Started] = []

    def start(routine: routines.Routine) -> Started:
        started.append(Started(routine))
        return started[-1]

    yield start
    for each in started:
        each.routine.stop()
        each.thread.join(5)
