"""`routines worker` on a `durable.Tasks`, as real processes started through the installed
console script and through `python -m routines`, on both backends: 500 calls of three tasks
each run exactly once; SIGTERM (or Ctrl-C) mid-run hands the running jobs back, no attempt
spent, exit 0; a second signal forces the end. Then what goes wrong with a Tasks target or a
store, each one line on stderr and exit 1. (The command without the durable tier:
tests/test_cli.py.)"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from routines import durable
from routines._cli.common import CommandError, open_store
from routines._cli.main import main

from .conftest import Target
from .support import PROGRAMS, poll
from helpers import WAIT, Program, root_logging_restored

SCRIPT = Path(sys.executable).parent / "routines"  # the console script pip installed
LAUNCHERS = {"script": [str(SCRIPT)], "module": [sys.executable, "-m", "routines"]}
TARGET = "task_module:tasks"  # programs/task_module.py


class Producer:
    """The enqueuing side: the tasks of programs/task_module.py declared again by name, as
    another process of the app would (only the names and signatures must agree)."""

    def __init__(self, store: durable.Store) -> None:
        tasks = durable.Tasks(store, queue="calls")

        @tasks.task(name="add")
        def add(a: int, b: int) -> int:
            raise AssertionError("runs in the worker")

        @tasks.task(name="greet", queue="greetings")
        def greet(name: str, *, punctuation: str = "!") -> str:
            raise AssertionError("runs in the worker")

        @tasks.task(name="square")
        def square(n: int) -> int:
            raise AssertionError("runs in the worker")

        @tasks.task(name="wait")
        def wait(seconds: float) -> None:
            raise AssertionError("runs in the worker")

        @tasks.task(name="stubborn")
        def stubborn(seconds: float) -> None:
            raise AssertionError("runs in the worker")

        self.add, self.greet, self.square = add, greet, square
        self.wait, self.stubborn = wait, stubborn
        self.calls = store.queue("calls")
        self.greetings = store.queue("greetings")


class Worker(Program):
    """`routines worker` started as a subprocess from programs/, its store the target's."""

    def __init__(
        self, launcher: str, target: Target, record: Path, *options: str, name: str = TARGET
    ) -> None:
        env = {
            **os.environ,
            "ROUTINES_STORE_URL": target.url,
            "ROUTINES_STORE_SCHEMA": target.schema,
            "TASKS_RECORD": str(record),
            "PYTHONDONTWRITEBYTECODE": "1",  # nothing written into programs/
        }
        argv = [*LAUNCHERS[launcher], "worker", name, *options]
        super().__init__(argv, cwd=PROGRAMS, env=env)


def record_lines(record: Path) -> list[tuple[str, int, int]]:
    """(task, job id, attempt) for every start the handlers recorded."""
    if not record.exists():
        return []
    lines = [line.split() for line in record.read_text().splitlines() if line]
    return [(task, int(job_id), int(attempt)) for task, job_id, attempt in lines]


@pytest.fixture
def producer(target: Target) -> Producer:
    return Producer(target.open())


@pytest.fixture
def record(tmp_path: Path) -> Path:
    return tmp_path / "record.txt"


def test_the_console_script_is_installed_next_to_the_interpreter() -> None:
    assert SCRIPT.exists(), f"{SCRIPT} is missing: pip install -e . installs it"


@pytest.mark.parametrize("launcher", ["script", "module"])
def test_a_tasks_module_runs_500_calls_of_three_tasks_exactly_once(
    launcher: str, target: Target, producer: Producer, record: Path
) -> None:
    adds = producer.add.enqueue_many([((n, n + 1), {}) for n in range(200)])
    greets = producer.greet.enqueue_many([((f"n{n}",), {"punctuation": "?"}) for n in range(200)])
    squares = [producer.square.enqueue(n) for n in range(100)]
    with Worker(launcher, target, record, "--concurrency", "4") as worker:
        assert poll(
            lambda: (
                producer.calls.counts()["completed"] == 300
                and producer.greetings.counts()["completed"] == 200
            ),
            timeout=60,
        ), (producer.calls.counts(), producer.greetings.counts(), worker.errors)
        worker.send(signal.SIGTERM)
        code = worker.wait()
    assert code == 0, worker.errors
    assert "shutdown (received SIGTERM)" in worker.output
    assert ": ok" in worker.output
    starts = record_lines(record)
    started = collections.Counter(job_id for _, job_id, _ in starts)
    assert set(started) == set(adds + greets + squares)
    assert set(started.values()) == {1}, [job_id for job_id, n in started.items() if n > 1]
    expected = {
        **{job_id: ("add", 2 * n + 1) for n, job_id in enumerate(adds)},
        **{job_id: ("greet", f"hello n{n}?") for n, job_id in enumerate(greets)},
        **{job_id: ("square", n * n) for n, job_id in enumerate(squares)},
    }
    assert {job_id: task for task, job_id, _ in starts} == {
        job_id: task for job_id, (task, _) in expected.items()
    }
    for job_id, (task, result) in expected.items():
        queue = producer.greetings if task == "greet" else producer.calls
        job = queue.get(job_id)
        assert job is not None
        assert (job.task, job.state, job.attempts, job.result) == (task, "completed", 1, result)
    for queue in (producer.calls, producer.greetings):
        counts = queue.counts()
        assert counts["completed"] == sum(counts.values()), counts


