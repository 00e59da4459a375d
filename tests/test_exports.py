from __future__ import annotations

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
