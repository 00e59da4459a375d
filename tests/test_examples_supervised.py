"""examples/supervised.py runs as a program: one routine recovers, the other is given up on."""

from __future__ import annotations

import re
import signal

import pytest

from helpers import Example


def test_the_example_recovers_one_routine_gives_up_on_the_other_and_exits_1() -> None:
    with Example("supervised.py") as demo:
        code = demo.wait()
    output = demo.output
    assert code == 1, demo.errors
    assert "flaky-db: connected on attempt 4" in output
    assert "event: broken-job gave_up (ValueError: config file is corrupt)" in output
    reason = "routine 'broken-job' gave up after 3 restarts within 10s"
    assert f"exit code 1: {reason}" in output
    assert re.search(r"^\s*flaky-db\s+stopped\s+-$", output, re.MULTILINE), output
    assert re.search(r"^\s*broken-job\s+failed\s+ValueError", output, re.MULTILINE), output


def test_the_example_logs_each_failure_once_with_its_traceback() -> None:
    with Example("supervised.py") as demo:
        demo.wait()
    errors = demo.errors
    assert errors.count("Traceback (most recent call last)") == 2  # one per routine
    assert errors.count("log: WARNING routine 'broken-job' failed again") == 3


def test_the_example_prints_events_in_order_for_each_routine() -> None:
    with Example("supervised.py") as demo:
        demo.wait()
    broken = re.findall(r"^event: broken-job +(\w+)", demo.output, re.MULTILINE)
    assert broken == [*(["started", "failed", "restarting"] * 3), "started", "failed", "gave_up"]
    flaky = re.findall(r"^event: flaky-db +(\w+)", demo.output, re.MULTILINE)
    assert flaky == [*(["started", "failed", "restarting"] * 3), "started", "stopped"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_example_with_continue_runs_on_after_giving_up_until_a_signal(signum: int) -> None:
    with Example("supervised.py", "--continue") as demo:
        demo.expect("event: broken-job gave_up")
        demo.expect("flaky-db: connected")
        demo.send(signum)
        code = demo.wait()
    output = demo.output
    assert code == 1, demo.errors  # broken-job failed
    assert "flaky-db: disconnected" in output
    assert f"shutdown (received {signal.Signals(signum).name})" in output
    assert "KeyboardInterrupt" not in demo.errors


def test_the_example_stops_cleanly_on_ctrl_c_before_anything_is_given_up() -> None:
    with Example("supervised.py") as demo:
        demo.expect("event: ")  # the monitor runs: its signal handlers are in place
        demo.send(signal.SIGINT)
        code = demo.wait()
    assert code in (0, 1), demo.errors  # 1 if a routine was waiting to restart
    assert "shutdown (received SIGINT)" in demo.output
    assert "gave_up" not in demo.output
    assert "KeyboardInterrupt" not in demo.errors
