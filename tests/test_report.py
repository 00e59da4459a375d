"""The report a Monitor gives (routines/_report.py): `ShutdownReport` as a table, `ok` and
`exit_code`."""

from __future__ import annotations

import signal
from dataclasses import replace

import routines


def test_report_str_is_a_table_of_routine_state_error() -> None:
    report = routines.ShutdownReport(
        reason="received SIGTERM",
        signal=signal.SIGTERM,
        forced=False,
        duration=0.0123,
        outcomes=(
            routines.RoutineOutcome("web", "stopped"),
            routines.RoutineOutcome("flaky-job", "failed", RuntimeError("boom")),
        ),
    )
    assert str(report).splitlines() == [
        "shutdown (received SIGTERM) in 0.012s: NOT ok",
        "  routine    state    error",
        "  web        stopped  -",
        "  flaky-job  failed   RuntimeError: boom",
    ]


def test_report_is_ok_only_when_every_routine_stopped_or_finished() -> None:
    base = routines.ShutdownReport(
        "r", None, False, 0.0, (routines.RoutineOutcome("a", "finished"),)
    )
    assert base.ok
    for state in ("failed", "timed_out", "abandoned"):
        bad = replace(base, outcomes=(routines.RoutineOutcome("a", state),))  # type: ignore[arg-type]
        assert not bad.ok
        assert bad.exit_code == 1
