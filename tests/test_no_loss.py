"""No loss under a real kill signal: a process with a pool of 100,000 queued jobs gets SIGTERM at
a random moment; the jobs it ran plus the jobs it handed back are exactly the input, once each.

The program is tests/programs/no_loss.py. The moments are drawn from a seeded generator, so a
failure names a moment that can be replayed; `--soak` tries many more of them.
"""

from __future__ import annotations

import json
import random
import signal
import threading
from pathlib import Path

import pytest

from helpers import EXAMPLE_WAIT, Example

NO_LOSS = Path(__file__).resolve().parent / "programs" / "no_loss.py"
JOBS = 100_000
SEED = 20240607


def moments(mode: str, count: int, latest: float) -> list[float]:
    draw = random.Random(f"{SEED}-{mode}")
    return [0.0] + [round(draw.uniform(0.0, latest), 3) for _ in range(count - 1)]


CASES = [
    *((mode, delay) for mode in ("drain", "nodrain") for delay in moments(mode, 2, 1.2)),
    *(("timeout", delay) for delay in moments("timeout", 2, 0.5)),
]


def run_until_sigterm(tmp_path: Path, mode: str, delay: float) -> tuple[dict[str, object], int]:
    out = tmp_path / "result.json"
    with Example(str(NO_LOSS), str(out), mode) as program:
        program.expect("ready", timeout=EXAMPLE_WAIT * 2)
        threading.Event().wait(delay)  # the random moment; nothing is asserted on timing
        program.send(signal.SIGTERM)
        code = program.wait(EXAMPLE_WAIT * 2)
    assert "Traceback" not in program.errors, program.errors
    result: dict[str, object] = json.loads(out.read_text(encoding="utf-8"))
    return result, code


def assert_nothing_lost(result: dict[str, object]) -> None:
    ran, unprocessed, cancelled = (result[key] for key in ("ran", "unprocessed", "cancelled"))
    assert isinstance(ran, list)
    assert isinstance(unprocessed, list)
    assert len(set(ran)) == len(ran), "a job ran twice"
    assert len(set(unprocessed)) == len(unprocessed), "a job was handed back twice"
    assert not set(ran) & set(unprocessed), "a job both ran and was handed back"
    assert sorted(ran + unprocessed) == list(range(JOBS)), "a job was lost"
    assert unprocessed == sorted(unprocessed), "unprocessed() is in submission order"
    assert cancelled == unprocessed, "the futures cancelled are the jobs handed back"
    assert result["not_done"] == 0


@pytest.mark.parametrize(("mode", "delay"), CASES, ids=[f"{m}-{d}s" for m, d in CASES])
def test_sigterm_at_a_random_moment_loses_no_job_and_runs_none_twice(
    tmp_path: Path, mode: str, delay: float
) -> None:
    result, code = run_until_sigterm(tmp_path, mode, delay)
    assert_nothing_lost(result)
    if mode == "timeout":
        assert (result["outcome"], code) == ("timed_out", 1)
        assert result["unprocessed"], "slow jobs can't all have run within the stop timeout"
    else:
        assert (result["outcome"], code) == ("stopped", 0)


@pytest.mark.soak
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("mode", ["drain", "nodrain", "timeout"])
def test_sigterm_at_many_random_moments_loses_no_job(tmp_path: Path, mode: str) -> None:
    for number, delay in enumerate(moments(f"{mode}-soak", 25, 1.2)):
        result, _ = run_until_sigterm(tmp_path, mode, delay)
        try:
            assert_nothing_lost(result)
        except AssertionError as exc:
            raise AssertionError(f"moment {number}: SIGTERM after {delay}s: {exc}") from None
