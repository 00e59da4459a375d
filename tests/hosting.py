"""What the embedding tests share: the recipes under examples/hosts/ run under their real host
(gunicorn, `flask run`, Django's manage.py) in a process group of their own, an HTTP client
for their `/jobs/<id>` and `/status`, and the jobs file their background work writes
(examples/hosts/background.py says what each line means)."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from helpers import EXAMPLE_WAIT, EXAMPLES, Program

HOSTS = EXAMPLES / "hosts"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(condition: Callable[[], object], what: str, timeout: float = EXAMPLE_WAIT) -> None:
    """Poll `condition` until it is true, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        pause.wait(0.05)


class Host(Program):
    """A recipe's host, started from examples/hosts/ with the jobs file in `tmp_path`."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.jobs = JobsFile(tmp_path / "jobs.log")
        env = {
            **os.environ,
            "ROUTINES_EXAMPLE_JOBS": str(self.jobs.path),
            "PYTHONUNBUFFERED": "1",
            # gunicorn (25.1+) puts its control socket there: not in the home directory
            "XDG_RUNTIME_DIR": str(tmp_path),
        }
        super().__init__([sys.executable, *args], cwd=HOSTS, env=env, own_group=True)


class JobsFile:
    """The lines the background work wrote: who started, which jobs ran, what was handed back."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[str]:
        return self.path.read_text().splitlines() if self.path.exists() else []

    def started(self) -> list[int]:
        """The pids of the processes that started the routines, in order."""
        return [int(line.split()[1]) for line in self.lines() if line.startswith("started ")]

    def stopped(self) -> list[str]:
        return [line for line in self.lines() if line.startswith("stopped ")]

    def done(self) -> list[str]:
        return [line.split()[1] for line in self.lines() if line.startswith("done ")]

    def done_by(self) -> set[int]:
        return {int(line.split()[2]) for line in self.lines() if line.startswith("done ")}

    def handed_back(self) -> list[str]:
        prefix = "handed back "
        return [line[len(prefix) :] for line in self.lines() if line.startswith(prefix)]

    def assert_one_process_at_a_time(self) -> None:
        """Each process that started the routines stopped them (cleanly) before the next one
        started them: under a reloader, a reload stops them before its new child starts."""
        starts_and_stops = [line for line in self.lines() if line.startswith("st")]
        assert starts_and_stops == [
            line for pid in self.started() for line in (f"started {pid}", f"stopped {pid} True")
        ]

    def assert_nothing_lost(self, accepted: list[str]) -> None:
        """Every accepted job ran once, or was handed back (and none of them both)."""
        done, back = self.done(), self.handed_back()
        assert len(done) == len(set(done)), f"a job ran twice: {sorted(done)}"
        assert not set(done) & set(back), f"ran and handed back: {set(done) & set(back)}"
        lost = set(accepted) - set(done) - set(back)
        assert not lost, f"{len(lost)} of {len(accepted)} accepted jobs were lost: {sorted(lost)}"


class Client:
    """The recipes' two endpoints on 127.0.0.1:`port`."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def status(self) -> dict[str, object] | None:
        """What /status says, or None while nothing answers."""
        try:
            with urllib.request.urlopen(f"{self.base}/status", timeout=EXAMPLE_WAIT) as answer:
                found: dict[str, object] = json.load(answer)
                return found
        except OSError:  # refused or reset while the server starts or stops
            return None

    def ready(self, host: Program) -> dict[str, object]:
        """Wait until the host serves /status with its routines started; what it said."""
        said: list[dict[str, object]] = []

        def answered() -> bool:
            assert host.process.poll() is None, f"the host exited:\n{host.output}{host.errors}"
            status = self.status()
            if status is not None and status["started"]:
                said.append(status)
            return bool(said)

        wait_until(answered, "the host serving with its routines started")
        return said[0]

    def submit(self, job: str) -> tuple[int, str]:
        """POST /jobs/<job>: the HTTP status and the body (any failure to connect is a 0)."""
        request = urllib.request.Request(f"{self.base}/jobs/{job}", method="POST", data=b"")
        try:
            with urllib.request.urlopen(request, timeout=EXAMPLE_WAIT) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError as error:
            return 0, str(error)

    def submit_all(self, jobs: list[str]) -> list[str]:
        """Submit each job; the ones the host accepted (202)."""
        return [job for job in jobs if self.submit(job)[0] == 202]

    def submit_then_signal(
        self, host: Program, jobs: list[str], signum: int, *, group: bool = False
    ) -> list[str]:
        """Submit the jobs, send the host (or its whole group) `signum` and wait for it to
        exit, cleanly; the jobs it accepted."""
        accepted = self.submit_all(jobs)
        assert accepted, f"the host accepted no job:\n{host.output}{host.errors}"
        if group:
            host.send_group(signum)
        else:
            host.send(signum)
        code = host.wait()
        assert code in (0, -signum), f"exit code {code}:\n{host.output}{host.errors}"
        return accepted


def jobs(prefix: str, count: int = 40) -> list[str]:
    """Job names for a test: prefix0, prefix1, ..."""
    return [f"{prefix}{index}" for index in range(count)]
