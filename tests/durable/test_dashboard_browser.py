"""The dashboard in a real headless Chromium, driven by Playwright, over a real store (SQLite
and PostgreSQL) worked by a real `QueueWorker` (spec/OPERATIONS.md section 7): a failed job's
traceback, retry clicked and the job run, a pause that stops the claims and a resume that
starts them, hostile payloads that stay text, forms refused without their CSRF token, a
read-only dashboard, counts that refresh by themselves, and a page that fits a phone.

The screenshots of docs/dashboard.md are made here (into the test's tmp_path; with
ROUTINES_UPDATE_SCREENSHOTS=1 also into docs/images/). Without Chromium or Playwright these
tests skip saying how to run them (tests/durable/dashboards.py); in CI they must run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import routines
from routines import dashboard, durable
from routines.dashboard._app import Dashboard
from routines.dashboard._http import segment

from .conftest import Target
from .dashboards import fail_jobs, launched_chromium, serving, work
from .support import backend_of, poll

# Without Playwright the `browser` fixture skips these tests (or fails them in CI), saying why.
with contextlib.suppress(ImportError):
    from playwright.sync_api import expect

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.timeout(60)

XSS_SCRIPT = "<script>alert(1)</script>"
XSS_IMG = "<img src=x onerror=alert(2)>"
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
ACTION_BUTTONS = re.compile(r"^(Retry.*|Pause.*|Resume.*|Cancel|Run now)$")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched_chromium() as launched:
        yield launched


class Watched:
    """A page, and what it showed that a test must not see: dialogs and console errors (a
    script or style the Content-Security-Policy refused is one)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", self._dialog)
        page.on("console", lambda message: self._console(message.type, message.text))
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _console(self, kind: str, text: str) -> None:
        # A 403 or 404 page is logged as a failed load: expected where a test asks for one.
        if kind == "error" and "Failed to load resource" not in text:
            self.errors.append(text)


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(10_000)
    try:
        yield Watched(context.new_page())
    finally:
        context.close()  # its connections too, so that no request thread outlives the test


def queue_row(page: Page, name: str) -> Any:
    """The overview's row of the queue `name` (found again at each use: the refresh redraws)."""
    return page.locator("#queues tbody tr", has=page.get_by_role("link", name=name, exact=True))


def test_a_failed_job_shows_its_traceback_and_retry_runs_it(
    target: Target, watched: Watched, harness: Any
) -> None:
    store = target.open()
    emails = store.queue("emails")
    fixed = threading.Event()

    def send(job: durable.Job) -> dict[str, str]:
        if not fixed.is_set():
            raise RuntimeError("the mail server said no")
        return {"sent": job.payload["to"]}

    monitor = harness.monitor(durable.QueueWorker(emails, send, poll_interval=0.05))
    job_id = emails.enqueue({"to": "ada@example.com"}, max_attempts=1)
    assert poll(lambda: emails.get(job_id).state == "failed")  # type: ignore[union-attr]
    page = watched.page
    with serving(dashboard.app(store, monitor=monitor)) as url:
        page.goto(f"{url}/queues/emails/jobs/{job_id}")
        traceback = page.locator("pre#traceback")
        expect(traceback).to_contain_text("Traceback (most recent call last):")
        expect(traceback).to_contain_text("RuntimeError: the mail server said no")
        expect(page.locator("#job-state")).to_have_text("failed")
        fixed.set()
        page.get_by_role("button", name="Retry").click()
        expect(page.locator(".notice")).to_contain_text("went back to queued")
        assert poll(lambda: emails.get(job_id).state == "completed")  # type: ignore[union-attr]
        page.reload()
        expect(page.locator("#job-state")).to_have_text("completed")
        expect(page.locator("#result")).to_have_text(
            json.dumps({"sent": "ada@example.com"}, indent=2)
        )
        expect(page.get_by_role("button")).to_have_count(0)  # a completed job: nothing to do
    assert watched.errors == []


