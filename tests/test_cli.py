"""The `routines` command (`routines/_cli/`) without the durable tier: its parser and exit
statuses, `routines worker` on routine targets (real processes through the installed console
script and `python -m routines`), every way a TARGET can be wrong (one line on stderr, exit 1),
and the output and logging modules the commands share. (Tasks targets and stores:
tests/durable/test_cli.py.)"""

from __future__ import annotations

import argparse
import io
import json
import logging
import re
import signal
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from routines._cli import main as cli_main
from routines._cli.common import Command, duration
from routines._cli.logs import JsonFormatter, configure_logging
from routines._cli.main import main
from routines._cli.output import (
    age,
    cell,
    headline,
    moment,
    print_fields,
    print_json,
    print_table,
    show,
    span,
    terminal_width,
)

from helpers import Program, root_logging_restored

SCRIPT = Path(sys.executable).parent / "routines"  # the console script pip installed

ROUTINES_MODULE = """
import sys
import routines


def say(line: str) -> None:
    sys.stdout.write(f"{line}\\n")  # one write: the routines run on threads side by side


def report_tier() -> None:
    say(f"durable loaded: {any(name.startswith('routines.durable') for name in sys.modules)}")


def fails() -> None:
    raise RuntimeError("broken")


both = [
    routines.CallbackRoutine(report_tier, name="first"),
    routines.CallbackRoutine(lambda: say("second ran"), name="second"),
]
failing = [
    routines.CallbackRoutine(report_tier, name="fine"),
    routines.supervised(
        routines.CallbackRoutine(fails, name="broken"), routines.RestartPolicy(restart="never")
    ),
]


def waiting() -> routines.Routine:
    return routines.CallbackRoutine(lambda: routines.sleep(60), name="waiting")
"""


class Modules:
    """Python modules written into a directory that is the current one while the test runs."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def write(self, name: str, source: str) -> None:
        path = self.directory.joinpath(*name.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(self.directory).parents:
            if parent != Path("."):
                (self.directory / parent / "__init__.py").touch()
        path.write_text(textwrap.dedent(source))
        import importlib

        importlib.invalidate_caches()


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Modules]:
    """The test's modules, importable from the current directory; afterwards the modules,
    sys.path and the root logger as they were."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    before = set(sys.modules)
    try:
        with root_logging_restored():
            yield Modules(tmp_path)
    finally:
        for name in set(sys.modules) - before:
            if str(getattr(sys.modules[name], "__file__", "")).startswith(str(tmp_path)):
                del sys.modules[name]


