"""An out-of-band migration on a SQLite file: 10,000 rows get a new column filled in batches of
500, in the background, while the app's other routines run. It prints progress as it goes; stop
it (Ctrl-C) and start it again and it goes on where it was; --reverse runs it back.

Run: python examples/migration.py [--db PATH] [--reverse] [--seconds N]
  --db PATH    the SQLite file (default: routines-migration-demo.db in the temp directory)
  --reverse    run the migration back (down() batches) to 0%
  --seconds N  stop after N seconds even if not done (to see it resume)
"""

from __future__ import annotations

import argparse
import signal
import sqlite3
import sys
import tempfile
import threading
from pathlib import Path

import routines
from routines import durable

ROWS = 10_000
BATCH = 500


class FillEmailDomain:
    """The migration: `users.domain` is the part of `users.email` after the '@'."""

    id = "users-email-domain"

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)
        self.pause = threading.Event()

    def progress(self) -> float:
        done, total = self.db.execute("SELECT count(domain), count(*) FROM users").fetchone()
        return float(done) / total if total else 1.0

    def up(self) -> None:  # one batch, idempotent: only rows not done yet
        self.db.execute(
            "UPDATE users SET domain = substr(email, instr(email, '@') + 1) WHERE id IN"
            f" (SELECT id FROM users WHERE domain IS NULL ORDER BY id LIMIT {BATCH})"
        )
        self.pause.wait(0.1)  # a real batch takes a while

    def down(self) -> None:
        self.db.execute(
            "UPDATE users SET domain = NULL WHERE id IN"
            f" (SELECT id FROM users WHERE domain IS NOT NULL ORDER BY id DESC LIMIT {BATCH})"
        )
        self.pause.wait(0.1)


def make_table(path: str) -> None:
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, email TEXT, domain TEXT)"
        )
        if not db.execute("SELECT count(*) FROM users").fetchone()[0]:
            db.executemany(
                "INSERT INTO users (email) VALUES (?)",
                [(f"user{n}@example{n % 7}.com",) for n in range(ROWS)],
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_db = Path(tempfile.gettempdir()) / "routines-migration-demo.db"
    parser.add_argument("--db", default=str(default_db))
    parser.add_argument("--reverse", action="store_true")
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    make_table(args.db)
    with durable.open_store(f"sqlite:///{args.db}") as store:
        migration = FillEmailDomain(args.db)
        store.set_migration_direction(migration.id, reverse=args.reverse)
        runner = durable.MigrationRunner(store, [migration], interval=0.05)
        monitor: routines.Monitor

        def report_progress() -> None:  # one of "the app's other routines"
            (status,) = [s for s in store.migrations() if s.id == migration.id]
            direction = "back" if status.reverse else "forward"
            print(f"progress: {status.progress:.0%} ({direction})", flush=True)
            if status.complete:
                monitor.shutdown("migration complete")

        monitor = routines.Monitor(
            runner, routines.PeriodicRoutine(report_progress, name="progress", interval=0.25)
        )
        deadline = threading.Timer(args.seconds, monitor.shutdown, args=("time is up",))
        deadline.start()
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # run() handles them; ignored after it
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        report = monitor.run()
        deadline.cancel()
        print(f"stopped: {report.reason}", flush=True)
        return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