def test_pausing_a_queue_stops_its_claims_and_resuming_starts_them_again(
    target: Target, watched: Watched, harness: Any
) -> None:
    store = target.open()
    emails = store.queue("emails")
    started: list[int] = []
    worker = durable.QueueWorker(emails, lambda job: started.append(job.id), poll_interval=0.05)
    monitor = harness.monitor(worker)
    first = emails.enqueue("before the pause")
    assert poll(lambda: started == [first])
    page = watched.page
    with serving(dashboard.app(store, monitor=monitor)) as url:
        page.goto(f"{url}/")
        queue_row(page, "emails").get_by_role("button", name="Pause").click()
        expect(page.locator(".notice")).to_contain_text("Paused")
        expect(queue_row(page, "emails").locator(".pill")).to_have_text("paused")
        assert emails.paused
        assert target.open().queue("emails").paused  # stored: every process sees it
        assert poll(lambda: worker.status().paused), "the worker never saw the pause"
        held = emails.enqueue("while paused")
        # The worker has read the queue again since (its backlog counts the job) and claimed
        # nothing: the claim itself reads the pause, in the database.
        assert poll(lambda: worker.status().queued == 1)
        assert emails.get(held).state == "queued"  # type: ignore[union-attr]
        assert started == [first]
        queue_row(page, "emails").get_by_role("button", name="Resume").click()
        expect(page.locator(".notice")).to_contain_text("Resumed")
        assert poll(lambda: emails.get(held).state == "completed")  # type: ignore[union-attr]
        assert started == [first, held]
        assert not emails.paused
    assert watched.errors == []


def test_hostile_payloads_names_and_errors_render_as_text(target: Target, watched: Watched) -> None:
    store = target.open()
    hostile = store.queue(XSS_IMG)
    scripted = hostile.enqueue(XSS_SCRIPT, key=XSS_SCRIPT)
    imaged = hostile.enqueue({"html": XSS_IMG})

    def refuse(job: durable.Job) -> None:
        raise durable.Fail(f"refused {XSS_IMG}")

    work(hostile, refuse, lambda: hostile.counts()["failed"] == 2)
    page = watched.page
    base = f"/queues/{segment(XSS_IMG)}"
    with serving(dashboard.app(store)) as url:
        for path in ["/", base, f"{base}/jobs/{scripted}", f"{base}/jobs/{imaged}"]:
            page.goto(url + path)
            expect(page.locator("h2, h1").first).to_be_visible()
            made = page.evaluate(
                """() => ({
                    images: document.querySelectorAll("img, [onerror]").length,
                    scripts: [...document.scripts].filter(s => s.text.includes("alert(")).length,
                    all_scripts: document.scripts.length,
                })"""
            )
            assert made == {"images": 0, "scripts": 0, "all_scripts": 1}, path
        expect(page.locator("#payload")).to_have_text(json.dumps({"html": XSS_IMG}, indent=2))
        expect(page.locator("#traceback")).to_have_text(f"refused {XSS_IMG}")
        expect(page.locator("h1")).to_contain_text(f"Job {imaged}")
        page.goto(f"{url}{base}/jobs/{scripted}")
        expect(page.locator("#payload")).to_have_text(json.dumps(XSS_SCRIPT))
        expect(page.locator(".fields code").first).to_have_text(XSS_SCRIPT)  # its key
        page.goto(f"{url}/")
        expect(queue_row(page, XSS_IMG).locator("th a")).to_have_text(XSS_IMG)
    assert watched.dialogs == []
    assert watched.errors == []