@pytest.mark.parametrize(
    ("launcher", "signum"),
    [("script", signal.SIGTERM), ("module", signal.SIGTERM), ("script", signal.SIGINT)],
)
def test_a_signal_mid_run_hands_the_running_jobs_back_without_spending_them_and_exits_0(
    launcher: str, signum: int, target: Target, producer: Producer, record: Path
) -> None:
    ids = producer.wait.enqueue_many([((60,), {}) for _ in range(5)])
    with Worker(launcher, target, record, "--concurrency", "3", "--queue", "calls") as worker:
        assert poll(lambda: len(record_lines(record)) == 3, timeout=30), (  # all busy
            producer.calls.counts(),
            worker.errors,
        )
        worker.send(signum)
        code = worker.wait()
    assert code == 0, worker.errors
    assert f"shutdown (received {signal.Signals(signum).name})" in worker.output
    assert ": ok" in worker.output
    assert "Traceback" not in worker.errors
    jobs = [producer.calls.get(job_id) for job_id in ids]
    assert [(job.state, job.attempts) for job in jobs if job] == [("queued", 0)] * 5
    assert len(record_lines(record)) == 3


def test_a_second_signal_forces_the_end_and_logs_are_json_lines_with_their_fields(
    target: Target, producer: Producer, record: Path
) -> None:
    job_id = producer.stubborn.enqueue(60)
    options = ("--log-format", "json", "--stop-timeout", "60", "--queue", "calls")
    with Worker("script", target, record, *options) as worker:
        assert poll(lambda: len(record_lines(record)) == 1, timeout=30), worker.errors
        worker.send(signal.SIGTERM)
        worker.expect("received SIGTERM: shutting down", stderr=True)
        worker.send(signal.SIGTERM)
        code = worker.wait(timeout=WAIT)
    assert code == 1, worker.errors
    report = json.loads(worker.output)
    assert (report["forced"], report["exit_code"]) == (True, 1)
    assert [outcome["state"] for outcome in report["outcomes"]] == ["abandoned"]
    logs = [json.loads(line) for line in worker.errors.splitlines()]  # every line one object
    started = next(log for log in logs if log.get("event") == "worker_started")
    assert (started["level"], started["logger"], started["target"]) == (
        "INFO",
        "routines.cli",
        TARGET,
    )
    signals = [log for log in logs if log.get("event") == "signal"]
    assert signals[0]["message"] == "received SIGTERM: shutting down"
    assert any(log.get("event") == "forced" for log in logs)
    job = producer.calls.get(job_id)
    assert job is not None
    assert job.state == "processing"  # its handler was abandoned: the stalled sweep's job


def test_a_function_returning_the_tasks_worker_is_a_target_too(
    target: Target, producer: Producer, record: Path
) -> None:
    job_id = producer.add.enqueue(1, 2)
    with Worker("module", target, record, name="task_module:make_worker") as worker:
        assert poll(lambda: producer.calls.counts()["completed"] == 1, timeout=30), worker.errors
        worker.send(signal.SIGTERM)
        assert worker.wait() == 0, worker.errors
    job = producer.calls.get(job_id)
    assert job is not None
    assert (job.state, job.result) == ("completed", 3)


# -- what goes wrong, in this process -------------------------------------------------------------


@pytest.fixture
def in_programs(
    monkeypatch: pytest.MonkeyPatch, sqlite_target: Target, record: Path
) -> Iterator[None]:
    """main() run here as the worker would run in programs/: its sys.path, environment,
    logging and imported task_module put back afterwards."""

    monkeypatch.chdir(PROGRAMS)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.setenv("ROUTINES_STORE_URL", sqlite_target.url)
    monkeypatch.setenv("ROUTINES_STORE_SCHEMA", sqlite_target.schema)
    monkeypatch.setenv("TASKS_RECORD", str(record))
    try:
        with root_logging_restored():
            yield
    finally:
        module = sys.modules.pop("task_module", None)
        if module is not None:
            module.store.close()
            module._record.close()


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """main(argv) here: its exit status and the last line of its stderr."""
    code = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err.splitlines()[-1] if err else ""


