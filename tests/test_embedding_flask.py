"""The Flask recipe (examples/hosts/flask_app.py) under a real `flask run`, with and without the
reloader: the routines run in exactly one process, the one that serves, and Ctrl-C or SIGTERM
stops them with every accepted job run."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from hosting import Client, Host, free_port, jobs, wait_until

pytest.importorskip("flask")

pytestmark = pytest.mark.timeout(60)


def flask(tmp_path: Path, *args: str) -> Host:
    return Host(tmp_path, "-m", "flask", "--app", "flask_app", *args)


@pytest.mark.parametrize(
    ("reload", "signum"),
    [
        pytest.param(False, signal.SIGINT, id="no-reload-SIGINT"),
        pytest.param(False, signal.SIGTERM, id="no-reload-SIGTERM"),
        # Not SIGTERM: werkzeug's watcher then kills its child at once (docs/embedding.md).
        pytest.param(True, signal.SIGINT, id="reload-SIGINT"),
    ],
)
def test_flask_run_runs_the_routines_in_one_process_and_loses_no_job(
    tmp_path: Path, reload: bool, signum: int
) -> None:
    port = free_port()
    options = ["--reload"] if reload else ["--no-reload"]
    with flask(tmp_path, "run", "--port", str(port), *options) as host:
        client = Client(port)
        serving = client.ready(host)["pid"]
        # Ctrl-C in a terminal signals the whole group: the reloader's watcher and its child.
        accepted = client.submit_then_signal(host, jobs("job"), signum, group=True)
        # The watcher may exit first: wait for the child's shutdown to be over.
        wait_until(lambda: len(host.jobs.stopped()) == len(host.jobs.started()), "stopped")
    started = host.jobs.started()
    if reload:
        # The watcher never starts them; a reload (a file changed) stops them before its new
        # child starts them again: never two processes at once.
        assert serving in started
        assert host.process.pid not in started
    else:
        assert started == [serving] == [host.process.pid]
    host.jobs.assert_one_process_at_a_time()
    assert len(accepted) == 40
    host.jobs.assert_nothing_lost(accepted)
    assert host.jobs.done_by() <= set(started)
    assert "Traceback" not in host.errors


def test_other_flask_commands_do_not_start_the_routines(tmp_path: Path) -> None:
    with flask(tmp_path, "routes") as host:
        assert host.wait() == 0, host.errors
    assert "/jobs/<job>" in host.output
    assert host.jobs.lines() == []