def test_a_form_sent_without_its_csrf_token_is_refused(
    sqlite_target: Target, watched: Watched
) -> None:
    store = sqlite_target.open()
    emails = store.queue("emails")
    [job_id] = fail_jobs(emails, ["x"])
    page = watched.page
    with serving(dashboard.app(store)) as url:
        page.goto(f"{url}/queues/emails/jobs/{job_id}")
        page.locator("input[name=csrf]").evaluate_all("inputs => inputs.forEach(i => i.remove())")
        with page.expect_response(lambda reply: reply.request.method == "POST") as posted:
            page.get_by_role("button", name="Retry").click()
        assert posted.value.status == 403
        expect(page.locator("h1")).to_have_text("403 Forbidden")
        expect(page.locator(".message")).to_contain_text("CSRF token")
        assert emails.get(job_id).state == "failed"  # type: ignore[union-attr]
        page.goto(f"{url}/queues/emails/jobs/{job_id}")  # the same button, as served, works
        page.get_by_role("button", name="Retry").click()
        expect(page.locator(".notice")).to_contain_text("went back to queued")
        assert emails.get(job_id).state == "queued"  # type: ignore[union-attr]


def test_read_only_shows_no_button_and_refuses_a_forged_post(
    sqlite_target: Target, watched: Watched
) -> None:
    store = sqlite_target.open()
    emails = store.queue("emails")
    [job_id] = fail_jobs(emails, ["x"])
    page = watched.page
    with serving(dashboard.app(store, read_only=True)) as url:
        for path in ["/", "/queues/emails", f"/queues/emails/jobs/{job_id}"]:
            page.goto(url + path)
            expect(page.locator(".pill", has_text="read-only")).to_be_visible()
            expect(page.locator("form[method=post]")).to_have_count(0)
            expect(page.get_by_role("button", name=ACTION_BUTTONS)).to_have_count(0)
        with page.expect_response(lambda reply: reply.request.method == "POST") as posted:
            page.evaluate(
                """(action) => {
                    const form = document.createElement("form");
                    form.method = "post";
                    form.action = action;
                    const token = document.createElement("input");
                    token.name = "csrf";
                    token.value = "forged";
                    form.append(token);
                    document.body.append(form);
                    form.submit();
                }""",
                f"/queues/emails/jobs/{job_id}/retry",
            )
        assert posted.value.status == 403
        expect(page.locator(".message")).to_contain_text("read-only")
    assert emails.get(job_id).state == "failed"  # type: ignore[union-attr]


def test_the_overview_s_counts_refresh_by_themselves(
    sqlite_target: Target, watched: Watched
) -> None:
    store = sqlite_target.open()
    emails = store.queue("emails")
    emails.enqueue("one", delay=3600)
    page = watched.page
    with serving(Dashboard(store, refresh=0.2)) as url:
        page.goto(f"{url}/")
        queued = queue_row(page, "emails").locator("td.count-queued")
        expect(queued).to_have_text("1")
        emails.enqueue_many(["two", "three"], delay=3600)
        expect(queued).to_have_text("3")  # no reload: the page's script fetched it again
        fail_jobs(emails, ["four"])
        expect(page.locator("#attention .alert-bad")).to_have_text("emails: 1 failed")
    assert watched.errors == []  # the script ran under the page's policy, with its nonce


# -- the screenshots of docs/dashboard.md ------------------------------------------------------


