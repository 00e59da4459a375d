"""The fixtures' promise about PostgreSQL: without a server the PostgreSQL tests skip and say how
to run them; with ROUTINES_REQUIRE_POSTGRES=1 (as in CI) they fail instead."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import WAIT

ROOT = Path(__file__).parents[2]
A_POSTGRES_TEST = "tests/durable/test_queue.py::test_ids_increase[postgres]"
NOBODY_LISTENS = "postgresql://postgres@127.0.0.1:9/test"  # the discard port: refused


def run_pytest(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", A_POSTGRES_TEST],
        cwd=ROOT,
        env={**os.environ, "ROUTINES_TEST_POSTGRES_URL": NOBODY_LISTENS, **env},
        capture_output=True,
        text=True,
        timeout=6 * WAIT,
        check=False,
    )


def test_without_a_server_the_postgresql_tests_skip_saying_how_to_run_them() -> None:
    result = run_pytest(ROUTINES_REQUIRE_POSTGRES="")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert f"no PostgreSQL answers at {NOBODY_LISTENS}" in result.stdout
    assert "start PostgreSQL and set ROUTINES_TEST_POSTGRES_URL" in result.stdout


def test_with_require_postgres_a_missing_server_fails_the_tests() -> None:
    result = run_pytest(ROUTINES_REQUIRE_POSTGRES="1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 error" in result.stdout or "1 failed" in result.stdout
    assert "ROUTINES_REQUIRE_POSTGRES=1, but no PostgreSQL answers" in result.stdout
