"""The examples run as programs: each starts, does its work, and stops cleanly on a signal."""

from __future__ import annotations

import re
import signal
import urllib.request

import pytest

from helpers import EXAMPLE_WAIT, Example


def test_quickstart_shows_status_and_stops_by_itself_after_about_three_seconds() -> None:
    with Example("quickstart.py") as demo:
        code = demo.wait(EXAMPLE_WAIT * 2)
    assert code == 0, demo.errors
    output = demo.output
    assert "--- status after 3s ---" in output
    assert "shutdown (demo over after 3 seconds)" in output
    assert ": ok" in output
    assert re.search(r"^\s*heartbeat\s+stopped\s+-$", output, re.MULTILINE), output
    assert demo.errors == ""


def test_quickstart_stops_early_on_ctrl_c() -> None:
    with Example("quickstart.py") as demo:
        demo.expect("running for about 3 seconds")
        demo.send(signal.SIGINT)
        code = demo.wait()
    assert code == 0, demo.errors
    assert "shutdown (received SIGINT)" in demo.output
    assert "Traceback" not in demo.errors


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_hello_routine_says_hello_then_done_on_a_signal(signum: int) -> None:
    with Example("hello_routine.py") as hello:
        hello.expect("Hello there!")
        hello.send(signum)
        code = hello.wait()
    assert code == 0, hello.errors
    lines = hello.output.splitlines()
    assert lines[1] == "Hello there!"
    assert "done!" in lines
    assert f"shutdown (received {signal.Signals(signum).name})" in hello.output
    assert hello.errors == ""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_legacy_http_server_serves_then_stops_server_and_poller(signum: int) -> None:
    with Example("legacy_http_server.py") as server:
        line = server.expect("serving on http://")
        url = line.split("serving on ", 1)[1].strip()
        server.expect("poller: checked for work (1)")
        with urllib.request.urlopen(url, timeout=EXAMPLE_WAIT) as response:
            assert response.read() == b"hello from a legacy server\n"
        server.send(signum)
        code = server.wait()
    assert code == 0, server.errors
    output = server.output
    assert "poller: stopped" in output
    assert re.search(r"^\s*http\s+stopped\s+-$", output, re.MULTILINE), output
    assert re.search(r"^\s*poller\s+stopped\s+-$", output, re.MULTILINE), output
    assert "Traceback" not in server.errors
