"""examples/periodic.py runs as a program: it says hello, then stops cleanly on a signal."""

from __future__ import annotations

import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "periodic.py"
WAIT = 10.0  # a fresh interpreter on a loaded machine; the hello itself comes at once


def read_until(process: subprocess.Popen[str], wanted: str, timeout: float) -> list[str]:
    """The lines of the process's stdout up to and including one that contains `wanted`."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while not any(wanted in line for line in lines):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {wanted!r} within {timeout}s; got {lines}"
            if selector.select(remaining):
                line = process.stdout.readline()
                assert line, f"stdout closed before {wanted!r}; got {lines}"
                lines.append(line)
    return lines


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_example_says_hello_and_stops_cleanly_on_a_signal(signum: int) -> None:
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLE)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    try:
        first = read_until(process, "Hello from the background!", WAIT)
        process.send_signal(signum)
        rest, errors = process.communicate(timeout=WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=WAIT)
    output = "".join(first) + rest
    assert process.returncode == 0, errors
    assert output.startswith("periodic: saying hello every 2 seconds")
    assert "hello: no more hellos" in output
    assert f"received {signal.Signals(signum).name}" in output
    assert re.search(r"^\s*hello\s+stopped\b", output, re.MULTILINE), output
    assert "could not say hello" not in errors
