"""`routines.dashboard.app()` as WSGI, without a browser (spec/OPERATIONS.md section 7): its
pages over a real store, its actions, and what keeps them safe: the headers of every response,
the CSRF check of every POST, read-only mode, the token of `routines dashboard`, and escaping.
In a real browser: test_dashboard_browser.py; mounted in Flask and Django:
test_dashboard_mounting.py."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from html import unescape
from typing import Any

import pytest
from werkzeug.test import Client, TestResponse

import routines
from routines import dashboard, durable
from routines.dashboard import _security
from routines.dashboard._app import Dashboard
from routines.dashboard._http import segment

from .conftest import Target
from .dashboards import csrf_of, fail_jobs, work
from .support import backend_of, poll

XSS_SCRIPT = "<script>alert(1)</script>"
XSS_IMG = "<img src=x onerror=alert(2)>"


@pytest.fixture
def store(sqlite_target: Target) -> durable.Store:
    """These tests are of the dashboard, not of a backend: SQLite, except where said."""
    return sqlite_target.open()


@pytest.fixture
def emails(store: durable.Store) -> durable.Queue:
    return store.queue("emails")


@pytest.fixture
def client(store: durable.Store) -> Client:
    return Client(dashboard.app(store))


def text(response: TestResponse) -> str:
    return response.get_data(as_text=True)


def post(client: Client, path: str, token: str | None, **fields: str) -> TestResponse:
    """POST a form as the dashboard's page would (the token from the page's cookie)."""
    data = dict(fields)
    if token is not None:
        data["csrf"] = token
    return client.post(path, data=data, headers={"Sec-Fetch-Site": "same-origin"})


def page_token(client: Client, path: str = "/") -> str:
    """Load a page as a browser would; the CSRF token of its forms (and of its cookie)."""
    response = client.get(path)
    assert response.status_code == 200, text(response)
    token = csrf_of(text(response))
    cookie = client.get_cookie(_security.CSRF_COOKIE)
    assert cookie is not None
    assert cookie.value == token
    return token


# -- what every response carries ----------------------------------------------------------------


def csp_of(response: TestResponse) -> dict[str, str]:
    policy = response.headers["Content-Security-Policy"]
    return dict(part.strip().split(" ", 1) for part in policy.split(";"))


def test_every_response_sends_the_security_headers(client: Client, emails: durable.Queue) -> None:
    [job_id] = fail_jobs(emails, ["x"])
    responses = [
        client.get("/"),
        client.get("/queues/emails"),
        client.get(f"/queues/emails/jobs/{job_id}"),
        client.get("/schedules/nightly"),
        client.get("/static/dashboard.css"),
        client.get("/nowhere"),  # 404
        client.get("/queues/emails?state=bogus"),  # 400
        client.post("/queues/emails/pause"),  # 403: no CSRF token
        client.get("/queues/emails/pause"),  # 405
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 200, 404, 400, 403, 405]
    for response in responses:
        csp = csp_of(response)
        assert csp["default-src"] == "'none'"
        assert csp["frame-ancestors"] == "'none'"
        assert csp["style-src"] == "'self'"
        assert re.fullmatch(r"'nonce-[A-Za-z0-9_-]{20,}'", csp["script-src"])
        assert "unsafe-inline" not in response.headers["Content-Security-Policy"]
        assert "http" not in response.headers["Content-Security-Policy"]  # no other host
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
    assert responses[4].headers["Content-Type"] == "text/css; charset=utf-8"
    assert responses[0].headers["Cache-Control"] == "no-store"  # job data stays off disks


def test_each_page_s_script_carries_that_response_s_own_nonce(client: Client) -> None:
    nonces = []
    for _ in range(2):
        response = client.get("/")
        nonce = csp_of(response)["script-src"].removeprefix("'nonce-").removesuffix("'")
        scripts = re.findall(r"<script([^>]*)>", text(response))
        assert scripts == [f' nonce="{nonce}"'], "one script, with the nonce of its response"
        nonces.append(nonce)
    assert nonces[0] != nonces[1]


def test_a_page_loads_nothing_from_another_host(client: Client, emails: durable.Queue) -> None:
    [job_id] = fail_jobs(emails, ["x"])
    for path in ["/", "/queues/emails", f"/queues/emails/jobs/{job_id}"]:
        html = text(client.get(path))
        addresses = re.findall(r'(?:src|href|action)="([^"]*)"', html)
        assert addresses, path
        assert all(
            address.startswith("/") and not address.startswith("//") for address in addresses
        ), addresses
        assert "@import" not in text(client.get("/static/dashboard.css"))


# -- CSRF ---------------------------------------------------------------------------------------


def test_a_post_without_a_valid_csrf_token_is_refused_and_changes_nothing(
    client: Client, emails: durable.Queue
) -> None:
    [job_id] = fail_jobs(emails, ["x"])
    retry = f"/queues/emails/jobs/{job_id}/retry"
    token = page_token(client, f"/queues/emails/jobs/{job_id}")
    refused = [
        post(client, retry, None),  # the cookie, no field
        post(client, retry, "x" * 43),  # a field that is not the cookie's
        post(client, retry, token[:-1]),
        # the token, but not in a form as a page sends it (text/plain: a cross-site form can)
        client.post(retry, data=f"csrf={token}", content_type="text/plain"),
    ]
    client.delete_cookie(_security.CSRF_COOKIE)
    refused.append(post(client, retry, token))  # the field, but no cookie
    for response in refused:
        assert response.status_code == 403
        assert "CSRF token" in text(response)
    assert emails.get(job_id).state == "failed"  # type: ignore[union-attr]


def test_a_post_with_the_page_s_token_is_served(client: Client, emails: durable.Queue) -> None:
    [job_id] = fail_jobs(emails, ["x"])
    token = page_token(client, f"/queues/emails/jobs/{job_id}")
    response = post(client, f"/queues/emails/jobs/{job_id}/retry", token)
    assert response.status_code == 303
    assert response.headers["Location"] == f"/queues/emails/jobs/{job_id}?done=retried"
    assert emails.get(job_id).state == "queued"  # type: ignore[union-attr]


def test_a_post_the_browser_says_came_from_another_site_is_refused_even_with_the_token(
    client: Client, emails: durable.Queue
) -> None:
    emails.enqueue("x")
    token = page_token(client)
    for site in ["cross-site", "same-site"]:  # same-site: a sibling subdomain
        response = client.post(
            "/queues/emails/pause", data={"csrf": token}, headers={"Sec-Fetch-Site": site}
        )
        assert response.status_code == 403
        assert "another site" in text(response)
    assert not emails.paused
    # A browser that sends no Sec-Fetch-Site (older ones) is checked by the token alone.
    assert client.post("/queues/emails/pause", data={"csrf": token}).status_code == 303
    assert emails.paused


def test_the_csrf_cookie_is_http_only_strict_and_kept_to_the_mount_point(
    store: durable.Store,
) -> None:
    response = Client(dashboard.app(store)).get("/", environ_overrides={"SCRIPT_NAME": "/ops/jobs"})
    [cookie] = response.headers.getlist("Set-Cookie")
    assert cookie.startswith(f"{_security.CSRF_COOKIE}=")
    assert "; Path=/ops/jobs;" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Secure" not in cookie
    secure = Client(dashboard.app(store)).get("/", base_url="https://localhost/")
    assert "Secure" in secure.headers["Set-Cookie"]
    # once set, the browser's cookie is used: no new one
    client = Client(dashboard.app(store))
    client.get("/")
    assert client.get("/").headers.getlist("Set-Cookie") == []


# -- read-only ----------------------------------------------------------------------------------


def test_read_only_shows_no_form_and_refuses_every_action(
    store: durable.Store, emails: durable.Queue
) -> None:
    [failed] = fail_jobs(emails, ["x"])
    waiting = emails.enqueue("y", delay=3600)
    client = Client(dashboard.app(store, read_only=True))
    for path in [
        "/",
        "/queues/emails",
        f"/queues/emails/jobs/{failed}",
        f"/queues/emails/jobs/{waiting}",
    ]:
        response = client.get(path)
        assert response.status_code == 200
        html = text(response)
        assert "<form" not in html.replace('<form method="get"', "")
        assert "<button" not in html.replace(
            '<button type="submit" class="button quiet">Filter', ""
        )
        assert "csrf" not in html
        assert "read-only" in html
        assert response.headers.getlist("Set-Cookie") == []
    actions = [
        f"/queues/emails/jobs/{failed}/retry",
        f"/queues/emails/jobs/{waiting}/cancel",
        f"/queues/emails/jobs/{waiting}/run-now",
        "/queues/emails/retry-all",
        "/queues/emails/pause",
        "/queues/emails/resume",
    ]
    client.set_cookie(_security.CSRF_COOKIE, "t" * 43)
    for path in actions:
        response = post(client, path, "t" * 43)  # even a token that would match
        assert response.status_code == 403, path
        assert "read-only" in text(response)
    assert (emails.get(failed).state, emails.get(waiting).state) == ("failed", "queued")  # type: ignore[union-attr]
    assert not emails.paused


# -- the token of `routines dashboard` ---------------------------------------------------------


TOKEN = "s3cret-token-of-at-least-16"


def test_with_a_token_a_request_without_it_is_refused(store: durable.Store) -> None:
    client = Client(Dashboard(store, token=TOKEN))
    for path in ["/", "/queues/emails", "/static/dashboard.css", "/nowhere"]:
        response = client.get(path)
        assert response.status_code == 403, path
        assert "needs its token" in text(response)
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert store.url not in text(response)  # nothing of the store, to a stranger
        assert response.headers.getlist("Set-Cookie") == []
    assert client.get("/?token=wrong-token-of-some-length").status_code == 403
    client.set_cookie(_security.TOKEN_COOKIE, "0" * 64)
    assert client.get("/").status_code == 403


def test_a_right_token_once_sets_a_cookie_and_leaves_the_address(store: durable.Store) -> None:
    client = Client(Dashboard(store, token=TOKEN))
    response = client.get(f"/queues/emails?state=failed&token={TOKEN}")
    assert response.status_code == 303
    assert response.headers["Location"] == "/queues/emails?state=failed"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{_security.TOKEN_COOKIE}=")
    assert TOKEN not in cookie  # its digest
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/;" in cookie
    assert client.get("/queues/emails?state=failed").status_code == 200
    assert client.get("/static/dashboard.css").status_code == 200


def test_the_token_is_compared_in_constant_time(
    store: durable.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = _security.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(_security.hmac, "compare_digest", spy)
    client = Client(Dashboard(store, token=TOKEN))
    assert client.get(f"/?token={TOKEN}").status_code == 303
    assert client.get("/").status_code == 200
    assert len(compared) >= 2


# -- escaping -----------------------------------------------------------------------------------


def test_every_value_a_job_carries_is_escaped(store: durable.Store) -> None:
    hostile = store.queue(XSS_IMG)
    keyed = hostile.enqueue(XSS_SCRIPT, key=XSS_SCRIPT)
    nested = hostile.enqueue({"to": XSS_IMG, XSS_SCRIPT: [XSS_IMG]})

    def refuse(job: durable.Job) -> None:
        raise durable.Fail(XSS_IMG)

    work(hostile, refuse, lambda: hostile.counts()["failed"] == 2)
    client = Client(dashboard.app(store))
    base = f"/queues/{segment(XSS_IMG)}"
    pages = {
        path: text(client.get(path))
        for path in ["/", base, f"{base}/jobs/{keyed}", f"{base}/jobs/{nested}"]
    }
    for path, html in pages.items():
        assert "<img" not in html, path
        assert "<script>alert" not in html, path
        assert "&lt;img src=x onerror=alert(2)&gt;" in html, path  # the queue's name, at least
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[f"{base}/jobs/{keyed}"]  # payload, key
    assert "&#34;&lt;script&gt;alert(1)&lt;/script&gt;&#34;: [" in pages[f"{base}/jobs/{nested}"]


# -- the pages ----------------------------------------------------------------------------------


def test_the_overview_puts_what_needs_attention_first(store: durable.Store) -> None:
    fail_jobs(store.queue("emails"), ["a", "b"])
    store.queue("emails").enqueue("fine")
    store.queue("reports").pause()
    store.queue("reports").enqueue("held")
    late = datetime.now(timezone.utc) - timedelta(minutes=5)
    store.queue("webhooks").enqueue("late", run_at=late)
    store.queue("quiet").enqueue("due now")
    html = text(Client(dashboard.app(store)).get("/"))
    attention = html.split('id="attention"')[1].split("</section>")[0]
    alerts = re.findall(r'<li class="alert alert-(\w+)"><a href="([^"]+)">([^<]+)</a>', attention)
    assert alerts == [
        ("bad", "/queues/emails?state=failed", "emails: 2 failed"),
        ("warn", "/queues/reports", "reports: paused"),
        ("warn", "/queues/webhooks", "webhooks: backlogged"),
    ]
    queues = html.split('id="queues"')[1].split("</section>")[0]
    assert re.search(
        r'<tr class="has-failed\s*">\s*<th scope="row">\s*<a href="/queues/emails">', queues
    )
    assert re.search(r'<tr class="\s*is-paused\s*">', queues)
    assert "backlogged</span>" in queues
    assert '<td class="num count-failed"><a href="/queues/emails?state=failed">2</a></td>' in queues
    assert (
        '<td class="num count-failed zero"><a href="/queues/quiet?state=failed">0</a></td>'
        in queues
    )


def test_the_overview_says_all_clear_when_nothing_is_wrong(store: durable.Store) -> None:
    store.queue("emails").enqueue("due now")
    html = text(Client(dashboard.app(store)).get("/"))
    assert "All clear" in html
    assert "Needs attention" not in html


def test_the_overview_shows_schedules_migrations_leases_and_the_monitor_s_routines(
    store: durable.Store, harness: Any
) -> None:
    backend = backend_of(store)
    tick = datetime(2025, 5, 1, 2, 0, tzinfo=timezone.utc)
    assert backend.claim_tick("nightly-report", tick, "host-a:41", 60.0) == "claimed"
    backend.finish_run("nightly-report", tick, "host-a:41", "OSError: the disk is full")
    backend.register_migrations(["add-email-index"])
    backend.store_migration_progress("add-email-index", 0.42)
    lease = store.lease("janitor", 30)
    assert lease.acquire()
    idle = routines.PeriodicRoutine(lambda: None, interval=3600, name="cleanup")
    monitor = harness.monitor(idle)
    html = text(Client(dashboard.app(store, monitor=monitor)).get("/"))
    assert '<a href="/schedules/nightly-report">nightly-report</a>' in html
    assert '<span class="state state-failed">failed</span>' in html
    assert "OSError: the disk is full" in html
    assert '<progress value="0.42" max="1">42%</progress>' in html
    assert re.search(r"<th scope=\"row\">janitor</th>\s*<td class=\"worker\">[^<]+</td>", html)
    routines_section = html.split('id="routines"')[1].split("</section>")[0]
    assert "cleanup" in routines_section
    assert "healthy" in routines_section
    assert "schedule nightly-report: last run failed" in html
    lease.release()


def test_the_overview_flags_a_routine_that_crashes(store: durable.Store, harness: Any) -> None:
    def crash() -> None:
        raise RuntimeError("the importer crashed")

    monitor = harness.monitor(routines.CallbackRoutine(crash, name="importer"))
    assert poll(lambda: monitor.status()[0].state == "restarting")  # the default policy
    html = text(Client(dashboard.app(store, monitor=monitor)).get("/"))
    attention = html.split('id="attention"')[1].split("</section>")[0]
    assert '<a href="#routines">routine importer: restarting</a>' in attention
    assert "RuntimeError: the importer crashed" in html.split('id="routines"')[1]


def test_the_overview_and_a_queue_s_page_show_its_limits(
    store: durable.Store, harness: Any
) -> None:
    payments = store.queue("payments")
    payments.set_limits(max_running=5, group_running=1, rate=(1000, 1.5))
    store.queue("emails").enqueue("no limits")
    worker = durable.QueueWorker(payments, lambda job: None, poll_interval=0.05)
    monitor = harness.monitor(worker)
    assert poll(lambda: worker.status().limited)
    client = Client(dashboard.app(store, monitor=monitor))
    html = text(client.get("/"))
    queues = html.split('id="queues"')[1].split("</section>")[0]
    rows = dict(
        re.findall(r'<a href="/queues/(\w+)">.*?<td class="limits">(.*?)</td>', queues, re.S)
    )
    assert rows["emails"] == '<span class="none">\N{EN DASH}</span>'
    assert re.sub(r"<[^>]+>", "", rows["payments"]) == "5 at once, 1 per group, 1,000 per 1.5s"
    assert '<span class="limit" title="at most 1,000 starts in any 1.5s">' in rows["payments"]
    assert "Needs attention" not in html  # limits are how the queue should run, not a fault
    routines_section = html.split('id="routines"')[1].split("</section>")[0]
    assert re.search(
        r"payments <span class=\"pill\" title=\"[^\"]+\">limited</span>", routines_section
    )
    page = text(client.get("/queues/payments"))
    limits = re.search(r'<p class="meta" id="limits">(.*?)</p>', page, re.S)
    assert limits is not None
    assert re.sub(r"<[^>]+>", "", limits.group(1)) == (
        "Limits, fleet-wide: 5 at once, 1 per group, 1,000 per 1.5s; a job they hold back stays "
        "queued until they allow it."
    )
    page = text(client.get("/queues/emails"))
    assert '<p class="meta" id="limits">Limits, fleet-wide: none.</p>' in page


def test_a_queue_s_limits_are_escaped_where_its_name_is(store: durable.Store) -> None:
    hostile = store.queue(XSS_SCRIPT)
    hostile.set_limits(max_running=2)
    client = Client(dashboard.app(store))
    for path in ["/", f"/queues/{segment(XSS_SCRIPT)}"]:
        html = text(client.get(path))
        assert "<script>alert" not in html, path
        assert "2 at once" in html, path


def test_a_queue_s_jobs_are_listed_newest_first_in_keyset_pages(
    store: durable.Store, emails: durable.Queue
) -> None:
    ids = emails.enqueue_many(range(120))
    client = Client(dashboard.app(store))
    seen: list[int] = []
    path: str | None = "/queues/emails?state=queued"
    pages = 0
    while path is not None:
        html = text(client.get(path))
        listed = [int(n) for n in re.findall(r'<a href="/queues/emails/jobs/(\d+)">', html)]
        assert listed == sorted(listed, reverse=True)
        seen += listed
        pages += 1
        older = re.search(r'rel="next" href="([^"]+)"', html)
        path = None if older is None else older.group(1).replace("&amp;", "&")
    assert pages == 3
    assert seen == sorted(ids, reverse=True)
    assert (
        text(client.get(f"/queues/emails?before={ids[20]}")).count('<a href="/queues/emails/jobs/')
        == 20
    )


def test_a_queue_s_jobs_by_state_and_by_task(store: durable.Store) -> None:
    tasks = durable.Tasks(store, queue="calls")

    @tasks.task(name="mail.send")
    def send(to: str) -> None: ...

    @tasks.task(name="mail.bounce")
    def bounce(to: str) -> None: ...

    sent = send.enqueue("ada@example.com")
    bounce.enqueue("bob@example.com")
    client = Client(dashboard.app(store))
    html = text(client.get("/queues/calls?task=mail.send"))
    assert re.findall(r'<a href="/queues/calls/jobs/(\d+)">', html) == [str(sent)]
    assert "<code>mail.send</code>" in html
    html = text(client.get("/queues/calls?state=failed"))
    assert "No failed job." in html
    assert 'class="tab tab-queued"' in html
    assert "tab-failed current zero" in html


def test_names_with_slashes_and_any_letters_get_their_own_pages(store: durable.Store) -> None:
    name = "reports/daily 100% é"
    queue = store.queue(name)
    job_id = queue.enqueue("x")
    client = Client(dashboard.app(store))
    overview = text(client.get("/"))
    link = re.search(r'<a href="(/queues/[^"?]+)">reports/daily 100% é</a>', overview)
    assert link is not None
    html = text(client.get(link.group(1)))
    assert f'<a href="{link.group(1)}/jobs/{job_id}">{job_id}</a>' in html
    assert client.get(f"{link.group(1)}/jobs/{job_id}").status_code == 200
    # a queue named like a page of another is its own
    store.queue("emails/jobs/1").enqueue("y")
    assert "emails/jobs/1" in text(client.get("/queues/emails%252Fjobs%252F1"))


def pre_text(html: str, element_id: str) -> str:
    """The text of the page's `<pre id=...>`, as a browser shows it."""
    found = re.search(rf'<pre class="[^"]*" id="{element_id}">(.*?)</pre>', html, re.S)
    assert found is not None, f"no <pre id={element_id!r}>"
    return unescape(found.group(1))


