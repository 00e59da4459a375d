"""Real signals, sent to this process while Monitor.run() blocks in the main thread."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from types import FrameType

import pytest

import routines
from routines._flag import Flag
from routines._signals import wait_interruptibly

from helpers import EXAMPLE_WAIT, NO_RESTART, WAIT, Gate, LogWatcher, Stubborn, join


@pytest.fixture
def background() -> Iterator[Callable[[Callable[[], object]], None]]:
    """Runs helper functions on threads that the test joins before it ends."""
    threads: list[threading.Thread] = []

    def spawn(fn: Callable[[], object]) -> None:
        thread = threading.Thread(target=fn, name="test-signaller")
        threads.append(thread)
        thread.start()

    yield spawn
    for thread in threads:
        join(thread)


def kill_when(event: threading.Event, signum: int) -> Callable[[], None]:
    def send() -> None:
        assert event.wait(WAIT)
        os.kill(os.getpid(), signum)

    return send


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_shutdown_signal_stops_every_routine(
    signum: int, background: Callable[[Callable[[], object]], None]
) -> None:
    gates = [Gate("a"), Gate("b")]
    background(kill_when(gates[1].started, signum))
    report = routines.Monitor(*gates, stop_timeout=WAIT).run()
    assert report.reason == f"received {signal.Signals(signum).name}"
    assert report.signal == signum
    assert report.forced is False
    assert [o.state for o in report.outcomes] == ["stopped", "stopped"]
    assert report.exit_code == 0


def test_a_signal_raised_on_a_routine_thread_reaches_the_monitor() -> None:
    def raise_sigterm() -> None:
        signal.raise_signal(signal.SIGTERM)  # delivered to this (non-main) thread
        routines.sleep(WAIT)

    report = routines.Monitor(routines.CallbackRoutine(raise_sigterm, name="raiser")).run()
    assert report.signal == signal.SIGTERM
    assert report.outcomes[0].state == "stopped"


def test_handlers_are_installed_before_any_routine_starts() -> None:
    seen: list[object] = []

    def look() -> None:
        seen.append(signal.getsignal(signal.SIGTERM))

    routines.Monitor(routines.CallbackRoutine(look), restart=NO_RESTART).run()
    assert seen
    assert seen[0] not in (signal.SIG_DFL, signal.SIG_IGN, None)


def test_a_second_signal_during_shutdown_forces_the_end(
    background: Callable[[Callable[[], object]], None],
) -> None:
    stubborn, gate = Stubborn(), Gate("polite")
    polite_stopped = threading.Event()

    def on_event(event: routines.RoutineEvent) -> None:
        if (event.routine, event.kind) == ("polite", "stopped"):
            polite_stopped.set()

    background(kill_when(stubborn.started, signal.SIGTERM))
    background(kill_when(polite_stopped, signal.SIGINT))
    try:
        report = routines.Monitor(stubborn, gate, stop_timeout=60, on_event=on_event).run()
    finally:
        stubborn.release.set()
    assert report.forced is True
    assert report.reason == "received SIGTERM"
    abandoned, polite = report.outcomes
    assert abandoned.state == "abandoned"
    assert abandoned.stack is not None
    assert polite.state == "stopped"
    assert report.exit_code == 1
    assert report.duration < 60


def test_a_signal_during_a_shutdown_started_by_shutdown_forces_the_end(
    background: Callable[[Callable[[], object]], None],
) -> None:
    stubborn = Stubborn()
    stop_asked = threading.Event()
    stubborn.stop = stop_asked.set  # type: ignore[method-assign]
    monitor = routines.Monitor(stubborn, stop_timeout=60)

    def shutdown_then_signal() -> None:
        assert stubborn.started.wait(WAIT)
        monitor.shutdown("deploy")
        assert stop_asked.wait(WAIT)
        os.kill(os.getpid(), signal.SIGTERM)

    background(shutdown_then_signal)
    try:
        report = monitor.run()
    finally:
        stubborn.release.set()
    assert report.forced is True
    assert report.reason == "deploy"
    assert report.outcomes[0].state == "abandoned"


def test_on_signal_callbacks_run_on_a_monitor_thread_without_shutting_down(
    background: Callable[[Callable[[], object]], None],
) -> None:
    gate = Gate()
    reloaded = threading.Event()
    callback_threads: list[str] = []

    def reload() -> None:
        callback_threads.append(threading.current_thread().name)
        reloaded.set()

    def send() -> None:
        assert gate.started.wait(WAIT)
        os.kill(os.getpid(), signal.SIGHUP)
        assert reloaded.wait(WAIT)
        assert not gate.returned.is_set()
        os.kill(os.getpid(), signal.SIGTERM)

    background(send)
    report = routines.Monitor(gate, on_signal={signal.SIGHUP: reload}).run()
    assert report.signal == signal.SIGTERM
    assert callback_threads == ["routines:monitor:signals"]


def test_an_on_signal_callback_can_shut_the_monitor_down(
    background: Callable[[Callable[[], object]], None],
) -> None:
    gate = Gate()
    holder: list[routines.Monitor] = []
    background(kill_when(gate.started, signal.SIGUSR1))
    monitor = routines.Monitor(
        gate, signals=(), on_signal={signal.SIGUSR1: lambda: holder[0].shutdown("usr1")}
    )
    holder.append(monitor)
    report = monitor.run()
    assert report.reason == "usr1"
    assert report.signal is None


def test_an_on_signal_callback_that_raises_is_logged_and_the_monitor_goes_on(
    background: Callable[[Callable[[], object]], None],
) -> None:
    gate = Gate()

    def broken() -> None:
        raise RuntimeError("reload failed")

    with LogWatcher() as logs:

        def send() -> None:
            assert gate.started.wait(WAIT)
            os.kill(os.getpid(), signal.SIGUSR1)
            logs.wait_for("on_signal raised")
            os.kill(os.getpid(), signal.SIGTERM)

        background(send)
        report = routines.Monitor(gate, on_signal={signal.SIGUSR1: broken}).run()
    assert report.signal == signal.SIGTERM
    assert report.ok


def test_previous_handlers_and_wakeup_fd_are_restored() -> None:
    def custom(signum: int, frame: FrameType | None) -> None:
        pass

    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous_handler = signal.signal(signal.SIGUSR2, custom)
    previous_fd = signal.set_wakeup_fd(writer.fileno())
    try:
        report = routines.Monitor(
            routines.CallbackRoutine(lambda: None), signals=(signal.SIGUSR2,), restart=NO_RESTART
        ).run()
        assert report.reason == "all routines ended"
        assert signal.getsignal(signal.SIGUSR2) is custom
        assert signal.set_wakeup_fd(previous_fd) == writer.fileno()
    finally:
        signal.signal(signal.SIGUSR2, previous_handler)
        reader.close()
        writer.close()


def test_a_wakeup_fd_closed_by_its_owner_during_run_is_left_unset_the_handlers_restored() -> None:
    reader, writer = os.pipe()
    os.set_blocking(writer, False)
    previous_fd = signal.set_wakeup_fd(writer)
    before = signal.getsignal(signal.SIGTERM)

    def close_the_programs_wakeup_fd() -> None:
        os.close(writer)

    try:
        with LogWatcher() as logs:
            report = routines.Monitor(
                routines.CallbackRoutine(close_the_programs_wakeup_fd), restart=NO_RESTART
            ).run()
        assert report.ok
        assert signal.getsignal(signal.SIGTERM) is before
        assert signal.set_wakeup_fd(previous_fd) == -1  # not the run's own socket, now closed
        assert f"the signal wakeup fd found before run() ({writer}) was closed" in logs.text()
    finally:
        signal.set_wakeup_fd(previous_fd)
        os.close(reader)


def test_a_wakeup_socket_a_restore_could_not_give_back_is_never_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from routines import _signals

    previous_fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(previous_fd)
    before = signal.getsignal(signal.SIGUSR2)
    catcher = _signals.SignalCatcher([signal.SIGUSR2])
    catcher.__enter__()
    writer = catcher._writer

    def interrupted(fd: int, **options: object) -> int:
        raise KeyboardInterrupt  # every time: the restore gives up

    monkeypatch.setattr(signal, "set_wakeup_fd", interrupted)
    try:
        with pytest.raises(KeyboardInterrupt):
            catcher.__exit__(None, None, None)
    finally:
        monkeypatch.undo()
        wakeup_fd_after = signal.set_wakeup_fd(previous_fd)
        signal.signal(signal.SIGUSR2, before)
    try:
        assert wakeup_fd_after == writer.fileno()
        assert writer.fileno() != -1  # open: a signal meanwhile wrote to it, not to a closed fd
    finally:
        _signals._STILL_THE_WAKEUP_FD.remove((catcher._reader, writer))
        catcher._previous_wakeup_fd.clear()  # given back above
        catcher.close()


def test_handlers_are_restored_when_run_is_interrupted_by_an_exception(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = signal.getsignal(signal.SIGTERM)
    monitor = routines.Monitor(Gate())

    def broken_start() -> None:
        raise MemoryError("no threads left")

    monkeypatch.setattr(monitor, "start", broken_start)
    with pytest.raises(MemoryError):
        monitor.run()
    assert signal.getsignal(signal.SIGTERM) is before


def test_run_off_the_main_thread_with_signals_raises_and_starts_nothing() -> None:
    gate = Gate()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            routines.Monitor(gate).run()
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    join(thread)
    assert len(errors) == 1
    assert "signals=()" in str(errors[0])
    assert "shutdown()" in str(errors[0])
    assert gate.runs == 0


def test_run_off_the_main_thread_works_without_signals() -> None:
    gate = Gate()
    monitor = routines.Monitor(gate, signals=())
    reports: list[routines.ShutdownReport] = []
    thread = threading.Thread(target=lambda: reports.append(monitor.run()))
    thread.start()
    assert gate.started.wait(WAIT)
    monitor.shutdown("from main")
    join(thread)
    assert reports[0].reason == "from main"


def test_run_works_when_the_process_has_descriptors_past_1024(
    background: Callable[[Callable[[], object]], None],
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the hard descriptor limit is {hard}: can't open past 1024")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held: list[socket.socket] = []
    try:
        while not held or held[-1].fileno() < 1030:
            held.extend(socket.socketpair())
        gate = Gate()
        background(kill_when(gate.started, signal.SIGTERM))
        report = routines.Monitor(gate).run()
    finally:
        for sock in held:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert report.signal == signal.SIGTERM
    assert report.ok


def test_run_stops_the_routines_before_an_exception_from_its_pump_goes_on(
    monkeypatch: pytest.MonkeyPatch, background: Callable[[Callable[[], object]], None]
) -> None:
    gate = Gate()
    monitor = routines.Monitor(gate)

    def broken(signum: int) -> None:
        raise RuntimeError("pump broke")

    monkeypatch.setattr(monitor, "_shutdown_signal", broken)
    background(kill_when(gate.started, signal.SIGTERM))
    with pytest.raises(RuntimeError, match="pump broke"):
        monitor.run()
    assert gate.returned.is_set()
    report = monitor.wait(0)
    assert report is not None
    assert "pump broke" in report.reason


def test_run_without_signals_stops_the_routines_before_an_exception_that_broke_its_wait(
    background: Callable[[Callable[[], object]], None],
) -> None:
    class Broken(Exception):
        pass

    def raise_broken(signum: int, frame: FrameType | None) -> None:
        raise Broken  # as Python's default SIGINT handler raises KeyboardInterrupt

    gate = Gate()
    monitor = routines.Monitor(gate, signals=())
    previous = signal.signal(signal.SIGUSR1, raise_broken)
    try:
        background(kill_when(gate.started, signal.SIGUSR1))
        with pytest.raises(Broken):
            monitor.run()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert gate.returned.is_set()
    report = monitor.wait(0)
    assert report is not None
    assert "Broken" in report.reason


def test_a_signal_whose_wakeup_byte_finds_no_room_is_not_lost() -> None:
    from routines._signals import SignalCatcher

    with SignalCatcher([signal.SIGUSR2]) as catcher:
        with contextlib.suppress(BlockingIOError):
            while True:  # as a flood of another signal leaves it: the wakeup socket is full
                catcher._writer.send(bytes(65536))
        os.kill(os.getpid(), signal.SIGUSR2)  # CPython drops its byte
        assert catcher.wait(0) == [signal.SIGUSR2]


def test_wait_interruptibly_times_out_off_the_main_thread_and_on_it() -> None:
    flag = Flag()
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(wait_interruptibly(flag, 0.01)))
    thread.start()
    join(thread)
    assert results == [False]
    assert wait_interruptibly(flag, 0.01) is False
    flag.set()
    assert wait_interruptibly(flag, None) is True


# A signal that another thread takes does not interrupt the main thread's lock wait: CPython runs
# the Python handler only when the main thread next runs bytecode. The program blocks SIGUSR1 in
# its main thread, so that its helper thread takes it, and waits with a timeout of a minute.
_SIGNAL_TAKEN_BY_ANOTHER_THREAD = textwrap.dedent(
    """
    import os, signal, threading, time
    from routines._flag import Flag
    from routines._signals import wait_interruptibly

    flag = Flag()
    signal.signal(signal.SIGUSR1, lambda signum, frame: flag.set())
    masked = threading.Event()
    def send():
        masked.wait()
        time.sleep(0.2)  # a moment for the main thread to be in its wait
        os.kill(os.getpid(), signal.SIGUSR1)
    threading.Thread(target=send).start()  # before the mask: this thread may take the signal
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    masked.set()
    print(wait_interruptibly(flag, 60.0))
    """
)


def test_on_the_main_thread_a_signal_handler_runs_while_it_waits() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SIGNAL_TAKEN_BY_ANOTHER_THREAD],
        capture_output=True,
        text=True,
        timeout=EXAMPLE_WAIT,
        check=False,
    )
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "True", "")
