from __future__ import annotations

import subprocess
import sys

import routines

# The public names of ../shared/spec/API.md, and nothing else...
CONTRACT = {
    "BackgroundRoutine",
    "CallbackRoutine",
    "Clock",
    "CombinedRoutine",
    "Monitor",
    "NoopRoutine",
    "PeriodicRoutine",
    "PoolClosed",
    "PoolFull",
    "REINVOKE_IMMEDIATELY",
    "RestartPolicy",
    "Routine",
    "RoutineEvent",
    "RoutineOutcome",
    "RoutineStatus",
    "RoutinesError",
    "ShutdownReport",
    "WorkerPool",
    "monitor",
    "sleep",
    "stopping",
    "supervised",
    "with_error_message",
}
# ...but for the Literal types of its states, events and options, for users' annotations.
LITERAL_TYPES = {
    "EventKind",
    "GiveUpAction",
    "OutcomeState",
    "RestartMode",
    "RoutineState",
    "StopOrder",
}


def test_all_is_exactly_the_contract() -> None:
    assert set(routines.__all__) == CONTRACT | LITERAL_TYPES


def test_the_literal_types_name_what_the_contract_allows() -> None:
    from typing import get_args

    assert set(get_args(routines.RoutineState)) == {
        "idle",
        "running",
        "stopping",
        "stopped",
        "finished",
        "failed",
        "restarting",
    }
    assert set(get_args(routines.OutcomeState)) == {
        "stopped",
        "finished",
        "failed",
        "timed_out",
        "abandoned",
    }
    assert set(get_args(routines.EventKind)) == {
        "started",
        "stopped",
        "finished",
        "failed",
        "restarting",
        "gave_up",
        "stop_timed_out",
    }
    assert set(get_args(routines.RestartMode)) == {"always", "on-failure", "never"}
    assert set(get_args(routines.GiveUpAction)) == {"shutdown", "continue"}
    assert set(get_args(routines.StopOrder)) == {"concurrent", "lifo", "fifo"}


def test_all_is_sorted() -> None:
    assert routines.__all__ == sorted(routines.__all__)


def test_every_exported_name_exists() -> None:
    for name in routines.__all__:
        assert getattr(routines, name) is not None


def test_testing_module_exports_fake_clock() -> None:
    from routines import testing

    assert testing.__all__ == ["FakeClock"]


def test_errors_share_a_base() -> None:
    assert issubclass(routines.PoolFull, routines.RoutinesError)
    assert issubclass(routines.PoolClosed, routines.RoutinesError)


def first_line_of(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=True
    )
    return result.stdout.split("\n")[0]


def test_import_routines_loads_neither_the_command_nor_the_durable_tier() -> None:
    parts = "'routines._cli', 'routines.__main__', 'routines.durable', 'routines.dashboard'"
    loaded = first_line_of(
        f"import sys, routines; print(sorted(name for name in sys.modules if name.startswith("
        f"({parts}))), 'argparse' in sys.modules, 'jinja2' in sys.modules)"
    )
    assert loaded == "[] False False"


def test_the_dashboard_module_exports_app() -> None:
    from routines import dashboard

    assert dashboard.__all__ == ["app"]
    assert callable(dashboard.app)


def test_the_command_s_parser_loads_none_of_the_durable_tier() -> None:
    assert (
        first_line_of(
            "import sys; from routines._cli.main import build_parser; build_parser(); "
            "print(sorted(name for name in sys.modules if name.startswith("
            "('routines.durable', 'routines.dashboard', 'jinja2'))))"
        )
        == "[]"
    )