def fields(html: str) -> dict[str, str]:
    """A job page's fields, each as the text a browser shows."""
    pairs = re.findall(r"<dt>(.*?)</dt><dd[^>]*>(.*?)</dd>", html, re.S)
    return {name: unescape(re.sub(r"<[^>]+>", "", value)) for name, value in pairs}


def test_one_job_shows_every_field_its_payload_result_and_traceback(
    store: durable.Store, emails: durable.Queue
) -> None:
    payload = {"to": "ada@example.com", "tries": [1, 2]}
    [failed] = fail_jobs(emails, [payload])
    done = emails.enqueue("ok", key="welcome:ada", priority=7, group="customer:42")
    work(emails, lambda job: {"sent": True, "to": "é"}, lambda: emails.counts()["completed"] == 1)
    client = Client(dashboard.app(store))
    html = text(client.get(f"/queues/emails/jobs/{failed}"))
    traceback = pre_text(html, "traceback")
    assert traceback.startswith("Traceback (most recent call last):\n  File ")
    assert traceback.endswith(f"RuntimeError: the mail server said no to {payload!r}\n")
    assert pre_text(html, "payload") == json.dumps(payload, indent=2)
    shown = fields(html)
    assert (shown["attempts"], shown["resets"], shown["priority"]) == ("1 of 1", "0", "0")
    assert (shown["snoozes"], shown["group"]) == ("0", "\N{EN DASH}")
    assert shown["queue"] == "emails"
    assert re.fullmatch(r"\S+:\d+:\w+(\+live)?", shown["worker"])  # host:pid:id of the worker
    assert re.fullmatch(r"(\d+s ago|just now)", shown["finished"].split(" (")[0])
    assert "due" not in shown  # a failed job is due never
    assert re.search(r'<time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ" title="', html)
    assert ">Retry</button>" in html
    assert ">Cancel</button>" not in html
    html = text(client.get(f"/queues/emails/jobs/{done}"))
    assert json.loads(pre_text(html, "result")) == {"sent": True, "to": "é"}
    assert (fields(html)["key"], fields(html)["priority"]) == ("welcome:ada", "7")
    assert (fields(html)["group"], fields(html)["snoozes"]) == ("customer:42", "0")
    assert "<button" not in html  # a completed job: nothing to do
    assert client.get(f"/queues/other/jobs/{done}").status_code == 404  # not that queue's


