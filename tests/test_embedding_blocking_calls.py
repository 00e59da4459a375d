"""The blocking-calls cookbook (docs/blocking-calls.md, examples/blocking_calls.py): a routine
blocked in recv(), queue.get(), a child process or input() stops, or is reported, on a real
signal, and the program exits with its report's exit code."""

from __future__ import annotations

import os
import signal
import sys

import pytest

from helpers import Example, Program

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("mode", ["socket", "queue"])
def test_a_routine_blocked_in_recv_or_get_is_woken_by_its_stop(mode: str) -> None:
    with Example("blocking_calls.py", mode) as program:
        program.expect("ready")
        program.send(signal.SIGTERM)
        code = program.wait()
    assert code == 0, program.output + program.errors
    assert "shutdown (received SIGTERM)" in program.output
    assert ": ok" in program.output


def test_a_child_process_and_its_group_are_terminated_by_the_stop() -> None:
    with Example("blocking_calls.py", "subprocess") as program:
        child = int(program.expect("child ").split()[1])
        program.send(signal.SIGINT)
        code = program.wait()
    assert code == 0, program.output + program.errors
    assert ": ok" in program.output
    with pytest.raises(ProcessLookupError):  # ended, and reaped: nothing left behind
        os.kill(child, 0)


def test_a_routine_stuck_in_input_is_reported_and_the_exit_code_is_the_reports() -> None:
    with Example("blocking_calls.py", "input", stdin=True) as program:
        program.expect("ready")
        program.send(signal.SIGTERM)
        code = program.wait()
    assert code == 1, program.output + program.errors  # the report's: not ok, not -6
    assert "timed_out" in program.output
    assert "Fatal Python error" not in program.errors


# What the recipe is for: with a plain sys.exit(), CPython aborts at exit, because the stuck
# thread holds stdin's lock (seen on CPython 3.11 with this Monitor).
NAIVE = """
import sys, routines
monitor = routines.Monitor(
    routines.CallbackRoutine(input, name="ask"), stop_timeout=0.2,
    on_event=lambda event: print("ready", flush=True) if event.kind == "started" else None,
)
report = monitor.run()
sys.exit(report.exit_code)
"""


def test_without_the_recipe_sys_exit_aborts_the_interpreter() -> None:
    with Program([sys.executable, "-c", NAIVE], stdin=True) as program:
        program.expect("ready")
        program.send(signal.SIGTERM)
        code = program.wait()
    assert code == -signal.SIGABRT, program.output + program.errors
    assert "could not acquire lock" in program.errors
