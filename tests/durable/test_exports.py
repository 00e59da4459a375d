"""The durable tier's public names, and what importing it loads."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import routines
from routines import durable

from .conftest import Target
from helpers import WAIT

CONTRACT = {
    "Fail",
    "Job",
    "JobState",
    "Lease",
    "LeaseInfo",
    "Migration",
    "MigrationError",
    "MigrationRunner",
    "MigrationStatus",
    "MigrationsIncomplete",
    "Queue",
    "QueueInfo",
    "QueueLimits",
    "QueueWorker",
    "Retry",
    "ScheduleInfo",
    "ScheduleRun",
    "Scheduled",
    "Singleton",
    "Snooze",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Task",
    "Tasks",
    "open_store",
}


def test_all_is_exactly_the_contract() -> None:
    assert set(durable.__all__) == CONTRACT


def test_all_is_sorted() -> None:
    assert durable.__all__ == sorted(durable.__all__)


def test_every_exported_name_exists() -> None:
    for name in durable.__all__:
        assert getattr(durable, name) is not None


def test_store_errors_are_routines_errors() -> None:
    assert issubclass(durable.StoreError, routines.RoutinesError)
    assert issubclass(durable.StoreUnavailable, durable.StoreError)


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=4 * WAIT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_import_routines_loads_none_of_the_durable_tier() -> None:
    out = run_python(
        """
        import sys
        import routines
        print(sorted(name for name in sys.modules if name.startswith("routines.durable")))
        print("psycopg" in sys.modules, "sqlite3" in sys.modules)
        """
    )
    assert out.split("\n")[:2] == ["[]", "False False"]


def test_psycopg_is_imported_only_when_a_postgresql_store_is_opened(
    tmp_path: object, postgres_target: Target
) -> None:
    out = run_python(
        f"""
        import sys
        from routines import durable
        print("psycopg" in sys.modules)
        with durable.open_store("sqlite:///{tmp_path}/store.db"):
            print("psycopg" in sys.modules)
        with durable.open_store({postgres_target.url!r}, schema={postgres_target.schema!r}):
            print("psycopg" in sys.modules, "psycopg_pool" in sys.modules)
        """
    )
    assert out.split("\n")[:3] == ["False", "False", "True True"]
