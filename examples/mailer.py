"""An app's tasks module: functions declared as tasks on a durable queue.

A worker runs them: from this directory,
    ROUTINES_STORE_URL=sqlite:///jobs.db routines worker mailer:tasks --concurrency 4
and any process of the app enqueues calls:
    from mailer import send_email
    send_email.enqueue("ada@example.com", subject="welcome")

examples/durable_jobs.py runs two such workers and enqueues from a third process.
"""

from __future__ import annotations

import os

import routines
from routines import durable

# The store comes from the environment, as every `routines` command reads it.
store = durable.open_store(os.environ.get("ROUTINES_STORE_URL", "sqlite:///jobs.db"))
tasks = durable.Tasks(store, queue="emails")


@tasks.task(max_attempts=3)  # its name: "mailer.send_email", the same in every process
def send_email(to: str, subject: str, *, job: durable.Job) -> str:
    """Sends one email; the worker passes `job` (for `job.id` and `job.attempts`)."""
    if to.startswith("flaky") and job.attempts == 1:
        raise durable.Retry(after=0.2)  # a flaky mail server: try again shortly
    if routines.sleep(0.3):  # True once the worker is stopping
        raise RuntimeError("stopped mid-way: the job goes back to the queue, its attempt unspent")
    return f"{subject!r} sent to {to} by process {os.getpid()}"
