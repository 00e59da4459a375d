"""docs/operations.md shows real output: this test builds the store the page describes (a shop
whose tasks send receipts and newsletters, a nightly report, a held lease), runs every command
of its ```console blocks in order against it (the page's `<!-- ops: NAME -->` comments say
when the shop does something in between: run its workers, enqueue), on both backends, and
compares what each printed with the page, times, ages, worker names and traceback frames aside.

`ROUTINES_WRITE_DOCS=1` writes the output into the page instead (run it on SQLite:
`-k sqlite`), paths shortened to the checkout's.
"""

from __future__ import annotations

import os
import re
import shlex
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from routines import durable
from routines.durable._errors import error_report
from routines.durable._model import holder_id

from .support import Cli, backend_of, poll
from helpers import join, start_in_thread

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "operations.md"
WRITE = os.environ.get("ROUTINES_WRITE_DOCS") == "1"


class Shop:
    """The app of the page: its tasks, its workers (run now and then, on threads), its nightly
    report's runs, and the lease of its janitor."""

    def __init__(self, store: durable.Store) -> None:
        self.store = store
        self.smtp_up = threading.Event()
        self.tasks = durable.Tasks(store, queue="emails")
        self.lease = store.lease("shop.janitor", ttl=300)

        @self.tasks.task(name="shop.send_receipt", max_attempts=1)
        def send_receipt(order: int, to: str) -> dict[str, object]:
            if order in (1043, 1044) and not self.smtp_up.is_set():
                raise ConnectionRefusedError(111, "smtp.shop.example:587 refused the connection")
            return {"order": order, "message_id": f"<{order}@shop.example>"}

        @self.tasks.task(name="shop.send_newsletter", queue="newsletters")
        def send_newsletter(issue: str, *, job: durable.Job) -> int:
            if job.attempts == 1:
                raise TimeoutError("the mailing list service did not answer within 30s")
            return 1200

        self.send_receipt, self.send_newsletter = send_receipt, send_newsletter

    def actions(self) -> dict[str, Callable[[], None]]:
        return {"shop": self.open, "work": self.work, "enqueue": self.enqueue}

    def open(self) -> None:
        """Five receipts (two of which the mail server refuses), a newsletter that times out
        once, three nights of the report (the second failed), the janitor's lease."""
        for order, to in enumerate(["ada", "bob", "cy", "dee", "eve"], start=1041):
            self.send_receipt.enqueue(order, f"{to}@example.com")
        self.send_newsletter.enqueue("2026-12")
        self.run_workers(lambda: self.counts("emails")["failed"] == 2 and self.errored())
        self.record_nights()
        assert self.lease.acquire()

    def work(self) -> None:
        """The mail server is back: the workers run what is due."""
        self.smtp_up.set()
        self.run_workers(self.idle)

    def enqueue(self) -> None:
        for order, to in enumerate(["fay", "gus", "hal"], start=1046):
            self.send_receipt.enqueue(order, f"{to}@example.com")

    def counts(self, queue: str) -> dict[durable.JobState, int]:
        return self.store.queue(queue).counts()

    def errored(self) -> bool:
        return self.counts("newsletters")["errored"] == 1

    def idle(self) -> bool:
        """Nothing running, nothing due, and the same counts before and after that was read
        (a claim between two reads would change them)."""
        before = self.store.queues()
        ages = {info.name: info.oldest_ready_age for info in self.store.queues()}
        after = self.store.queues()
        return [i.counts for i in before] == [i.counts for i in after] and all(
            info.paused or (ages[info.name] is None and not info.counts["processing"])
            for info in after
        )

    def run_workers(self, done: Callable[[], bool]) -> None:
        worker = self.tasks.worker(concurrency=2, poll_interval=0.05)
        thread = start_in_thread(worker, "shop-workers")
        try:
            assert poll(done, timeout=30), self.store.queues()
        finally:
            worker.stop()
            join(thread)

    def record_nights(self) -> None:
        """The runs a `Scheduled(build_report, store, cron="0 2 * * *")` leaves: the last three
        nights, written by the store as the schedule writes them."""
        backend = backend_of(self.store)
        now = datetime.now(timezone.utc)
        latest = now.replace(hour=2, minute=0, second=0, microsecond=0)
        if latest > now:
            latest -= timedelta(days=1)
        for night in (2, 1, 0):
            tick, worker = latest - timedelta(days=night), holder_id()
            assert backend.claim_tick("reports.nightly", tick, worker, 60.0) == "claimed"
            error = None
            if night == 1:
                try:
                    raise OSError(28, "No space left on device: '/var/reports/2026-12.pdf'")
                except OSError as failure:
                    error = error_report(failure)
            assert backend.finish_run("reports.nightly", tick, worker, error)


