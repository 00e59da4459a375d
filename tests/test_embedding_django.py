"""The Django recipe (examples/hosts/manage.py, jobsapp/) under real Django: `ready()` starts the
routines only in the process `runserver` serves from, never in other management commands, and
`runroutines` runs them under `routines.monitor()`; every accepted job runs."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from hosting import Client, Host, free_port, jobs, wait_until

pytest.importorskip("django")

pytestmark = pytest.mark.timeout(60)


def manage(tmp_path: Path, *args: str) -> Host:
    return Host(tmp_path, "manage.py", *args)


def test_a_management_command_does_not_start_the_routines(tmp_path: Path) -> None:
    with manage(tmp_path, "check") as host:
        assert host.wait() == 0, host.errors
    assert "no issues" in host.output
    assert host.jobs.lines() == []


def test_runserver_runs_the_routines_in_the_serving_child_only(tmp_path: Path) -> None:
    port = free_port()
    with manage(tmp_path, "runserver", f"127.0.0.1:{port}") as host:
        client = Client(port)
        serving = client.ready(host)["pid"]
        accepted = client.submit_then_signal(host, jobs("job"), signal.SIGINT, group=True)
        wait_until(lambda: len(host.jobs.stopped()) == len(host.jobs.started()), "stopped")
    started = host.jobs.started()
    assert serving in started
    assert host.process.pid not in started  # the autoreloader's watcher
    host.jobs.assert_one_process_at_a_time()
    assert len(accepted) == 40
    host.jobs.assert_nothing_lost(accepted)
    assert "Traceback" not in host.errors


def test_runroutines_drains_its_queue_on_sigterm_and_exits_with_the_report(
    tmp_path: Path,
) -> None:
    with manage(tmp_path, "runroutines", "--jobs", "40") as host:
        wait_until(lambda: host.jobs.done(), "a job ran")
        host.send(signal.SIGTERM)
        code = host.wait()
    assert code == 0, host.errors
    assert "shutdown (received SIGTERM)" in host.output
    host.jobs.assert_nothing_lost([f"job{index}" for index in range(40)])
    assert host.jobs.stopped() == [f"stopped {host.process.pid} True"]
    assert host.jobs.started() == [host.process.pid]