def test_a_schedule_s_runs_newest_tick_first(store: durable.Store) -> None:
    backend = backend_of(store)
    ticks = [datetime(2025, 5, 1, hour, tzinfo=timezone.utc) for hour in range(3)]
    for index, tick in enumerate(ticks):
        assert backend.claim_tick("hourly", tick, "host-a:1", 60.0) == "claimed"
        backend.finish_run(
            "hourly", tick, "host-a:1", "ValueError: bad row" if index == 1 else None
        )
    html = text(Client(dashboard.app(store)).get("/schedules/hourly"))
    assert re.findall(r'datetime="(2025-05-01T0\d:00:00Z)"', html) == [
        "2025-05-01T02:00:00Z",
        "2025-05-01T01:00:00Z",
        "2025-05-01T00:00:00Z",
    ]
    assert "3 runs kept (the last 1,000), 1 of them failed." in html
    assert "<summary>ValueError: bad row</summary>" in html
    assert "This schedule has no run." in text(Client(dashboard.app(store)).get("/schedules/never"))


def test_each_action_does_what_it_says_and_comes_back_with_a_notice(
    client: Client, emails: durable.Queue
) -> None:
    failed = fail_jobs(emails, ["a", "b", "c"])
    waiting = emails.enqueue("later", delay=3600)
    token = page_token(client)
    cases = [
        (f"/queues/emails/jobs/{failed[0]}/retry", f"/queues/emails/jobs/{failed[0]}?done=retried"),
        (
            f"/queues/emails/jobs/{failed[0]}/retry",
            f"/queues/emails/jobs/{failed[0]}?done=not-retried",
        ),
        (f"/queues/emails/jobs/{waiting}/run-now", f"/queues/emails/jobs/{waiting}?done=run-now"),
        (
            f"/queues/emails/jobs/{failed[1]}/run-now",
            f"/queues/emails/jobs/{failed[1]}?done=not-waiting",
        ),
        (f"/queues/emails/jobs/{waiting}/cancel", f"/queues/emails/jobs/{waiting}?done=canceled"),
        (
            f"/queues/emails/jobs/{waiting}/cancel",
            f"/queues/emails/jobs/{waiting}?done=not-canceled",
        ),
        ("/queues/emails/retry-all", "/queues/emails?done=retried-all&count=2"),
        ("/queues/emails/pause", "/queues/emails?done=paused"),
    ]
    for path, location in cases:
        response = post(client, path, token)
        assert (response.status_code, response.headers["Location"]) == (303, location)
    assert emails.paused
    assert (emails.counts()["queued"], emails.counts()["canceled"]) == (3, 1)
    assert emails.get(waiting).run_after < datetime.now(timezone.utc)  # type: ignore[union-attr]
    response = post(client, "/queues/emails/resume", token, back="overview")
    assert response.headers["Location"] == "/?done=resumed"
    assert not emails.paused
    assert "2 failed jobs went back to queued." in text(
        client.get("/queues/emails?done=retried-all&count=2")
    )
    assert "Nothing done: the job had already ended." in text(
        client.get(f"/queues/emails/jobs/{waiting}?done=not-canceled")
    )
    assert "notice" not in text(client.get("/?done=%3Cb%3E"))  # only the dashboard's own texts


