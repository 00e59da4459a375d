"""Durable jobs: tasks declared in examples/mailer.py, two `routines worker mailer:tasks`
processes working them, and this process enqueueing. A SIGTERM to one worker while it works
hands its running jobs back, and the other worker runs them: nothing is lost.

Run: python examples/durable_jobs.py   (a few seconds, then a summary)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from routines import durable

CALLS = 40
CONCURRENCY = 4  # handler threads in each worker
HERE = Path(__file__).resolve().parent


def start_worker() -> subprocess.Popen[bytes]:
    """`routines worker mailer:tasks`, run from this directory (`python -m routines` is the
    console script `routines`)."""
    argv = [sys.executable, "-m", "routines", "worker", "mailer:tasks"]
    argv += ["--concurrency", str(CONCURRENCY)]
    return subprocess.Popen(argv, cwd=HERE, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


def both_working(queue: durable.Queue) -> bool:
    """Whether both workers hold jobs (running, or claimed ahead of their handlers)."""
    return len({job.worker for job in queue.jobs(state="processing", limit=1000)}) == 2


def wait_until(done: Callable[[], bool], deadline: float) -> None:
    while not done() and time.monotonic() < deadline:
        threading.Event().wait(0.05)


def main() -> int:
    with tempfile.TemporaryDirectory() as directory:
        # The workers and this process find the store in the environment, as `routines` does.
        os.environ["ROUTINES_STORE_URL"] = f"sqlite:///{Path(directory) / 'jobs.db'}"
        import mailer  # the app's tasks, on that store

        emails = mailer.send_email.queue
        workers = [start_worker() for _ in range(2)]
        try:
            to = [f"{'flaky' if n % 7 == 3 else 'user'}{n}@example.com" for n in range(CALLS)]
            ids = [mailer.send_email.enqueue(address, subject="hi") for address in to[:20]]
            # The others in one transaction: all of them or none.
            ids += mailer.send_email.enqueue_many(
                ((address,), {"subject": "hi"}) for address in to[20:]
            )
            deadline = time.monotonic() + 30
            wait_until(lambda: both_working(emails), deadline)
            print(f"demo: SIGTERM to worker {workers[0].pid} while it works", flush=True)
            workers[0].send_signal(signal.SIGTERM)
            workers[0].wait(15)
            wait_until(lambda: emails.counts()["completed"] == CALLS, deadline)
        finally:
            for process in workers:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in workers:
                process.wait(15)
        jobs = [emails.get(job_id) for job_id in ids]
        completed = sum(job is not None and job.state == "completed" for job in jobs)
        retried = sum(job is not None and job.attempts > 1 for job in jobs)
        lost = CALLS - completed
        print(f"demo: {completed} of {CALLS} jobs completed, {retried} retried, {lost} lost")
        print(f"demo: counts {emails.counts()}")
        mailer.store.close()
        return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