def seed(store: durable.Store) -> dict[str, int]:
    """A store as an operator would find it: queues of task calls, some failed, one paused,
    one behind; schedules, a migration under way, leases."""
    emails, reports, webhooks = (store.queue(n) for n in ("emails", "reports", "webhooks"))

    def call(task: str, *args: object, **kwargs: object) -> dict[str, Any]:
        return {"task": task, "args": list(args), "kwargs": kwargs}

    people = ["ada", "grace", "edsger", "barbara", "ken", "margaret", "alan", "donald"]
    receipts = [call("mail.send", f"{p}@example.com", subject="Your receipt") for p in people * 3]
    emails.enqueue_many(receipts, max_attempts=1)

    def send(job: durable.Job) -> dict[str, Any]:
        if job.payload["args"][0].startswith(("ken", "alan")):
            raise ConnectionRefusedError("[Errno 111] Connection refused: smtp.internal:25")
        return {"message_id": f"<{job.id}@mail.example.com>"}

    def ended() -> bool:
        counts = emails.counts()
        return counts["completed"] + counts["failed"] == len(receipts)

    work(emails, send, ended)
    emails.enqueue_many(
        [call("mail.send", f"{p}@example.com", subject="Weekly digest") for p in people[:5]]
    )
    reports.enqueue_many([call("reports.build", day=f"2025-05-0{d}") for d in range(1, 5)])
    reports.pause()
    late = datetime.now(timezone.utc) - timedelta(minutes=12)
    webhooks.enqueue_many(
        [call("hooks.deliver", f"https://partner.example/{n}") for n in range(7)], run_at=late
    )
    backend = backend_of(store)
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    for minutes in (60, 30, 0):
        tick = now - timedelta(minutes=minutes)
        backend.claim_tick("reports.nightly", tick, "web-1:4121", 60.0)
        backend.finish_run("reports.nightly", tick, "web-1:4121", None)
    tick = now - timedelta(minutes=5)
    backend.claim_tick("billing.invoices", tick, "web-2:977", 60.0)
    backend.finish_run(
        "billing.invoices", tick, "web-2:977", "psycopg.errors.DeadlockDetected: deadlock detected"
    )
    backend.register_migrations(["users.backfill_email_lower", "orders.split_address"])
    backend.store_migration_progress("users.backfill_email_lower", 0.64)
    backend.store_migration_progress("orders.split_address", 1.0)
    failed = emails.jobs(state="failed", limit=1)[0].id
    return {"failed": failed}


def save(path: Path, name: str) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 10_000 < path.stat().st_size < 600_000, path.stat().st_size
    if os.environ.get("ROUTINES_UPDATE_SCREENSHOTS") == "1":
        IMAGES.mkdir(exist_ok=True)
        shutil.copyfile(path, IMAGES / name)


def test_screenshots_and_a_phone_s_screen(
    browser: Browser, harness: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the store's URL in the pictures: sqlite:///jobs.db
    with durable.open_store("sqlite:///jobs.db") as store:
        take_screenshots(store, browser, harness, tmp_path)


def take_screenshots(store: durable.Store, browser: Browser, harness: Any, tmp_path: Path) -> None:
    seeded = seed(store)
    lease = store.lease("janitor", 60)
    assert lease.acquire()
    # The worker of the paused queue: it runs, and holds off.
    worker = durable.QueueWorker(store.queue("reports"), lambda job: None, name="reports-worker")
    cleanup = routines.PeriodicRoutine(lambda: None, interval=300, name="cache-cleanup")
    monitor = harness.monitor(worker, cleanup)
    assert poll(lambda: worker.status().paused)
    shots = [
        ("dashboard-overview.png", "/", 1280, 1000),
        ("dashboard-queue.png", "/queues/emails?state=failed", 1280, 640),
        ("dashboard-job.png", f"/queues/emails/jobs/{seeded['failed']}", 1280, 900),
        ("dashboard-phone.png", "/", 390, 844),
    ]
    try:
        with serving(Dashboard(store, monitor=monitor, refresh=0)) as url:
            for name, path, width, height in shots:
                context = browser.new_context(viewport={"width": width, "height": height})
                try:
                    page = context.new_page()
                    page.goto(url + path)
                    expect(page.locator("main")).to_be_visible()
                    # Nothing wider than the screen: the tables scroll inside their panels.
                    assert page.evaluate("document.documentElement.scrollWidth") <= width
                    # As bytes: with path= Playwright writes the file on threads of its own.
                    (tmp_path / name).write_bytes(page.screenshot())
                finally:
                    context.close()
                save(tmp_path / name, name)
    finally:
        harness.finish(monitor)  # before the store closes
        lease.release()
