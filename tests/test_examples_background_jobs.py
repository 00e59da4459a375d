"""examples/background_jobs.py runs as a program: SIGUSR1 queues jobs, SIGTERM drains and exits."""

from __future__ import annotations

import re
import signal

import pytest

from helpers import Example


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_each_sigusr1_runs_a_job_and_a_stop_signal_drains_and_exits(signum: int) -> None:
    with Example("background_jobs.py", "0.05") as jobs:
        jobs.expect("background jobs: pid")
        jobs.expect("jobs: started")  # the signal handlers are in place
        for job in (1, 2, 3):
            jobs.send(signal.SIGUSR1)
            jobs.expect(f"job {job}: done")  # one at a time: signals of one kind coalesce
        jobs.send(signum)
        code = jobs.wait()
    assert code == 0, jobs.errors
    output = jobs.output
    assert re.search(r"job 1: started on routine:jobs:worker-\d", output), output
    assert "done: 3 jobs run, 0 failed" in output
    assert "never ran" not in output
    assert f"shutdown (received {signal.Signals(signum).name})" in output
    assert re.search(r"^\s*jobs\s+stopped\s+-$", output, re.MULTILINE), output
    assert "Traceback" not in jobs.errors
