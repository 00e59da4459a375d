"""`routines dashboard`: the dashboard served on its own, as a real process started through the
installed console script, stopped by SIGTERM; 127.0.0.1 unless told otherwise, any other
address refused without a token, and with one every request refused without it."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from routines._cli.dashboard import is_loopback
from routines._cli.main import main

from .conftest import Target
from helpers import Program, root_logging_restored

SCRIPT = Path(sys.executable).parent / "routines"  # the console script pip installed
TOKEN = "a-token-of-some-length-42"


def dashboard(target: Target, *options: str, env: dict[str, str] | None = None) -> Program:
    return Program(
        [str(SCRIPT), "dashboard", "--store", target.url, "--port", "0", *options],
        env={**os.environ, **(env or {})},
    )


def address_of(program: Program) -> tuple[str, int]:
    line = program.expect("routines dashboard: serving")
    host, _, port = line.split(" at http://")[1].split("/")[0].rpartition(":")
    return host, int(port)


def get(address: tuple[str, int], path: str, cookie: str | None = None) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection(*address, timeout=10)
    connection.request("GET", path, headers={"Cookie": cookie} if cookie else {})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_it_serves_on_127_0_0_1_until_sigterm(sqlite_target: Target) -> None:
    sqlite_target.open().queue("emails").enqueue("x")
    with dashboard(sqlite_target) as program:
        address = address_of(program)
        assert address[0] == "127.0.0.1"
        response = get(address, "/")
        assert response.status == 200
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert get(address, "/queues/emails").status == 200
        program.send(signal.SIGTERM)
        assert program.wait() == 0, program.errors
    assert "shutdown (received SIGTERM)" in program.output
    assert '"GET /queues/emails HTTP/1.1" 200' in program.errors  # each request, logged
    assert "Traceback" not in program.errors


def test_with_a_token_every_request_needs_it(sqlite_target: Target) -> None:
    # On every address, so with a token; given in the environment, out of the process list.
    with dashboard(
        sqlite_target, "--host", "0.0.0.0", env={"ROUTINES_DASHBOARD_TOKEN": TOKEN}
    ) as program:
        _, port = address_of(program)
        address = ("127.0.0.1", port)
        assert get(address, "/").status == 403
        assert get(address, "/static/dashboard.css").status == 403
        assert get(address, "/?token=not-the-token-at-all").status == 403
        response = get(address, f"/queues/emails?token={TOKEN}")
        assert response.status == 303
        assert response.headers["Location"] == "/queues/emails"
        cookie = response.headers["Set-Cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert TOKEN not in cookie
        assert get(address, "/queues/emails", cookie=cookie.split(";")[0]).status == 200
        program.send(signal.SIGTERM)
        assert program.wait() == 0, program.errors
    assert TOKEN not in program.output + program.errors


@pytest.mark.parametrize("host", ["0.0.0.0", "", "192.168.1.20", "db.example.com", "::"])
def test_another_address_without_a_token_is_refused_before_anything_opens(
    host: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/never.db"
    with pytest.raises(SystemExit) as exited:
        main(["dashboard", "--store", url, "--host", host])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "usage: routines dashboard" in error
    assert "without --token" in error
    assert "listen on 127.0.0.1" in error
    assert not (tmp_path / "never.db").exists()  # no store was opened


def test_a_short_token_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["dashboard", "--store", f"sqlite:///{tmp_path}/x.db", "--token", "short"])
    assert exited.value.code == 2
    assert "--token must be at least 16 characters, got 5" in capsys.readouterr().err


def test_loopback_addresses() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.8.9.10", "localhost", "::1", "[::1]"]))
    assert not any(map(is_loopback, ["0.0.0.0", "", "::", "10.0.0.1", "example.com"]))


def test_a_port_in_use_is_one_line_and_exit_status_1(
    sqlite_target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = socket.socket()
    try:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with root_logging_restored():
            code = main(["dashboard", "--store", sqlite_target.url, "--port", str(port)])
    finally:
        taken.close()
    assert code == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the program's log lines
    assert error.startswith(f"routines dashboard: error: cannot listen on 127.0.0.1:{port}: ")
    assert error.endswith("pick another --port or --host")
