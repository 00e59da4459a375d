"""What the dashboard's tests share: jobs worked by a real `QueueWorker`, the dashboard served
on a real socket by the server `routines dashboard` uses, and a real headless Chromium.

The browser is Debian's `chromium` (or ROUTINES_TEST_CHROMIUM), driven by Playwright for
Python; never a browser `playwright install` downloads. Without either the browser tests skip
saying how to run them; with ROUTINES_REQUIRE_BROWSER=1 (as in CI) they fail instead.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from routines import durable
from routines.dashboard._server import serve

from .support import poll
from helpers import WAIT

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication
    from playwright.sync_api import Browser

# Chromium's own connections (updates, safe browsing, sync) are refused by a closed network,
# and a sandbox needs privileges a container may not have.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOW_TO_RUN = (
    "to run the dashboard's browser tests install Chromium (Debian/Ubuntu: apt-get install "
    "chromium; elsewhere set ROUTINES_TEST_CHROMIUM to a Chromium or Chrome binary) and "
    "Playwright (pip install -e '.[test]'); never `playwright install`"
)
CSRF_INPUT = re.compile(r'name="csrf" value="([^"]+)"')


def failing(job: durable.Job) -> None:
    raise RuntimeError(f"the mail server said no to {job.payload!r}")


def work(
    queue: durable.Queue, handle: Callable[[durable.Job], object], until: Callable[[], bool]
) -> None:
    """Run a real `QueueWorker` of `queue` on `handle` until `until()` holds, then stop it."""
    worker = durable.QueueWorker(queue, handle, poll_interval=0.05)
    thread = threading.Thread(target=worker.start, name=f"routine:{worker.name}")
    thread.start()
    try:
        assert poll(until), f"the worker did not get there: {queue.counts()}"
    finally:
        worker.stop()
        thread.join(WAIT)
    assert not thread.is_alive()


def fail_jobs(queue: durable.Queue, payloads: list[Any]) -> list[int]:
    """Jobs of `payloads` that a worker made `failed` (one attempt each), with a traceback."""
    ids = queue.enqueue_many(payloads, max_attempts=1)
    work(queue, failing, lambda: all(_state(queue, job_id) == "failed" for job_id in ids))
    return ids


def _state(queue: durable.Queue, job_id: int) -> str | None:
    job = queue.get(job_id)
    return None if job is None else job.state


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = CSRF_INPUT.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


@contextmanager
def serving(application: WSGIApplication) -> Iterator[str]:
    """`application` on 127.0.0.1, on a free port, by `routines dashboard`'s server; its URL."""
    server = serve(application, "127.0.0.1", 0)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="dashboard-server"
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT)
    assert not thread.is_alive()


def _find_browser() -> tuple[str | None, str]:
    """The path of a Chromium binary Playwright can drive, or None and why not."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return None, f"Playwright is not installed; {HOW_TO_RUN}"
    given = os.environ.get("ROUTINES_TEST_CHROMIUM")
    path = given or shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None or not Path(path).exists():
        return None, f"no Chromium found ({given or 'chromium not on PATH'}); {HOW_TO_RUN}"
    return path, ""


def chromium_or_skip() -> str:
    """The Chromium to drive; skips the test without one (fails it in CI)."""
    path, reason = _find_browser()
    if path is None:
        if os.environ.get("ROUTINES_REQUIRE_BROWSER") == "1":
            pytest.fail(f"ROUTINES_REQUIRE_BROWSER=1, but {reason}", pytrace=False)
        pytest.skip(reason)
    return path


@contextmanager
def launched_chromium() -> Iterator[Browser]:
    """A headless Chromium under Playwright, closed afterwards."""
    path = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
