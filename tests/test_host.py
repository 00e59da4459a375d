"""`Monitor.start_in_host()`: a Monitor inside a host that owns the main thread and its
signals; chained handlers, the exit hook, and the host's deadline (`_host.py`)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from types import FrameType

import pytest

import routines

from helpers import WAIT, Example, Gate, LogWatcher

HOST = str(Path(__file__).resolve().parent / "programs" / "host.py")


def test_without_a_host_handler_the_routines_stop_before_the_process_dies_of_sigterm() -> None:
    with Example(HOST, "default") as program:
        program.expect("ready")
        program.send(signal.SIGTERM)
        code = program.wait()
    assert code == -signal.SIGTERM, program.output + program.errors
    assert "cleaned up" in program.output


def test_with_a_host_handler_the_routines_stop_and_the_host_gets_its_signal_too() -> None:
    with Example(HOST, "chained") as program:
        program.expect("ready")
        program.send(signal.SIGTERM)
        code = program.wait()
    assert code == 0, program.output + program.errors
    lines = program.output.splitlines()
    assert "the host got SIGTERM" in lines
    assert "cleaned up" in lines
    assert lines.index("cleaned up") > lines.index("the host got SIGTERM")


def test_the_exit_hook_stops_the_routines_when_the_host_returns() -> None:
    with Example(HOST, "at-exit") as program:
        program.expect("ready")
        code = program.wait()
    assert code == 0, program.errors
    assert "cleaned up" in program.output


def test_a_forked_child_that_exits_leaves_the_exit_hook_to_the_parent() -> None:
    with Example(HOST, "fork") as program:
        program.expect("ready")
        code = program.wait()
    assert code == 0, program.errors
    assert "the child exited 0" in program.output
    assert "cleaned up" in program.output
    assert "Traceback" not in program.errors


def test_a_chained_signal_reaches_the_host_handler_after_asking_for_the_shutdown() -> None:
    received: list[int] = []

    def host(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = signal.signal(signal.SIGUSR1, host)
    try:
        gate = Gate("gate")
        monitor = routines.Monitor(gate, signals=(signal.SIGUSR1,))
        hooks = monitor.start_in_host(shutdown_at_exit=False)
        assert gate.started.wait(WAIT)
        os.kill(os.getpid(), signal.SIGUSR1)
        report = monitor.wait(WAIT)
        hooks.restore()
        assert signal.getsignal(signal.SIGUSR1) is host
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert report is not None
    assert report.reason == "received SIGUSR1"
    assert received == [signal.SIGUSR1]


def test_a_stop_timeout_longer_than_the_hosts_deadline_is_logged() -> None:
    monitor = routines.Monitor(Gate("gate"), signals=(), stop_timeout=10)
    with LogWatcher() as logs:
        monitor.start_in_host(chain_signals=False, shutdown_at_exit=False, host_deadline=5)
        record = logs.wait_for("does not fit in the host's deadline")
    monitor.shutdown()
    assert monitor.wait(WAIT) is not None
    assert "10s" in record.getMessage()
    assert "5s" in record.getMessage()


def test_chaining_signals_off_the_main_thread_raises_and_starts_nothing() -> None:
    import threading

    gate = Gate("gate")
    monitor = routines.Monitor(gate)
    errors: list[BaseException] = []

    def start() -> None:
        try:
            monitor.start_in_host()
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=start)
    thread.start()
    thread.join(WAIT)
    assert len(errors) == 1
    assert "main thread" in str(errors[0])
    assert gate.runs == 0


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"chain_signals": 1}, "chain_signals"),
        ({"shutdown_at_exit": "yes"}, "shutdown_at_exit"),
        ({"host_deadline": -1}, "host_deadline"),
        ({"host_deadline": "30"}, "host_deadline"),
    ],
)
def test_bad_options_are_refused_naming_them(kwargs: dict[str, object], fragment: str) -> None:
    monitor = routines.Monitor(Gate("gate"), signals=())
    with pytest.raises((TypeError, ValueError), match=fragment):
        monitor.start_in_host(**kwargs)  # type: ignore[arg-type]