@pytest.mark.usefixtures("in_programs")
def test_a_mistyped_attribute_of_a_tasks_module_names_the_close_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, line = run_main(capsys, "worker", "task_module:taks")
    assert (code, line) == (
        1,
        "routines worker: error: module task_module has no attribute 'taks'; did you mean 'tasks'?",
    )


@pytest.mark.usefixtures("in_programs")
def test_a_task_named_as_target_says_to_name_its_tasks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, line = run_main(capsys, "worker", "task_module:add")
    assert code == 1
    assert line.startswith("routines worker: error: task_module:add is a task (durable.Task): ")
    assert "names the durable.Tasks it was declared with" in line


@pytest.mark.usefixtures("in_programs")
def test_a_queue_none_of_the_tasks_uses_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, line = run_main(capsys, "worker", TARGET, "--queue", "nope")
    assert code == 1
    assert line == (
        "routines worker: error: task_module:tasks: ValueError: queues names 'nope', which none "
        "of the tasks uses: the tasks' queues are 'calls', 'greetings'"
    )


@pytest.mark.usefixtures("in_programs")
def test_tasks_options_for_a_target_that_is_no_tasks_are_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, line = run_main(capsys, "worker", "task_module:make_worker", "--concurrency", "2")
    assert code == 1
    assert line.startswith(
        "routines worker: error: --concurrency applies to a durable.Tasks target, and "
        "task_module:make_worker() is a CombinedRoutine"
    )


@pytest.mark.usefixtures("in_programs")
def test_a_module_whose_store_cannot_be_opened_says_to_check_the_store(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ROUTINES_STORE_URL", f"sqlite:///{tmp_path}/missing/dir/store.db")
    code, line = run_main(capsys, "worker", TARGET)
    assert code == 1
    assert line.startswith(
        "routines worker: error: importing task_module failed: StoreError: the SQLite store "
    )
    assert "missing/dir does not exist" in line
    assert line.endswith(
        "(check the store's URL (ROUTINES_STORE_URL?) and that its database is up)"
    )


@pytest.mark.usefixtures("in_programs")
def test_store_given_to_the_worker_reaches_the_module_through_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ROUTINES_STORE_URL", "sqlite:///unused.db")
    code, line = run_main(
        capsys, "worker", TARGET, "--store", f"sqlite:///{tmp_path}/nowhere/s.db", "--schema", "x"
    )
    assert code == 1
    assert f"the directory {tmp_path}/nowhere does not exist" in line
    assert (os.environ["ROUTINES_STORE_URL"], os.environ["ROUTINES_STORE_SCHEMA"]) == (
        f"sqlite:///{tmp_path}/nowhere/s.db",
        "x",
    )


# -- opening the store of a command ---------------------------------------------------------------


def store_args(store: str | None = None, schema: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(store=store, schema=schema)


def test_open_store_takes_the_options_else_the_environment(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROUTINES_STORE_URL", target.url)
    monkeypatch.setenv("ROUTINES_STORE_SCHEMA", target.schema)
    with open_store(store_args()) as store:
        assert (store.url, store.schema) == (target.url, target.schema)
    monkeypatch.delenv("ROUTINES_STORE_SCHEMA")
    monkeypatch.setenv("ROUTINES_STORE_URL", "sqlite:///not-this.db")
    with open_store(store_args(target.url, target.schema)) as store:
        assert (store.url, store.schema) == (target.url, target.schema)


def test_open_store_without_a_url_says_how_to_give_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROUTINES_STORE_URL", raising=False)
    with pytest.raises(CommandError, match=r"no store given: pass --store URL or set ROUTINES_S"):
        open_store(store_args())


@pytest.mark.parametrize(
    ("url", "schema", "expected"),
    [
        ("mysql://db/app", None, r"url must start with one of the supported schemes .*fix --st"),
        ("sqlite:///x.db", "Bad-Name", r"schema must be 1 to 50 lowercase .* \(or --schema\)"),
        (
            "postgresql://postgres:secret@127.0.0.1:1/test",
            None,
            r"StoreUnavailable: .*postgres:\*\*\*@127.0.0.1:1/test is unavailable .*check that "
            r"the database is up and that --store or \$ROUTINES_STORE_URL names it",
        ),
    ],
)
def test_a_store_that_cannot_be_opened_says_what_to_fix(
    url: str, schema: str | None, expected: str
) -> None:
    with pytest.raises(CommandError) as caught:
        open_store(store_args(url, schema))
    message = " ".join(str(caught.value).split())  # main() prints it on one line
    assert re.search(expected, message), message
    assert "secret" not in message
