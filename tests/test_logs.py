"""The library's logs (`_logs.py`): a child logger per part, records with fields a JSON
formatter can index, one line per message, and a failure that repeats logged briefly."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import Iterator

import pytest

import routines
from routines._logs import RepeatedFailures
from routines.testing import FakeClock

from helpers import WAIT, EventLog, LogWatcher, Stubborn, join


class JsonLines(logging.Handler):
    """A handler that formats each record as a JSON formatter would: message plus extras."""

    FIELDS = ("routine", "event", "queue", "job_id", "repeats")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        entry: dict[str, object] = {
            "logger": record.name,
            "level": record.levelname,
            "message": record.getMessage(),
        }
        entry.update({key: getattr(record, key) for key in self.FIELDS if hasattr(record, key)})
        self.lines.append(json.loads(json.dumps(entry)))


@pytest.fixture
def json_logs() -> Iterator[JsonLines]:
    handler = JsonLines()
    logger = logging.getLogger("routines")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_records_carry_the_routine_and_the_event_for_a_json_formatter(
    json_logs: JsonLines,
) -> None:
    class Crashes(routines.BackgroundRoutine):
        def run(self) -> None:
            raise RuntimeError("crash\nwith a second line")

    stuck = Stubborn("stuck")
    events = EventLog()
    monitor = routines.Monitor(
        Crashes("crashes"),
        stuck,
        signals=(),
        stop_timeout=0.1,
        restart=routines.RestartPolicy(max_restarts=0, on_give_up="continue"),
        on_event=events,
    )
    monitor.start()
    try:
        events.wait_for("crashes", "gave_up")
        assert stuck.started.wait(WAIT)
        monitor.shutdown()
        assert monitor.wait(WAIT) is not None
    finally:
        stuck.release.set()
    by_event = {(line.get("routine"), line.get("event")): line for line in json_logs.lines}
    failed = by_event[("crashes", "failed")]
    assert failed["logger"] == "routines.supervise"
    assert failed["level"] == "ERROR"
    assert by_event[("crashes", "gave_up")]["logger"] == "routines.supervise"
    assert by_event[("stuck", "stop_timed_out")]["logger"] == "routines.monitor"
    assert (None, "report") in by_event
    for line in json_logs.lines:
        assert str(line["logger"]).startswith("routines.")
        # One line each: tracebacks and stacks ride on exc_info and fields, never in the text.
        # (An error's own text may hold a newline: it is the error's, shown as it is.)
        assert "\n" not in str(line["message"]).replace("crash\nwith", "crash with")


def test_a_periodic_handler_that_keeps_failing_is_logged_in_full_once_then_briefly() -> None:
    clock = FakeClock()
    periodic = routines.PeriodicRoutine(lambda: 1 / 0, name="div", interval=1, clock=clock)
    thread = threading.Thread(target=periodic.start)
    with LogWatcher() as logs:
        thread.start()
        try:
            for _ in range(3):
                clock.wait_for_sleepers(1)
                clock.advance(1)
            clock.wait_for_sleepers(1)
        finally:
            periodic.stop()
            join(thread)
        records = [r for r in logs.records if "div" in r.getMessage()]
    assert [(r.levelno, r.exc_info is not None) for r in records] == [
        (logging.ERROR, True),
        (logging.WARNING, False),
        (logging.WARNING, False),
        (logging.WARNING, False),
    ]
    assert "again (3 repeats)" in records[-1].getMessage()
    assert periodic.status().failures == 4


def test_a_pool_job_that_keeps_failing_is_logged_in_full_once_then_briefly() -> None:
    pool: routines.WorkerPool[int, None] = routines.WorkerPool(
        lambda item: None if item < 0 else 1 // 0, workers=1, name="jobs"
    )
    thread = threading.Thread(target=pool.start)
    with LogWatcher() as logs:
        thread.start()
        futures = [pool.submit(item) for item in range(3)]
        for future in futures:
            assert isinstance(future.exception(WAIT), ZeroDivisionError)
        pool.stop()
        join(thread)
        records = [r for r in logs.records if "jobs" in r.getMessage()]
    assert [r.exc_info is not None for r in records] == [True, False, False]
    assert getattr(records[0], "event", None) == "job_failed"
    assert getattr(records[1], "event", None) == "job_failed_again"


def test_the_same_failure_after_a_quiet_spell_is_logged_in_full_again() -> None:
    failures = RepeatedFailures(window=10)
    logger = logging.getLogger("routines.test")
    with LogWatcher() as logs:
        for now in (0.0, 5.0, 30.0):
            failures.log(logger, ValueError("same"), now, "routine 'x' failed", routine="x")
    assert [r.exc_info is not None for r in logs.records] == [True, False, True]


def test_a_different_failure_is_logged_in_full() -> None:
    failures = RepeatedFailures(window=10)
    logger = logging.getLogger("routines.test")
    with LogWatcher() as logs:
        for error in (ValueError("a"), ValueError("b"), KeyError("a")):
            failures.log(logger, error, 1.0, "routine 'x' failed", routine="x")
    assert [r.exc_info is not None for r in logs.records] == [True, True, True]


def test_the_logged_report_line_is_the_printed_reports_first_line_forced_included() -> None:
    # Issue 25.14: the log line dropped the ", forced" that the printed report has.
    stubborn = Stubborn()

    def signal_twice() -> None:
        assert stubborn.started.wait(WAIT)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stubborn.stop_called.wait(WAIT)
        os.kill(os.getpid(), signal.SIGTERM)  # during the shutdown: forces its end

    sender = threading.Thread(target=signal_twice, name="test-signaller")
    with LogWatcher() as logs:
        sender.start()
        try:
            report = routines.Monitor(stubborn, stop_timeout=60).run()
        finally:
            stubborn.release.set()
            join(sender)
        logged = logs.wait_for("shutdown (")  # logged once run() may already have returned
    assert report.forced is True
    assert getattr(logged, "event", None) == "report"
    assert logged.getMessage() == str(report).splitlines()[0]
    assert ", forced: NOT ok" in logged.getMessage()
