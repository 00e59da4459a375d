"""A replica running an out-of-band migration (tests/durable/test_migration_processes.py).

usage: migration.py URL SCHEMA RECORD [--fail-first]

The migration "double" fills the column `doubled` of the table of items the test made (SQLite:
`<schema>_items` in the same file; PostgreSQL: `<schema>.items`), ten rows a batch, each batch
taking 0.1 s; it appends "<pid> <up|down> <start> <end>" to RECORD after each batch. With
--fail-first its first batch raises. Prints "ready" once the runner has started under its
Monitor, its SIGTERM handler in place (`_ready.py`).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import threading
import time
from typing import Any

from _ready import say_ready_at_start

import routines
from routines import durable


class Double:
    id = "double"

    def __init__(self, url: str, schema: str, record: Any, fail_first: bool) -> None:
        self.record = record
        self.fail_first = fail_first
        self.pause = threading.Event()
        if url.startswith("sqlite"):
            self.connection: Any = sqlite3.connect(
                url.removeprefix("sqlite:///"),
                timeout=5,
                isolation_level=None,
                check_same_thread=False,  # made here, used on the runner's thread
            )
            self.table, self.mark = f"{schema}_items", "?"
        else:
            import psycopg

            self.connection = psycopg.connect(url, autocommit=True)
            self.table, self.mark = f'"{schema}".items', "%s"

    def _rows(self, query: str, *params: object) -> list[Any]:
        return list(self.connection.execute(query.replace("?", self.mark), params).fetchall())

    def progress(self) -> float:
        done, total = self._rows(f"SELECT count(doubled), count(*) FROM {self.table}")[0]
        return done / total

    def _batch(self, direction: str, query: str) -> None:
        began = time.time()
        if self.fail_first:
            self.fail_first = False
            raise RuntimeError("the first batch fails")
        self.pause.wait(0.1)  # a batch takes a while: two at once would show
        self.connection.execute(query)
        self.record.write(f"{os.getpid()} {direction} {began} {time.time()}\n")
        self.record.flush()

    def up(self) -> None:
        self._batch(
            "up",
            f"UPDATE {self.table} SET doubled = value * 2 WHERE id IN"
            f" (SELECT id FROM {self.table} WHERE doubled IS NULL ORDER BY id LIMIT 10)",
        )

    def down(self) -> None:
        self._batch(
            "down",
            f"UPDATE {self.table} SET doubled = NULL WHERE id IN"
            f" (SELECT id FROM {self.table} WHERE doubled IS NOT NULL ORDER BY id LIMIT 10)",
        )


def main() -> int:
    url, schema, record_path = sys.argv[1:4]
    with (
        open(record_path, "a") as record,
        durable.open_store(url, schema=schema, timeout=0.5) as store,
    ):
        migration = Double(url, schema, record, "--fail-first" in sys.argv)
        runner = durable.MigrationRunner(store, [migration], interval=0.05)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        monitor = routines.Monitor(runner, on_event=say_ready_at_start(), stop_timeout=5)
        return monitor.run().exit_code


if __name__ == "__main__":
    sys.exit(main())