def test_bad_addresses_and_values_are_answered_with_a_clear_status(
    client: Client, emails: durable.Queue
) -> None:
    emails.enqueue("x")
    cases = {
        "/queues/emails?state=bogus": (400, "state must be one of queued, processing"),
        "/queues/emails?before=abc": (400, "before must be a job id"),
        "/queues/emails?before=0": (400, "before must be a job id"),
        "/queues/emails/jobs/abc": (400, "the job id must be a job id"),
        "/queues/emails/jobs/999": (404, "queue &#39;emails&#39; has no job 999"),
        f"/queues/{'q' * 201}": (404, "name must be at most 200 characters"),
        "/schedules/nightly?limit=0": (400, "limit must be a whole number from 1 to 1000"),
        "/nowhere": (404, "no such page"),
        "/queues/emails/jobs/1/explode": (404, "no such page"),
        "/static/other.css": (404, "no such page"),
    }
    for path, (status, message) in cases.items():
        response = client.get(path)
        assert (response.status_code, path) == (status, path)
        assert message in text(response), path
    response = client.put("/")
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"
    assert "takes GET or HEAD, not PUT" in text(response)
    assert client.get("/queues/emails/pause").headers["Allow"] == "POST"
    assert client.head("/").get_data() == b""


def test_a_store_that_does_not_answer_is_a_503_page(postgres_target: Target) -> None:
    gone = durable.open_store("postgresql://postgres@127.0.0.1:1/test", timeout=0.5)
    try:
        response = Client(dashboard.app(gone)).get("/")
    finally:
        gone.close()
    assert response.status_code == 503
    assert "the store did not answer" in text(response)
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_app_checks_its_arguments(store: durable.Store) -> None:
    with pytest.raises(TypeError, match="store must be a durable store"):
        dashboard.app("sqlite:///jobs.db")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"monitor must be a routines\.Monitor or None"):
        dashboard.app(store, monitor=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="read_only must be a bool"):
        dashboard.app(store, read_only="yes")  # type: ignore[arg-type]
    assert callable(dashboard.app(store, read_only=True))


def test_the_pages_show_every_job_state() -> None:
    from typing import get_args

    from routines.dashboard._pages import SHOWN_STATES

    assert sorted(SHOWN_STATES) == sorted(get_args(durable.JobState))
