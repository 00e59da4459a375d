"""The background work the host recipes share: a `WorkerPool` of jobs under a `Monitor`.

Each recipe (gunicorn_hooks.py, flask_app.py, the Django project) decides *where* to call
`start()` and `stop()`; this module is the part that does not depend on the host. A job appends
a line to a file (`$ROUTINES_EXAMPLE_JOBS`, default `jobs.log`), so that a test can count them:

    started <pid>          a process started the routines
    done <job> <pid>       a job ran
    handed back <job>      a job was accepted but never started (the drain ran out): a real app
                           would put it back in its database here
    stopped <pid> <ok>     the shutdown was over, and whether the report was ok

The deadlines nest: drain_timeout (3 s) < stop_timeout (5 s) < the host's kill deadline
(gunicorn's graceful_timeout, 30 s by default; docs/embedding.md).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from pathlib import Path

import routines

DRAIN_TIMEOUT = 3.0  # how long a stopping pool goes on running queued jobs
STOP_TIMEOUT = 5.0  # how long the Monitor waits for every routine; longer than the drain


_monitor: routines.Monitor | None = None
_pool: routines.WorkerPool[str, None] | None = None
_stopped = False


def jobs_file() -> Path:
    return Path(os.environ.get("ROUTINES_EXAMPLE_JOBS", "jobs.log"))


def record(line: str) -> None:
    """Append one line to the jobs file (one short write: lines from processes don't mix)."""
    with jobs_file().open("a") as file:
        file.write(f"{line}\n")


def run_job(job: str) -> None:
    threading.Event().wait(0.05)  # the work takes a moment, so a queue builds up
    record(f"done {job} {os.getpid()}")


def make_routines() -> tuple[routines.Routine, ...]:
    """The routines of this app, not started: a pool of jobs and a heartbeat."""
    global _pool
    _pool = routines.WorkerPool(
        run_job, name="jobs", workers=4, buffer=1000, drain_timeout=DRAIN_TIMEOUT
    )
    heartbeat = routines.PeriodicRoutine(lambda: None, name="heartbeat", interval=1.0)
    return _pool, heartbeat


def build() -> routines.Monitor:
    """A Monitor over the routines of this app, not started."""
    global _monitor
    _monitor = routines.Monitor(*make_routines(), stop_timeout=STOP_TIMEOUT)
    return _monitor


def let_the_child_stop_first() -> None:
    """For the watcher process of a development server's reloader (`flask run --reload`,
    `runserver`), which imports the app but never serves.

    Ctrl-C reaches the watcher too, which then kills the serving child 0.25 s later
    (`subprocess.call()` and `run()` do): with this, the watcher lets the child stop its routines
    and exit, then exits with it. A handler that does nothing, not SIG_IGN: the child, started
    afterwards, would inherit SIG_IGN, and Ctrl-C would no longer reach its server.
    """
    signal.signal(signal.SIGINT, _do_nothing)


def _do_nothing(signum: int, frame: object) -> None:
    pass


def start(*, chain_signals: bool = True, host_deadline: float | None = None) -> routines.Monitor:
    """Build and start the routines in this process, next to a host that owns the main thread.

    With `chain_signals`, SIGINT/SIGTERM first start the shutdown, then go on to the host's own
    handler (or, where it had none, end the process once the routines have stopped). Either
    way, the routines are stopped and waited for when the interpreter exits, at the latest.
    """
    if chain_signals and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        # SIGTERM would end the process as soon as the routines stopped, skipping the exit hooks
        # (the one below hands back unstarted jobs): make it a normal exit, as the reloaders do.
        signal.signal(signal.SIGTERM, _exit_normally)
    monitor = build()
    monitor.start_in_host(chain_signals=chain_signals, host_deadline=host_deadline)
    record(f"started {os.getpid()}")
    # Hosts that end with the interpreter (flask run, runserver) have no exit hook of their own:
    # this one runs before start_in_host()'s, and also hands back what the drain didn't reach.
    atexit.register(stop, "the interpreter is exiting")
    return monitor


def _exit_normally(signum: int, frame: object) -> None:
    sys.exit(0)


def stop(reason: str) -> routines.ShutdownReport | None:
    """Stop the routines and wait for them; hand back the jobs that never started. Once."""
    global _stopped
    if _monitor is None or _pool is None or _stopped:
        return None
    _stopped = True
    _monitor.shutdown(reason)
    report = _monitor.wait(STOP_TIMEOUT + 1.0)
    hand_back(report)
    return report


def hand_back(report: routines.ShutdownReport | None) -> None:
    """After the routines stopped: record the jobs that never started, and the end."""
    if _pool is not None:
        for job in _pool.unprocessed():
            record(f"handed back {job}")
    record(f"stopped {os.getpid()} {report is not None and report.ok}")


def submit(job: str) -> tuple[int, str]:
    """Hand a job to the pool: an HTTP status (202 accepted, 503 not) and a message."""
    if _pool is None:
        return 503, "the routines were not started in this process\n"
    try:
        _pool.submit(job, block=False)
    except (routines.PoolClosed, routines.PoolFull, RuntimeError) as exc:
        # RuntimeError: the pool was started in another process, before a fork.
        return 503, f"{exc}\n"
    return 202, f"accepted {job}\n"


def status() -> dict[str, object]:
    """What /status shows: this process, and its routines as this process sees them."""
    if _monitor is None:
        return {"pid": os.getpid(), "started": False, "healthy": False, "routines": []}
    return {
        "pid": os.getpid(),
        "started": True,
        "healthy": _monitor.healthy(),
        "routines": [each.to_dict() for each in _monitor.status()],
    }
