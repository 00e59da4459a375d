"""The gunicorn recipes under real gunicorn (examples/hosts/gunicorn_hooks.py): routines started
in `post_worker_init`, stopped in `worker_exit`; sync and gthread workers, SIGTERM and SIGHUP
to the master, `--preload` done right, and done wrong (fork detection says so). And the fleet
recipe (examples/hosts/gunicorn_fleet.py): a schedule run once per tick across two workers."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from routines import durable

from hosting import Client, Host, free_port, jobs, wait_until

pytest.importorskip("gunicorn")

pytestmark = pytest.mark.timeout(60)

MISFIT = "does not fit in the host's deadline"


def gunicorn(tmp_path: Path, port: int, *args: str, app: str = "wsgi_app:app") -> Host:
    return Host(tmp_path, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", *args, app)


@pytest.mark.parametrize(
    "worker",
    [
        pytest.param(["--workers", "2"], id="sync"),
        pytest.param(["--worker-class", "gthread", "--threads", "4"], id="gthread"),
    ],
)
def test_sigterm_to_the_master_runs_every_accepted_job_before_the_workers_exit(
    tmp_path: Path, worker: list[str]
) -> None:
    port = free_port()
    with gunicorn(tmp_path, port, "-c", "gunicorn_hooks.py", *worker) as host:
        client = Client(port)
        client.ready(host)
        accepted = client.submit_then_signal(host, jobs("job"), signal.SIGTERM)
    assert host.process.returncode == 0, host.errors
    assert len(accepted) == 40, host.errors
    host.jobs.assert_nothing_lost(accepted)
    assert host.jobs.handed_back() == []  # the drain had time for all of them
    assert host.process.pid not in host.jobs.started()  # never in the master
    assert host.jobs.done_by() <= set(host.jobs.started())
    assert all(line.endswith(" True") for line in host.jobs.stopped()), host.jobs.lines()
    assert len(host.jobs.stopped()) == len(host.jobs.started())
    assert MISFIT not in host.errors  # 5 s fit in gunicorn's default 30 s


def test_sighup_replaces_the_worker_and_the_old_one_runs_its_jobs_first(tmp_path: Path) -> None:
    port = free_port()
    with gunicorn(tmp_path, port, "-c", "gunicorn_hooks.py") as host:
        client = Client(port)
        old = client.ready(host)["pid"]
        accepted = client.submit_all(jobs("before"))
        host.send(signal.SIGHUP)
        wait_until(lambda: f"stopped {old} True" in host.jobs.lines(), "the old worker stopped")

        def new_worker() -> bool:
            status = client.status()
            return status is not None and status["pid"] != old

        wait_until(new_worker, "a new worker serving")
        accepted += client.submit_then_signal(host, jobs("after"), signal.SIGTERM)
    assert host.process.returncode == 0, host.errors
    assert len(accepted) == 80, host.errors
    host.jobs.assert_nothing_lost(accepted)
    assert len(host.jobs.started()) == 2
    assert len(host.jobs.stopped()) == 2


def test_preload_with_the_hooks_starts_the_routines_in_the_worker(tmp_path: Path) -> None:
    port = free_port()
    with gunicorn(tmp_path, port, "--preload", "-c", "gunicorn_hooks.py") as host:
        client = Client(port)
        status = client.ready(host)
        assert status["healthy"] is True
        accepted = client.submit_then_signal(host, jobs("job"), signal.SIGTERM)
    assert host.process.returncode == 0, host.errors
    assert len(accepted) == 40, host.errors
    host.jobs.assert_nothing_lost(accepted)
    assert host.jobs.started() == [status["pid"]]
    assert host.jobs.done_by() == {status["pid"]}


def test_preload_with_routines_started_at_import_is_caught_by_fork_detection(
    tmp_path: Path,
) -> None:
    port = free_port()
    with gunicorn(tmp_path, port, "--preload", app="wsgi_preload_wrong:app") as host:
        client = Client(port)
        status = client.ready(host)  # "started": the module global came over with the fork
        code, text = client.submit("job0")
        host.send(signal.SIGTERM)
        assert host.wait() == 0, host.errors
    assert code == 503
    assert "pool 'jobs' was started in process" in text
    assert f"this process ({status['pid']}) was forked from it" in text
    assert "post_worker_init" in text
    assert status["healthy"] is False
    routines = status["routines"]
    assert isinstance(routines, list)
    assert [each["state"] for each in routines] == ["stopped", "stopped"]
    assert all("forked" in each["last_error"] for each in routines)
    assert host.jobs.done() == []
    assert host.jobs.started() == []  # the wrong way records nothing: it never ran here


def test_a_stop_timeout_longer_than_graceful_timeout_is_warned_about_at_start(
    tmp_path: Path,
) -> None:
    port = free_port()
    with gunicorn(tmp_path, port, "-c", "gunicorn_hooks.py", "--graceful-timeout", "3") as host:
        Client(port).ready(host)
        line = host.expect(MISFIT, stderr=True)
        host.send(signal.SIGTERM)
        assert host.wait() == 0, host.errors
    assert "stop_timeout (5s)" in line
    assert "(3s)" in line


def test_the_fleet_recipe_runs_each_tick_once_across_two_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # docs/fleet.md's recipe is examples/hosts/gunicorn_fleet.py (tests/test_examples.py checks
    # that): a Scheduled in every worker, started in post_worker_init, stopped in worker_exit.
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    monkeypatch.setenv("ROUTINES_EXAMPLE_STORE", url)
    monkeypatch.setenv("ROUTINES_EXAMPLE_DIGEST_EVERY", "0.5")
    port = free_port()
    with gunicorn(tmp_path, port, "-c", "gunicorn_fleet.py", "--workers", "2") as host:

        def digests() -> list[int]:
            return [int(line.split()[1]) for line in host.jobs.lines() if line.startswith("digest")]

        wait_until(lambda: len(digests()) >= 4, "four digests")
        host.send(signal.SIGTERM)
        assert host.wait() == 0, host.errors
    workers = {int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", host.errors)}
    with durable.open_store(url) as store:
        runs = store.schedule_runs("digest", limit=1000)
    assert len(workers) == 2, host.errors
    assert {run.state for run in runs} <= {"completed", "skipped"}  # none left running
    completed = [run for run in runs if run.state == "completed"]
    assert len(digests()) == len(completed)  # each tick's handler ran once, in one worker
    assert set(digests()) <= workers
    assert {int(run.worker.split(":")[1]) for run in completed} == set(digests())
    assert "Traceback" not in host.errors, host.errors


def test_the_fleet_recipe_boots_and_serves_while_its_database_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # open_store raised at once: "Worker failed to boot", and the pages that need no job were
    # down with the database; worker_exit then raised KeyError for the worker that failed.
    monkeypatch.setenv("ROUTINES_EXAMPLE_STORE", "postgresql://postgres@127.0.0.1:9/test")
    monkeypatch.setenv("ROUTINES_EXAMPLE_DIGEST_EVERY", "0.5")
    port = free_port()
    with gunicorn(tmp_path, port, "-c", "gunicorn_fleet.py", "--workers", "2") as host:
        client = Client(port)
        wait_until(lambda: client.status() is not None, "a page served")  # the database is down
        host.expect("trying again until the store is back", stderr=True)
        host.send(signal.SIGTERM)
        assert host.wait() == 0, host.errors
    assert "Worker failed to boot" not in host.errors
    assert "Traceback" not in host.errors, host.errors
