"""A tasks module, as an app would write one, for `routines worker task_module:tasks`
(tests/durable/test_cli.py runs it from this directory).

Its store comes from ROUTINES_STORE_URL and ROUTINES_STORE_SCHEMA. Every task appends
"<task> <job id> <attempt>" to the file TASKS_RECORD as it starts (one line per write,
flushed), so the test can tell from the handlers themselves what ran, and how often.
"""

from __future__ import annotations

import logging
import os
import threading

import routines
from routines import durable

store = durable.open_store(
    os.environ["ROUTINES_STORE_URL"], schema=os.environ["ROUTINES_STORE_SCHEMA"]
)
tasks = durable.Tasks(store, queue="calls")

_record = open(os.environ["TASKS_RECORD"], "a")  # noqa: SIM115 - open for the process's life
_lock = threading.Lock()
logger = logging.getLogger("task_module")


def _started(task: str, job: durable.Job) -> None:
    with _lock:
        _record.write(f"{task} {job.id} {job.attempts}\n")
        _record.flush()


@tasks.task(name="add")
def add(a: int, b: int, *, job: durable.Job) -> int:
    _started("add", job)
    return a + b


@tasks.task(name="greet", queue="greetings")
def greet(name: str, *, punctuation: str = "!", job: durable.Job) -> str:
    _started("greet", job)
    return f"hello {name}{punctuation}"


@tasks.task(name="square")
def square(n: int, *, job: durable.Job) -> int:
    _started("square", job)
    return n * n


@tasks.task(name="wait")
def wait(seconds: float, *, job: durable.Job) -> None:
    """Waits, or gives up on a stop: the job is handed back, its attempt not spent."""
    _started("wait", job)
    logger.info("waiting %gs", seconds, extra={"job_id": job.id, "seconds": seconds})
    if routines.sleep(seconds):
        raise RuntimeError("stopped mid-way: hand the job back")


@tasks.task(name="stubborn")
def stubborn(seconds: float, *, job: durable.Job) -> None:
    """Ignores the stop (a handler stuck in a call that can't be interrupted)."""
    _started("stubborn", job)
    threading.Event().wait(seconds)


def make_worker() -> routines.Routine:
    """A factory target: `routines worker task_module:make_worker`."""
    return tasks.worker(concurrency=2)
