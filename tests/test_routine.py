from __future__ import annotations

import threading

import pytest

import routines

from helpers import WAIT, Gate, join, start_in_thread


class Hello(routines.BackgroundRoutine):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.first_line = threading.Event()

    def run(self) -> None:
        while True:
            self.lines.append("Hello there!")
            self.first_line.set()
            if self.wait(3600):
                break
        self.lines.append("done!")


def test_the_reference_routine_says_hello_then_done_when_stopped() -> None:
    hello = Hello()
    thread = start_in_thread(hello)
    assert hello.first_line.wait(WAIT)
    hello.stop()
    join(thread)
    assert hello.lines == ["Hello there!", "done!"]


def test_default_name_is_the_class_name() -> None:
    assert Hello().name == "Hello"


def test_name_can_be_given() -> None:
    assert Gate("worker").name == "worker"


def test_stop_before_start_makes_start_return_at_once() -> None:
    gate = Gate()
    gate.stop()
    gate.start()
    assert gate.runs == 0


def test_stop_is_idempotent_and_callable_from_the_routines_own_thread() -> None:
    def stop_twice() -> None:
        gate.stop()
        gate.stop()

    gate = Gate(on_run=stop_twice)
    gate.start()  # returns because run() stopped its own routine
    assert gate.runs == 1


def test_stopping_property_follows_stop() -> None:
    seen: list[bool] = []
    gate = Gate(on_run=lambda: seen.append(gate.stopping))
    thread = start_in_thread(gate)
    assert gate.started.wait(WAIT)
    gate.stop()
    assert gate.stopping is True or gate.returned.is_set()
    join(thread)
    assert seen == [False]


def test_wait_returns_false_after_the_timeout_when_not_stopped() -> None:
    assert Gate().wait(0.001) is False


def test_routine_can_be_started_again_after_it_was_stopped() -> None:
    gate = Gate()
    for _ in range(3):
        thread = start_in_thread(gate)
        assert gate.started.wait(WAIT)
        gate.started.clear()
        gate.stop()
        join(thread)
    assert gate.runs == 3


def test_starting_a_running_routine_again_raises() -> None:
    gate = Gate()
    thread = start_in_thread(gate)
    assert gate.started.wait(WAIT)
    with pytest.raises(RuntimeError, match="already running"):
        gate.start()
    gate.stop()
    join(thread)


def test_an_exception_in_run_propagates_from_start() -> None:
    class Broken(routines.BackgroundRoutine):
        def run(self) -> None:
            raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        Broken().start()


def test_a_subclass_that_forgets_super_init_gets_a_clear_error() -> None:
    class Forgetful(routines.BackgroundRoutine):
        def __init__(self) -> None:
            pass

        def run(self) -> None:
            pass

    with pytest.raises(TypeError, match=r"super\(\).__init__\(\)"):
        Forgetful().start()


def test_run_is_abstract() -> None:
    with pytest.raises(TypeError):
        routines.BackgroundRoutine()  # type: ignore[abstract]


def test_background_routine_satisfies_the_protocol() -> None:
    assert isinstance(Gate(), routines.Routine)


def test_noop_routine_waits_for_stop() -> None:
    noop = routines.NoopRoutine()
    assert noop.name == "noop"
    thread = start_in_thread(noop)
    thread.join(0.01)
    assert thread.is_alive()
    noop.stop()
    join(thread)
