"""A Monitor, a pool or a periodic routine used in a process forked after it started doesn't
pretend: none of its threads runs there (`_process.py`)."""

from __future__ import annotations

import json
import os
import signal
import threading
import warnings
from collections.abc import Callable, Iterator

import pytest

import routines

from helpers import WAIT, Gate, join

Probe = Callable[[], dict[str, object]]


def in_forked_child(probe: Probe) -> dict[str, object]:
    """Run `probe` in a forked child and return what it found (a JSON-able dict)."""
    reader, writer = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() with threads
        pid = os.fork()
    if pid == 0:  # the child: report and leave at once, running none of pytest's teardown
        os.close(reader)
        try:
            found = probe()
        except BaseException as exc:
            found = {"probe raised": repr(exc)}
        os.write(writer, json.dumps(found).encode())
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    result: dict[str, object] = json.loads(data)
    return result


def error_of(call: Callable[[], object]) -> str | None:
    try:
        call()
    except RuntimeError as exc:
        return str(exc)
    return None


@pytest.fixture
def pool() -> Iterator[routines.WorkerPool[int, int]]:
    pool: routines.WorkerPool[int, int] = routines.WorkerPool(lambda item: item, name="jobs")
    thread = threading.Thread(target=pool.start)
    thread.start()
    assert pool.submit(1).result(WAIT) == 1  # running
    yield pool
    pool.stop()
    join(thread)


def test_a_pool_started_before_a_fork_refuses_work_in_the_child(
    pool: routines.WorkerPool[int, int],
) -> None:
    found = in_forked_child(
        lambda: {
            "submit": error_of(lambda: pool.submit(2)),
            "state": pool.status().state,
            "why": pool.status().last_error,
        }
    )
    assert isinstance(found["submit"], str)
    assert "pool 'jobs' was started in process" in found["submit"]
    assert "forked" in found["submit"]
    assert "post_worker_init" in found["submit"]
    assert found["state"] == "stopped"
    assert "forked" in str(found["why"])
    assert pool.status().state == "running"  # the parent's pool is untouched
    assert pool.submit(3).result(WAIT) == 3


def test_status_and_stop_in_the_child_do_not_wait_for_a_lock_the_fork_left_held(
    pool: routines.WorkerPool[int, int],
) -> None:
    ran = threading.Event()
    periodic = routines.PeriodicRoutine(ran.set, name="tick", interval=60)
    thread = threading.Thread(target=periodic.start)
    thread.start()

    def probe() -> dict[str, object]:
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(int(WAIT))  # a child stuck on the lock dies, and the parent sees it
        pool.stop()
        periodic.stop()
        found: dict[str, object] = {"pool": pool.status().state, "unprocessed": pool.unprocessed()}
        return {**found, "periodic": periodic.status().state}

    try:
        assert ran.wait(WAIT)
        # As when another thread reads status() (a metrics scrape) at the moment of the fork.
        with pool._lock, pool._record._lock, periodic._lifecycle._lock, periodic._record._lock:
            found = in_forked_child(probe)
    finally:
        periodic.stop()
        join(thread)
    assert found == {"pool": "stopped", "unprocessed": [], "periodic": "stopped"}
    assert pool.submit(4).result(WAIT) == 4  # the parent's pool is untouched


def test_a_pool_never_started_before_the_fork_works_in_the_child() -> None:
    pool: routines.WorkerPool[int, int] = routines.WorkerPool(lambda item: item * 2)

    def probe() -> dict[str, object]:
        thread = threading.Thread(target=pool.start)
        thread.start()
        result = pool.submit(21).result(WAIT)
        pool.stop()
        thread.join(WAIT)
        return {"result": result}

    assert in_forked_child(probe) == {"result": 42}


def test_a_monitor_started_before_a_fork_says_so_in_the_child() -> None:
    gate = Gate("gate")
    periodic = routines.PeriodicRoutine(lambda: None, name="tick", interval=60)
    monitor = routines.Monitor(gate, periodic, signals=())
    monitor.start()
    try:
        assert gate.started.wait(WAIT)
        found = in_forked_child(
            lambda: {
                "states": [s.state for s in monitor.status()],
                "why": [s.last_error for s in monitor.status()],
                "wait": error_of(lambda: monitor.wait(0)),
                "periodic": periodic.status().state,
            }
        )
    finally:
        monitor.shutdown()
        assert monitor.wait(WAIT) is not None
    assert found["states"] == ["stopped", "stopped"]
    assert all("forked" in str(why) for why in found["why"])  # type: ignore[union-attr]
    assert "the monitor was started in process" in str(found["wait"])
    assert found["periodic"] == "stopped"
