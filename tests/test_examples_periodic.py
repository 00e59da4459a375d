"""examples/periodic.py runs as a program: it says hello, then stops cleanly on a signal."""

from __future__ import annotations

import re
import signal

import pytest

from helpers import Example


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_example_says_hello_and_stops_cleanly_on_a_signal(signum: int) -> None:
    with Example("periodic.py") as periodic:
        periodic.expect("Hello from the background!")
        periodic.send(signum)
        code = periodic.wait()
    output = periodic.output
    assert code == 0, periodic.errors
    assert output.startswith("periodic: saying hello every 2 seconds")
    assert "hello: no more hellos" in output
    assert f"received {signal.Signals(signum).name}" in output
    assert re.search(r"^\s*hello\s+stopped\b", output, re.MULTILINE), output
    assert "could not say hello" not in periodic.errors
