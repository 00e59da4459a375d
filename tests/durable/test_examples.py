"""The durable tier's examples run as a user would run them."""

from __future__ import annotations

import re
from pathlib import Path

from helpers import Example


def test_durable_jobs_loses_no_task_call_when_a_worker_is_sigtermed() -> None:
    with Example("durable_jobs.py") as demo:
        summary = demo.expect("jobs completed", timeout=45)
        code = demo.wait(timeout=45)
    assert code == 0, demo.output + demo.errors
    match = re.search(r"(\d+) of (\d+) jobs completed, (\d+) retried, (\d+) lost", summary)
    assert match is not None, summary
    completed, total, retried, lost = map(int, match.groups())
    assert (completed, lost) == (total, 0)
    assert retried > 0  # the flaky jobs were retried
    assert "received SIGTERM" in demo.output
    # Both `routines worker mailer:tasks` processes stopped cleanly: the SIGTERMed one mid-work.
    assert len(re.findall(r"^\s+tasks\[emails\]\s+stopped\s+-$", demo.output, re.MULTILINE)) == 2


def test_fleet_runs_each_tick_once_and_moves_the_singleton_when_its_holder_dies() -> None:
    with Example("fleet.py", "--demo") as demo:
        summary = demo.expect("tick runs printed", timeout=40)
        code = demo.wait(timeout=40)
    assert code == 0, demo.output + demo.errors
    match = re.search(r"(\d+) tick runs printed for (\d+) ticks run .* on (\d+) replicas", summary)
    assert match is not None, summary
    printed, ran, leaders = map(int, match.groups())
    assert printed == ran >= 3
    assert leaders >= 2
    assert "killing the singleton's holder" in demo.output


def _progresses(output: str) -> list[int]:
    return [int(found) for found in re.findall(r"progress: (\d+)%", output)]


def test_the_migration_goes_on_where_it_stopped_and_runs_back_with_reverse(
    tmp_path: Path,
) -> None:
    database = str(tmp_path / "users.db")
    with Example("migration.py", "--db", database, "--seconds", "0.8") as first:
        assert first.wait(timeout=30) == 0, first.errors
    assert "stopped: time is up" in first.output
    stopped_at = _progresses(first.output)[-1]
    assert 0 < stopped_at < 100
    with Example("migration.py", "--db", database) as second:
        assert second.wait(timeout=30) == 0, second.errors
    resumed = _progresses(second.output)
    assert resumed[0] >= stopped_at  # no batch was lost or redone from the start
    assert (resumed[-1], "stopped: migration complete" in second.output) == (100, True)
    with Example("migration.py", "--db", database, "--reverse") as back:
        assert back.wait(timeout=30) == 0, back.errors
    assert _progresses(back.output)[-1] == 0
    assert "(back)" in back.output


def test_the_janitor_deletes_old_soft_deleted_rows_in_batches_and_purges_jobs() -> None:
    with Example("janitor.py") as janitor:
        assert janitor.wait(timeout=30) == 0, janitor.errors
    assert "purged 20 jobs" in janitor.output
    assert (
        "250 old documents deleted; 50 recently deleted and 100 alive ones kept" in janitor.output
    )
    assert janitor.output.count("janitor: deleted") == 3  # batches of 100, 100 and 50
