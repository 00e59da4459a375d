"""The other processes of figures 8-11: `python _child.py ROLE SIDE CONFIG_JSON`.

Roles:
- `worker`: a worker of SIDE whose job prints `{"event": "started", ...}` (`_peer_tasks.report`),
  and never ends if CONFIG has `"hang": true`; it prints `{"event": "ready"}` first.
- `rq-burst`: an rq `SimpleWorker` that works the queue until it is empty, then exits.
- `schedule`: SIDE's every-second job for CONFIG's `seconds`, printing `{"event": "ran", ...}`
  each run.
- `throughput`: a routines `QueueWorker(concurrency=4)` of trivial jobs (figure 14), printing
  `{"event": "ready"}` and working until SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _peer_tasks
from _peer_tasks import report

import routines
from routines import durable

# What the benchmark reads: the JSON lines of `say()`. Everything else a library prints (rq logs
# every job to stdout) goes to stderr, or a full pipe would block the child.
_LINES = sys.stdout
sys.stdout = sys.stderr


def say(**line: Any) -> None:
    _LINES.write(json.dumps(line) + "\n")
    _LINES.flush()


# -- workers --------------------------------------------------------------------------------


def routines_worker(config: dict[str, Any]) -> None:
    short = config.get("short", False)
    store = durable.open_store(config["url"], timeout=1.0 if short else 5.0)
    options: dict[str, Any] = {
        "poll_interval": config.get("poll_interval", 1.0),
        "liveness": config.get("liveness", True),
    }
    if short:
        options.update(heartbeat_interval=0.25, stalled_after=2.0)
    worker = durable.QueueWorker(
        store.queue("bench"), lambda job: report(job.payload), name="bench", **options
    )
    say(event="ready")
    routines.Monitor(worker).run()
    store.close()


def routines_throughput(config: dict[str, Any]) -> None:
    store = durable.open_store(config["url"])
    worker = durable.QueueWorker(
        store.queue("bench"), lambda job: None, name="bench", concurrency=config["handlers"]
    )
    say(event="ready")
    routines.Monitor(worker).run()
    store.close()


def procrastinate_worker(config: dict[str, Any]) -> None:
    from procrastinate import App, PsycopgConnector

    app = App(connector=PsycopgConnector(conninfo=config["url"]))
    app.task(name="report")(report)
    say(event="ready")
    app.run_worker(concurrency=1)


def pgqueuer_worker(config: dict[str, Any]) -> None:
    asyncio.run(_pgqueuer_worker(config))


async def _pgqueuer_worker(config: dict[str, Any]) -> None:
    import asyncpg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.qm import QueueManager
    from pgqueuer.queries import Queries

    connection = await asyncpg.connect(config["url"])
    manager = QueueManager(Queries(AsyncpgDriver(connection)))

    @manager.entrypoint("report")
    async def entry(job: Any) -> None:
        report(int(job.payload.decode()))

    # its defaults: a stale heartbeat after 30 s, an idle dequeue every 30 s
    seconds = 2 if config.get("short") else 30
    say(event="ready")
    await manager.run(
        heartbeat_timeout=timedelta(seconds=seconds),
        dequeue_timeout=timedelta(seconds=seconds / 2 if config.get("short") else seconds),
    )


def huey_worker(config: dict[str, Any]) -> None:
    from huey import SqliteHuey

    huey = SqliteHuey(filename=config["path"])
    huey.task()(report)
    consumer = huey.create_consumer(workers=1, worker_type="thread", periodic=False)
    say(event="ready")
    consumer.run()


def rq_worker(config: dict[str, Any]) -> None:
    import redis
    from rq import Worker

    connection = redis.Redis.from_url(config["redis"])
    say(event="ready")
    Worker(["bench"], connection=connection).work(logging_level="WARNING")


WORKERS = {
    "routines": routines_worker,
    "procrastinate": procrastinate_worker,
    "pgqueuer": pgqueuer_worker,
    "huey": huey_worker,
    "rq": rq_worker,
}


def rq_burst(config: dict[str, Any]) -> None:
    import redis
    from rq import SimpleWorker

    connection = redis.Redis.from_url(config["redis"])
    SimpleWorker([config["queue"]], connection=connection).work(burst=True, logging_level="WARNING")


# -- schedules ------------------------------------------------------------------------------


def ran() -> None:
    say(event="ran", at=time.time())


def routines_schedule(config: dict[str, Any]) -> None:
    store = durable.open_store(config["url"])
    monitor = routines.Monitor(durable.Scheduled(ran, store, every=1, name="tick"), signals=())
    monitor.start()
    threading.Event().wait(config["seconds"])
    monitor.shutdown()
    monitor.wait(30.0)
    store.close()


def apscheduler_schedule(config: dict[str, Any]) -> None:
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler()
    scheduler.add_job(ran, "interval", seconds=1)
    scheduler.start()
    threading.Event().wait(config["seconds"])
    scheduler.shutdown(wait=True)


def huey_schedule(config: dict[str, Any]) -> None:
    from huey import SqliteHuey, crontab

    huey = SqliteHuey(filename=config["path"])
    huey.periodic_task(crontab())(ran)  # its finest: once a minute
    consumer = huey.create_consumer(workers=1, worker_type="thread")
    consumer.start()
    threading.Event().wait(config["seconds"])
    consumer.stop(graceful=True)


SCHEDULES = {
    "routines": routines_schedule,
    "apscheduler": apscheduler_schedule,
    "huey": huey_schedule,
}


def main() -> None:
    role, side, config = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    # procrastinate warns that its App is made in __main__ (as here, on purpose): quiet it.
    logging.getLogger("procrastinate").setLevel(logging.ERROR)
    # the stalled sweep's warning is what figure 10 measures, not news on the terminal
    logging.getLogger("routines").setLevel(logging.ERROR)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _peer_tasks.HANG["hang"] = bool(config.get("hang"))
    if role == "worker":
        WORKERS[side](config)
    elif role == "throughput":
        routines_throughput(config)
    elif role == "rq-burst":
        rq_burst(config)
    elif role == "schedule":
        SCHEDULES[side](config)
    else:
        msg = f"unknown role {role!r}"
        raise SystemExit(msg)


if __name__ == "__main__":
    main()
