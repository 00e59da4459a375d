"""Sourcegraph's HardDeleter in Python: a janitor that hard-deletes soft-deleted rows older than a
cut-off, in batches, and purges old final jobs of a queue; a PeriodicRoutine under a Singleton,
so that with several replicas only one of them sweeps.

Run: python examples/janitor.py   (a SQLite file in a temporary directory; a few seconds)
"""

from __future__ import annotations

import signal
import sqlite3
import sys
import tempfile
import threading
from datetime import timedelta
from pathlib import Path

import routines
from routines import durable

BATCH = 100  # rows deleted per statement, so the table is never locked for long
CUT_OFF = timedelta(days=30)  # soft-deleted rows older than this are deleted for good


def make_documents(path: str) -> None:
    """400 documents: 250 soft-deleted 40 days ago, 50 yesterday, 100 alive."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE documents (id INTEGER PRIMARY KEY, deleted_at TEXT)")
        db.executemany(
            "INSERT INTO documents (deleted_at) VALUES (datetime('now', ?))",
            [("-40 days",)] * 250 + [("-1 day",)] * 50,
        )
        db.executemany("INSERT INTO documents (deleted_at) VALUES (NULL)", [()] * 100)


def main() -> int:
    with tempfile.TemporaryDirectory() as directory:
        path = str(Path(directory) / "app.db")
        make_documents(path)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        with durable.open_store(f"sqlite:///{path}") as store:
            emails = store.queue("emails")
            for job_id in emails.enqueue_many(range(20)):
                emails.cancel(job_id)  # 20 final jobs for the purge
            deleted = [0]
            monitor: routines.Monitor

            def hard_delete() -> object:
                cursor = db.execute(
                    "DELETE FROM documents WHERE id IN (SELECT id FROM documents"
                    " WHERE deleted_at < datetime('now', ?) LIMIT ?)",
                    (f"-{CUT_OFF.days} days", BATCH),
                )
                deleted[0] += cursor.rowcount
                purged = emails.purge(older_than=0)  # a real janitor keeps a week or so
                print(f"janitor: deleted {cursor.rowcount} documents, purged {purged} jobs")
                if cursor.rowcount == BATCH:
                    return routines.REINVOKE_IMMEDIATELY  # more to do: the next batch at once
                monitor.shutdown("nothing old left")  # for the demo; a real one runs on
                return None

            janitor = durable.Singleton(
                routines.PeriodicRoutine(hard_delete, name="hard-deleter", interval=60),
                store,
                ttl=30,
            )
            monitor = routines.Monitor(janitor)
            deadline = threading.Timer(30, monitor.shutdown, args=("time is up",))
            deadline.start()
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # run() handles them
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            report = monitor.run()
            deadline.cancel()
            left = db.execute(
                "SELECT count(*) FILTER (WHERE deleted_at IS NOT NULL), count(*) FROM documents"
            ).fetchone()
            db.close()
            print(
                f"janitor: {deleted[0]} old documents deleted; {left[0]} recently deleted and "
                f"{left[1] - left[0]} alive ones kept; {report.reason}"
            )
            return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
