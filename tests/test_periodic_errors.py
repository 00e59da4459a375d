"""What a `PeriodicRoutine` does when something raises: handler errors go to `on_error`, the
handler's `handle_error` or the log and the loop goes on; errors in those callbacks are logged;
a BaseException ends the routine and comes out of start(); `with_error_message` logs instead.
Driven by a FakeClock, like test_periodic.py.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest

from routines import REINVOKE_IMMEDIATELY, PeriodicRoutine, with_error_message
from routines.testing import FakeClock

from helpers import LOG, ObjectHandler, Started, step

# -- handler errors ----------------------------------------------------------------------------


def boom() -> None:
    raise ValueError("boom")


def test_a_handler_error_goes_to_on_error_and_the_loop_goes_on(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    errors: list[Exception] = []
    routine = PeriodicRoutine(boom, interval=10, on_error=errors.append, clock=clock)
    run(routine)
    clock.wait_for_sleepers(1)
    step(clock, 10)
    assert [str(error) for error in errors] == ["boom", "boom"]
    assert routine.status().runs == 2


def test_a_handler_error_goes_to_the_handler_objects_handle_error(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    handler = ObjectHandler(ValueError("boom"))
    run(PeriodicRoutine(handler, interval=10, clock=clock))
    clock.wait_for_sleepers(1)
    assert [str(error) for error in handler.handled] == ["boom"]


def test_on_error_wins_over_handle_error(clock: FakeClock, run: Callable[..., Started]) -> None:
    handler = ObjectHandler(ValueError("boom"))
    errors: list[Exception] = []
    run(PeriodicRoutine(handler, interval=10, on_error=errors.append, clock=clock))
    clock.wait_for_sleepers(1)
    assert len(errors) == 1
    assert handler.handled == []


def test_a_handler_error_without_a_callback_is_logged_with_traceback_and_name(
    clock: FakeClock, run: Callable[..., Started], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger=LOG)
    run(PeriodicRoutine(boom, name="booming", interval=10, clock=clock))
    clock.wait_for_sleepers(1)
    [record] = caplog.records
    assert record.name == "routines.periodic"
    assert "booming" in record.getMessage()
    assert "boom" in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[0] is ValueError


def test_a_handler_error_counts_as_a_failure_with_last_error(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    routine = PeriodicRoutine(boom, interval=10, on_error=lambda exc: None, clock=clock)
    run(routine)
    clock.wait_for_sleepers(1)
    status = routine.status()
    assert (status.runs, status.failures) == (1, 1)
    assert status.last_error == "ValueError: boom"


def test_an_error_raised_after_stop_was_asked_is_not_reported(
    clock: FakeClock, run: Callable[..., Started], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOG)

    def handler() -> None:
        routine.stop()
        raise ValueError("interrupted")

    errors: list[Exception] = []
    routine = PeriodicRoutine(handler, interval=10, on_error=errors.append, clock=clock)
    assert run(routine).finish() is None
    assert errors == []
    assert routine.status().failures == 0
    assert caplog.records == []


# -- errors in the callbacks -------------------------------------------------------------------


def test_an_exception_in_on_error_is_logged_and_the_loop_goes_on(
    clock: FakeClock, run: Callable[..., Started], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger=LOG)

    def on_error(exc: Exception) -> None:
        raise RuntimeError("callback broke")

    routine = PeriodicRoutine(boom, interval=10, on_error=on_error, clock=clock)
    run(routine)
    clock.wait_for_sleepers(1)
    step(clock, 10)
    assert routine.status().runs == 2
    assert len(caplog.records) == 2
    assert all("error callback raised" in record.getMessage() for record in caplog.records)


def test_an_exception_in_on_shutdown_is_logged(
    clock: FakeClock, run: Callable[..., Started], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger=LOG)
    routine = PeriodicRoutine(lambda: None, name="ender", on_shutdown=boom, clock=clock)
    routine.stop()
    assert run(routine).finish() is None
    [record] = caplog.records
    assert "ender" in record.getMessage()
    assert "on_shutdown" in record.getMessage()
    assert record.exc_info is not None


# -- BaseExceptions end the routine ------------------------------------------------------------


def test_a_base_exception_ends_the_routine_and_propagates_out_of_start(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    shutdowns: list[int] = []

    def handler() -> None:
        raise SystemExit(3)

    routine = PeriodicRoutine(
        handler, interval=10, on_shutdown=lambda: shutdowns.append(1), clock=clock
    )
    error = run(routine).finish()
    assert isinstance(error, SystemExit)
    assert shutdowns == [1]
    status = routine.status()
    assert (status.state, status.runs, status.failures) == ("stopped", 1, 0)
    assert status.last_error == "SystemExit: 3"


def test_a_base_exception_on_another_loop_stops_every_loop_and_propagates(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    def handler() -> None:
        if threading.current_thread().name.endswith(":2"):
            raise KeyboardInterrupt

    routine = PeriodicRoutine(handler, interval=10, concurrency=3, clock=clock)
    assert isinstance(run(routine).finish(), KeyboardInterrupt)


def test_a_base_exception_from_a_callable_concurrency_loop_propagates(
    clock: FakeClock, run: Callable[..., Started]
) -> None:
    def handler() -> None:
        raise GeneratorExit

    routine = PeriodicRoutine(handler, interval=10, concurrency=lambda: 2, clock=clock)
    assert isinstance(run(routine).finish(), GeneratorExit)


# -- with_error_message ------------------------------------------------------------------------


def test_with_error_message_logs_message_and_exception_with_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger=LOG)
    handler = with_error_message("could not say hello", boom)
    assert handler() is None
    [record] = caplog.records
    assert record.name == "routines.periodic"
    assert record.getMessage() == "could not say hello: boom"
    assert record.exc_info is not None


def test_with_error_message_passes_the_result_on() -> None:
    handler = with_error_message("oops", lambda: REINVOKE_IMMEDIATELY)
    assert handler() is REINVOKE_IMMEDIATELY


def test_with_error_message_keeps_the_loop_going_without_error_reports(
    clock: FakeClock, run: Callable[..., Started], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger=LOG)
    routine = PeriodicRoutine(with_error_message("tick failed", boom), interval=10, clock=clock)
    run(routine)
    clock.wait_for_sleepers(1)
    step(clock, 10)
    assert routine.name == "boom"
    assert (routine.status().runs, routine.status().failures) == (2, 0)
    assert [record.getMessage() for record in caplog.records] == ["tick failed: boom"] * 2


def test_with_error_message_lets_base_exceptions_through() -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        with_error_message("oops", interrupt)()