def fails_with(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run main(argv) here: it must fail with exit status 1 and one line on stderr, no
    traceback; that line, without its `routines worker: error: ` prefix."""
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    prefix = f"routines {argv[0]}: error: "
    assert lines[0].startswith(prefix), lines[0]
    return lines[0].removeprefix(prefix)


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    assert exited.value.code == 2
    return capsys.readouterr().err


# -- the parser ---------------------------------------------------------------------------------


def test_usage_errors_exit_2_with_argparse_s_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert "the following arguments are required: COMMAND" in usage_error(capsys)
    assert "invalid choice: 'wrokers'" in usage_error(capsys, "wrokers")
    assert "required: TARGET" in usage_error(capsys, "worker")
    assert "--log-format: invalid choice: 'xml'" in usage_error(
        capsys, "worker", "app:w", "--log-format", "xml"
    )
    assert "--log-level: invalid choice: 'LOUD'" in usage_error(
        capsys, "worker", "app:w", "--log-level", "loud"
    )
    assert "--concurrency: must be a whole number of at least 1, got '0'" in usage_error(
        capsys, "worker", "app:w", "--concurrency", "0"
    )
    assert "--stop-timeout: must be a number of seconds, 0 or more, got 'nan'" in usage_error(
        capsys, "worker", "app:w", "--stop-timeout", "nan"
    )


def test_help_lists_the_commands_and_the_exit_statuses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "worker    run routines or durable tasks in the foreground" in out
    assert "exit status: 0 done, 1 the command failed" in out


def test_every_group_of_commands_declares_commands() -> None:
    found = cli_main.commands()
    assert all(isinstance(command, Command) for command in found)
    assert [command.name for command in found] == [
        "worker",
        "queues",
        "jobs",
        "job",
        "retry",
        "cancel",
        "run-now",
        "pause",
        "resume",
        "limits",
        "purge",
        "schedules",
        "migrations",
        "leases",
        "dashboard",
    ]
    assert cli_main.GROUPS == ("worker", "jobs", "fleet", "dashboard")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("10m", 600), ("2h", 7200), ("7d", 604800), ("90", 90), ("1.5", 1.5),
     ("0", 0), ("2H", 7200), (" 3m ", 180), (".5s", 0.5)],
)  # fmt: skip
def test_durations_are_seconds_or_a_number_and_a_unit(text: str, seconds: float) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7x", "-1d", "1e3", "d", "1 week", "nan", "inf", "7dd"])
def test_a_duration_of_another_form_is_refused_saying_which_forms_are(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"must be a length of time such as 30s"):
        duration(text)


# -- routines worker on routines, as real processes ---------------------------------------------


def test_the_console_script_runs_a_list_of_routines_without_the_durable_tier(
    tmp_path: Path,
) -> None:
    (tmp_path / "jobs.py").write_text(ROUTINES_MODULE)
    with Program([str(SCRIPT), "worker", "jobs:both"], cwd=tmp_path) as worker:
        code = worker.wait()
    assert code == 0, worker.errors
    assert "durable loaded: False" in worker.output
    assert "second ran" in worker.output
    assert "shutdown (all routines ended)" in worker.output
    assert re.search(r"^\s+first\s+finished\s+-$", worker.output, re.MULTILINE), worker.output


def test_python_m_routines_exits_with_the_report_s_exit_code(tmp_path: Path) -> None:
    (tmp_path / "jobs.py").write_text(ROUTINES_MODULE)
    argv = [sys.executable, "-m", "routines", "worker", "jobs:failing", "--log-level", "error"]
    with Program(argv, cwd=tmp_path) as worker:
        code = worker.wait()
    assert code == 1, worker.errors
    assert re.search(r"^\s+broken\s+failed\s+RuntimeError: broken$", worker.output, re.M)
    assert "ERROR routines.supervise: routine 'broken' failed" in worker.errors


def test_ctrl_c_as_soon_as_the_worker_says_it_runs_stops_it(tmp_path: Path) -> None:
    # The line comes before Monitor.run() has put in its handlers: a signal sent at once must
    # stop the Monitor still (it was lost, or a KeyboardInterrupt, while SIG_IGN covered it).
    (tmp_path / "jobs.py").write_text(ROUTINES_MODULE)
    with Program([str(SCRIPT), "worker", "jobs:waiting"], cwd=tmp_path) as worker:
        worker.expect("SIGTERM or Ctrl-C stops it", stderr=True)
        worker.send(signal.SIGINT)
        code = worker.wait()
    assert code == 0, worker.errors
    assert "shutdown (received SIGINT)" in worker.output
    assert re.search(r"^\s+waiting\s+stopped\s+-$", worker.output, re.MULTILINE), worker.output


def test_a_mistyped_target_is_one_line_on_stderr_and_exit_1(tmp_path: Path) -> None:
    (tmp_path / "jobs.py").write_text(ROUTINES_MODULE)
    with Program([str(SCRIPT), "worker", "jobs:bth"], cwd=tmp_path) as worker:
        code = worker.wait()
    assert (code, worker.output) == (1, "")
    assert worker.errors == (
        "routines worker: error: module jobs has no attribute 'bth'; did you mean 'both'?\n"
    )


def test_a_usage_error_of_the_console_script_exits_2(tmp_path: Path) -> None:
    with Program([str(SCRIPT), "worker"], cwd=tmp_path) as worker:
        code = worker.wait()
    assert code == 2
    assert "routines worker: error: the following arguments are required: TARGET" in (worker.errors)


# -- what a TARGET can get wrong, in this process ---------------------------------------------


def test_a_target_without_a_colon(modules: Modules, capsys: pytest.CaptureFixture[str]) -> None:
    assert fails_with(capsys, "worker", "app.jobs") == (
        "TARGET must be module:attribute, such as app.jobs:tasks; got 'app.jobs'"
    )


def test_a_module_that_is_not_there(modules: Modules, capsys: pytest.CaptureFixture[str]) -> None:
    line = fails_with(capsys, "worker", "nosuch.jobs:workers")
    assert line.startswith(
        "no module named 'nosuch': run routines from the directory that holds nosuch, or "
        "install it (sys.path starts with "
    )
    modules.write("app.other", "")
    assert fails_with(capsys, "worker", "app.jobs:workers").startswith(
        "no module named 'app.jobs': "
    )


def test_a_module_that_fails_to_import(
    modules: Modules, capsys: pytest.CaptureFixture[str]
) -> None:
    modules.write("app.deps", "import not_installed_anywhere\n")
    assert fails_with(capsys, "worker", "app.deps:w") == (
        "importing app.deps failed: ModuleNotFoundError: No module named 'not_installed_anywhere'"
    )
    modules.write("app.boom", "raise RuntimeError('no config\\nset APP_CONFIG')\n")
    assert fails_with(capsys, "worker", "app.boom:w") == (
        "importing app.boom failed: RuntimeError: no config set APP_CONFIG "
        "(python -c 'import app.boom' shows the traceback)"
    )
    modules.write("app.typo", "def f(:\n")
    assert fails_with(capsys, "worker", "app.typo:w").startswith(
        "importing app.typo failed: SyntaxError: "
    )


def test_a_mistyped_attribute_names_the_close_ones_or_the_module_s_names(
    modules: Modules, capsys: pytest.CaptureFixture[str]
) -> None:
    modules.write("app.jobs", "workers = []\nworker = []\nother = 1\n_private = 2\n")
    assert fails_with(capsys, "worker", "app.jobs:wrokers") == (
        "module app.jobs has no attribute 'wrokers'; did you mean 'workers' or 'worker'?"
    )
    assert fails_with(capsys, "worker", "app.jobs:zzz") == (
        "module app.jobs has no attribute 'zzz'; it has other, worker, workers"
    )
    modules.write("app.nested", "class registry:\n    tasks = 1\n")
    assert fails_with(capsys, "worker", "app.nested:registry.taks") == (
        "app.nested:registry has no attribute 'taks'; did you mean 'tasks'?"
    )


def test_an_object_of_the_wrong_kind_says_which_kinds_are_accepted(
    modules: Modules, capsys: pytest.CaptureFixture[str]
) -> None:
    modules.write(
        "app",
        """
        import routines

        number = 5
        nothing = []
        mixed = [routines.NoopRoutine(), "not a routine"]
        one = routines.NoopRoutine()
        twice = [one, one]

        def needs(a, b=1): ...
        def broken(): raise ValueError("no database")
        def returns_function(): return needs

        class Thing:
            def __repr__(self): return "<Thing>"
        """,
    )
    kinds = (
        "TARGET must name a routine (an object with start() and stop()), a list or tuple of "
        "routines, a durable.Tasks, or a function of no arguments that returns one of those"
    )
    assert fails_with(capsys, "worker", "app:number") == f"app:number is an int (5): {kinds}"
    assert fails_with(capsys, "worker", "app:Thing") == f"app:Thing() is a Thing (<Thing>): {kinds}"
    assert fails_with(capsys, "worker", "app:nothing") == (
        "app:nothing is an empty list: it must hold at least one routine"
    )
    assert fails_with(capsys, "worker", "app:mixed") == (
        "app:mixed[1] is a str ('not a routine'), not a routine (an object with start() and stop())"
    )
    assert fails_with(capsys, "worker", "app:needs") == (
        "app:needs takes arguments (a, b=1): TARGET's function must take none"
    )
    assert fails_with(capsys, "worker", "app:broken") == (
        "calling app:broken() failed: ValueError: no database"
    )
    assert fails_with(capsys, "worker", "app:returns_function") == (
        f"app:returns_function() returned the function needs, not a routine: {kinds}"
    )
    assert fails_with(capsys, "worker", "app:twice").startswith(
        "app:twice: ValueError: routines[1] is passed twice to one Monitor: "
    )
    assert fails_with(capsys, "worker", "app:one", "--queue", "q", "--concurrency", "2") == (
        "--concurrency and --queue apply to a durable.Tasks target, and app:one is a "
        "NoopRoutine (<NoopRoutine 'noop'>): leave them out, or set them where the routine is "
        "made"
    )


# -- output and logs ----------------------------------------------------------------------------


def test_a_table_aligns_numbers_right_and_shows_none_times_and_lines_plainly() -> None:
    out = io.StringIO()
    moment = datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=timezone(timedelta(hours=2)))
    print_table(
        ["queue", "jobs", "oldest", "note"],
        [("emails", 1200, moment, None), ("reports", 3, None, "two\nlines")],
        file=out,
    )
    assert out.getvalue().splitlines() == [
        "queue    jobs  oldest                     note",
        "emails   1200  2026-01-02T01:04:05+00:00  -",
        "reports     3  -                          two lines",
    ]
    empty = io.StringIO()
    print_table(["queue"], [], file=empty)
    assert empty.getvalue() == ""
    assert (cell(True), cell(0.25), cell(timedelta(seconds=90)), cell({"a": [1]})) == (
        "yes",
        "0.25",
        "90s",
        '{"a": [1]}',
    )


def test_a_table_cuts_the_columns_named_in_order_to_fit_the_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    out = io.StringIO()
    rows = [(1, "a" * 30, "b" * 30), (22, "short", "c")]
    print_table(["id", "name", "error"], rows, file=out, cut=("error", "name"))
    assert out.getvalue().splitlines() == [
        "id  name                    error",
        " 1  aaaaaaaaaaaaaaaaaaa...  bbbbbbbbb...",
        "22  short                   c",
    ]
    assert max(len(line) for line in out.getvalue().splitlines()) == 40
    wide = io.StringIO()
    print_table(["id", "name"], [(1, "a" * 50)], file=wide)  # nothing to cut: as wide as it is
    assert wide.getvalue().splitlines()[1] == " 1  " + "a" * 50


def test_a_table_is_as_wide_as_columns_says_else_100_off_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    assert terminal_width(io.StringIO()) == 100
    monkeypatch.setenv("COLUMNS", "132")
    assert terminal_width(io.StringIO()) == 132


def test_times_read_as_utc_iso_and_ages_past_and_future() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert [age(now - timedelta(seconds=s), now) for s in (0.4, 1, 59, 180, 7300, 3 * 86400)] == [
        "now",
        "1s ago",
        "59s ago",
        "3m ago",
        "2h ago",
        "3d ago",
    ]
    assert age(now + timedelta(seconds=5.5), now) == "in 5s"
    paris = timezone(timedelta(hours=1))
    assert moment(datetime(2026, 1, 2, 3, 1, 5, tzinfo=paris), now) == (
        "2026-01-02T02:01:05Z (1h ago)"
    )
    assert moment(None, now) is None
    assert (span(0), span(119.9), span(86399)) == ("0s", "1m", "23h")


def test_the_headline_of_an_error_is_the_line_naming_the_exception() -> None:
    chained = (
        'Traceback (most recent call last):\n  File "a.py", line 1, in f\n    g()\n'
        "KeyError: 'x'\n\nDuring handling of the above exception, another exception occurred:"
        '\n\nTraceback (most recent call last):\n  File "a.py", line 3, in f\n    h()\n'
        "RuntimeError: boom\n"
    )
    assert headline(chained) == "RuntimeError: boom"
    assert headline("ValueError: bad\nsecond line") == "ValueError: bad"
    assert headline("RuntimeError: shortened\n...(traceback shortened)...\n  x") == (
        "RuntimeError: shortened"
    )
    assert (headline(None), headline("")) == (None, "")


def test_a_record_prints_a_line_per_field_then_each_block_indented() -> None:
    out = io.StringIO()
    print_fields(
        [("id", 7), ("key", None)], [("payload", '{\n  "a": 1\n}'), ("result", None)], file=out
    )
    assert out.getvalue().splitlines() == [
        "id       7",
        "key      -",
        "payload:",
        "    {",
        '      "a": 1',
        "    }",
        "result   -",
    ]


@dataclass(frozen=True)
class Row:
    name: str
    at: datetime


def test_json_output_is_one_document_with_times_as_iso_8601() -> None:
    out = io.StringIO()
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    print_json({"rows": [Row("a", moment)], "ids": (1, 2), "wait": timedelta(seconds=2)}, file=out)
    assert out.getvalue().count("\n") == 1
    assert json.loads(out.getvalue()) == {
        "rows": [{"name": "a", "at": "2026-01-02T03:04:05+00:00"}],
        "ids": [1, 2],
        "wait": 2.0,
    }
    table, document = io.StringIO(), io.StringIO()
    show({"n": 1}, ["n"], [(1,)], as_json=False, file=table)
    show({"n": 1}, ["n"], [(1,)], as_json=True, file=document)
    assert (table.getvalue(), document.getvalue()) == ("n\n1\n", '{"n": 1}\n')


def test_json_logs_carry_the_record_s_extra_fields_and_its_traceback() -> None:
    record = logging.LogRecord(
        "routines.durable.worker", logging.WARNING, "f", 1, "job %d", (7,), None
    )
    record.queue, record.job_id, record.at = "emails", 7, datetime(2026, 1, 1, tzinfo=timezone.utc)
    try:
        raise ValueError("bad")
    except ValueError:
        record.exc_info = sys.exc_info()
    document = json.loads(JsonFormatter().format(record))
    assert {key: document[key] for key in ("level", "logger", "message", "queue", "job_id")} == {
        "level": "WARNING",
        "logger": "routines.durable.worker",
        "message": "job 7",
        "queue": "emails",
        "job_id": 7,
    }
    assert document["at"] == "2026-01-01T00:00:00+00:00"
    assert document["traceback"].endswith("ValueError: bad")
    assert "exc_info" not in document
    assert "msg" not in document


def test_configure_logging_sends_the_records_of_its_level_to_the_stream() -> None:
    stream = io.StringIO()
    with root_logging_restored():
        configure_logging("WARNING", "text", stream)
        logging.getLogger("routines.test").info("not shown")
        logging.getLogger("routines.test").warning("shown %s", "here")
    (line,) = stream.getvalue().splitlines()
    assert line.endswith(" WARNING routines.test: shown here")
