"""Durable jobs on a SQLite file: one process enqueues, two worker processes work the queue,
and a SIGTERM to one of them hands its running jobs back to the other. Nothing is lost.

Run: python examples/durable_jobs.py          (the demo: a few seconds, then a summary)
     python examples/durable_jobs.py worker DB (one worker process, as the demo starts them)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import routines
from routines import durable

JOBS = 40


def send_email(job: durable.Job) -> str:
    """A job that takes a moment; on a stop it gives up (the job goes back to the queue)."""
    if job.payload["n"] % 7 == 3 and job.attempts == 1:
        raise durable.Retry(after=0.2)  # a flaky mail server: try again shortly
    if routines.sleep(0.3):  # True when the worker is stopping
        raise RuntimeError("stopped mid-way: hand the job back")
    return f"sent by {os.getpid()}"


def work(database: str) -> int:
    """One worker process: a QueueWorker under a Monitor, until SIGTERM or Ctrl-C."""
    with durable.open_store(f"sqlite:///{database}", timeout=1.0) as store:
        worker = durable.QueueWorker(
            store.queue("emails"),
            send_email,
            concurrency=2,
            poll_interval=0.2,  # in-process enqueues wake it at once; other processes: polled
            heartbeat_interval=0.5,
            stalled_after=3.0,  # a worker killed outright: its jobs run again after this
        )
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # run() handles them; ignored after it
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(f"worker {os.getpid()}: working", flush=True)
        report = routines.Monitor(worker, stop_timeout=5).run()
        print(f"worker {os.getpid()}: {report.reason}, {worker.status().runs} attempts", flush=True)
        return report.exit_code


def demo() -> int:
    with tempfile.TemporaryDirectory() as directory:
        database = str(Path(directory) / "jobs.db")
        with durable.open_store(f"sqlite:///{database}", timeout=1.0) as store:
            emails = store.queue("emails")
            workers = [
                subprocess.Popen([sys.executable, __file__, "worker", database]) for _ in range(2)
            ]
            try:
                enqueued = []
                for n in range(JOBS):  # one process enqueues while two work
                    enqueued.append(emails.enqueue({"n": n, "to": f"user{n}@example.com"}))
                    time.sleep(0.02)
                time.sleep(0.5)
                print(f"demo: SIGTERM to worker {workers[0].pid} while it works", flush=True)
                workers[0].send_signal(signal.SIGTERM)
                workers[0].wait(10)
                deadline = time.monotonic() + 30
                while emails.counts()["completed"] < JOBS and time.monotonic() < deadline:
                    threading.Event().wait(0.1)
            finally:
                for process in workers:
                    process.send_signal(signal.SIGTERM)
                for process in workers:
                    process.wait(10)
            jobs = [emails.get(job_id) for job_id in enqueued]
            completed = sum(job is not None and job.state == "completed" for job in jobs)
            retried = sum(job is not None and job.attempts > 1 for job in jobs)
            lost = JOBS - completed
            print(f"demo: {completed} of {JOBS} jobs completed, {retried} retried, {lost} lost")
            print(f"demo: counts {emails.counts()}")
            return 0 if lost == 0 else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        sys.exit(work(sys.argv[2]))
    sys.exit(demo())
