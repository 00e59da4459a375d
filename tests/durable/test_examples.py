"""The durable tier's examples run as a user would run them."""

from __future__ import annotations

import re

from helpers import Example


def test_durable_jobs_loses_nothing_when_a_worker_is_sigtermed() -> None:
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