# -- the page -------------------------------------------------------------------------------------


def steps(text: str) -> Iterator[tuple[str, str, int, int]]:
    """The page's steps in order: ("action", NAME, line, line) for a comment, and ("command",
    COMMAND LINE, first, last) for each `$ ` line of a console block, first and last the lines
    of its output on the page (last excluded)."""
    lines = text.splitlines()
    n = 0
    while n < len(lines):
        found = re.fullmatch(r"<!-- ops: (\w+) -->", lines[n])
        if found:
            yield "action", found.group(1), n, n
        elif lines[n] == "```console":
            end = lines.index("```", n)
            commands = [i for i in range(n + 1, end) if lines[i].startswith("$ ")]
            for i, start in enumerate(commands):
                stop = commands[i + 1] if i + 1 < len(commands) else end
                yield "command", lines[start][2:], start + 1, stop
            n = end
        n += 1


def normalized(lines: list[str]) -> list[str]:
    """Output as the page may differ from a run: no times, ages, worker names or traceback
    frames, and spaces (alignment) collapsed."""
    kept: list[str] = []
    frame_indent: int | None = None
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if frame_indent is not None and indent > frame_indent:
            continue  # the source line and markers under a frame
        frame_indent = indent if line.lstrip().startswith('File "') else None
        if frame_indent is not None:
            continue
        line = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", "<time>", line)
        line = re.sub(r"[\w.-]+:\d+:[0-9a-f]{8}", "<worker>", line)
        line = re.sub(r"\b\d+[smhd]\b", "<n>", line)
        line = re.sub(r"\b\d+\.\d+\b", "<seconds>", line)  # an age in JSON
        line = re.sub(r"\bin <n>|<n> ago|\bnow\b", "<age>", line)
        kept.append(" ".join(line.split()))
    return kept


def alike(ran: list[str], shown: list[str]) -> bool:
    """The same lines, but for where a cut cell was cut: the width left to it depends on the
    other cells (an age, a pid), so a line that ends in `...` may end a few characters sooner
    or later."""
    if len(ran) != len(shown):
        return False
    for one, other in zip(ran, shown, strict=True):
        if one == other:
            continue
        if not (one.endswith("...") and other.endswith("...")):
            return False
        shorter, longer = sorted((one[:-3], other[:-3]), key=len)
        if not longer.startswith(shorter) or len(longer) - len(shorter) > 8:
            return False
    return True


def test_the_page_s_commands_print_what_it_shows(
    cli: Cli, store: durable.Store, request: pytest.FixtureRequest
) -> None:
    shop = Shop(store)
    actions = shop.actions()
    text = PAGE.read_text()
    page = text.splitlines()
    written: list[str] = []
    kept_until = 0
    ran_commands = 0
    try:
        for kind, what, first, last in steps(text):
            if kind == "action":
                actions[what]()
                continue
            argv = shlex.split(what)
            assert argv[0] == "routines", what
            ran = cli(*argv[1:])
            assert ran.code == 0, (what, ran)
            shown = (ran.out + ran.err).replace(f"{ROOT}/", "").splitlines()
            ran_commands += 1
            if WRITE:
                written += [*page[kept_until:first], *shown]
                kept_until = last
                continue
            assert alike(normalized(shown), normalized(page[first:last])), what
    finally:
        if shop.lease.token is not None:
            shop.lease.release()
    assert ran_commands >= 12
    if WRITE and "sqlite" in request.node.name:
        PAGE.write_text("\n".join([*written, *page[kept_until:]]) + "\n")
