"""The dashboard mounted in a host app under a prefix, by the recipes of docs/dashboard.md run as
written: Flask's DispatcherMiddleware, a Flask view behind Flask-Login's `login_required`, and
a Django view behind `staff_member_required` (in a subprocess: Django's settings are global).
Links, redirects and the CSRF cookie stay under the prefix; the host's login comes first."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import flask
import pytest
from flask_login import LoginManager, UserMixin, login_user

from routines import durable

from .conftest import Target
from .dashboards import csrf_of, fail_jobs
from .support import PROGRAMS
from helpers import WAIT

DOCS = Path(__file__).resolve().parents[2] / "docs" / "dashboard.md"


def recipe(name: str) -> str:
    """The code of the recipe `name` in docs/dashboard.md, as written there."""
    found = re.search(rf"<!-- recipe: {name} -->\n```python\n(.*?)```", DOCS.read_text(), re.S)
    assert found is not None, f"docs/dashboard.md has no recipe {name!r}"
    return found.group(1)


def host_app(name: str, **names: Any) -> flask.Flask:
    """A Flask app of its own (a home page), with the recipe `name` run on it."""
    app = flask.Flask("host")
    app.secret_key = "not a secret: a test"
    app.add_url_rule("/", "home", lambda: "the host's home page")
    exec(recipe(name), {"app": app, **names})
    return app


def addresses(html: str) -> list[str]:
    return re.findall(r'(?:href|action)="([^"]*)"', html)


@pytest.fixture
def store(sqlite_target: Target) -> durable.Store:
    return sqlite_target.open()


def test_the_flask_recipe_mounts_the_dashboard_under_its_prefix(store: durable.Store) -> None:
    emails = store.queue("emails")
    [job_id] = fail_jobs(emails, ["x"])
    store.queue("reports/daily").enqueue("y")
    client = host_app("flask", store=store).test_client()
    assert client.get("/").text == "the host's home page"
    overview = client.get("/dashboard/")
    assert overview.status_code == 200
    assert all(address.startswith("/dashboard/") for address in addresses(overview.text))
    assert "/dashboard/queues/reports%252Fdaily" in overview.text
    assert "; Path=/dashboard;" in overview.headers["Set-Cookie"]
    css = re.search(r'href="(/dashboard/static/dashboard\.css\?v=\w+)"', overview.text)
    assert css is not None
    assert client.get(css.group(1)).headers["Content-Type"] == "text/css; charset=utf-8"
    assert "reports/daily" in client.get("/dashboard/queues/reports%252Fdaily").text
    token = csrf_of(overview.text)
    retry = f"/dashboard/queues/emails/jobs/{job_id}/retry"
    assert client.post(retry, data={}).status_code == 403
    answer = client.post(retry, data={"csrf": token})
    assert answer.status_code == 303
    assert answer.headers["Location"] == f"/dashboard/queues/emails/jobs/{job_id}?done=retried"
    assert emails.get(job_id).state == "queued"  # type: ignore[union-attr]


class Operator(UserMixin):
    def __init__(self, user_id: str) -> None:
        self.id = user_id


def logged_in_app(store: durable.Store) -> flask.Flask:
    app = host_app("flask-login", store=store, monitor=None)
    logins = LoginManager(app)
    logins.user_loader(lambda user_id: Operator(user_id) if user_id == "ada" else None)

    def log_in() -> str:
        login_user(Operator("ada"))
        return "logged in"

    app.add_url_rule("/login", "login", log_in, methods=["POST"])
    return app


def test_the_flask_login_recipe_lets_in_only_a_logged_in_user(store: durable.Store) -> None:
    emails = store.queue("emails")
    emails.enqueue("x")
    client = logged_in_app(store).test_client()
    assert client.get("/dashboard/").status_code == 401  # Flask-Login's answer: no login view
    assert client.post("/dashboard/queues/emails/pause", data={"csrf": "x" * 43}).status_code == 401
    assert not emails.paused
    assert client.post("/login").text == "logged in"
    overview = client.get("/dashboard/")
    assert overview.status_code == 200
    assert all(address.startswith("/dashboard/") for address in addresses(overview.text))
    assert client.get("/dashboard").status_code == 308  # Flask adds the slash
    token = csrf_of(overview.text)
    assert client.post("/dashboard/queues/emails/pause", data={}).status_code == 403
    answer = client.post("/dashboard/queues/emails/pause", data={"csrf": token, "back": "overview"})
    assert (answer.status_code, answer.headers["Location"]) == (303, "/dashboard/?done=paused")
    assert emails.paused
    assert "Paused: no worker" in client.get(answer.headers["Location"]).text


def test_the_django_recipe_lets_in_only_staff(store: durable.Store, sqlite_target: Target) -> None:
    emails = store.queue("emails")
    emails.enqueue("x")
    process = subprocess.run(
        [
            sys.executable,
            str(PROGRAMS / "dashboard_django.py"),
            sqlite_target.url,
            sqlite_target.schema,
        ],
        input=recipe("django"),
        capture_output=True,
        text=True,
        timeout=WAIT * 4,
    )
    assert process.returncode == 0, process.stderr
    report = json.loads(process.stdout)
    login = "/admin/login/?next=/dashboard/"
    assert report["nobody"] == [302, login]
    assert report["not staff"] == [302, login]
    assert report["staff"] == 200
    assert report["links"]
    assert all(link.startswith("/dashboard/") for link in report["links"]), report["links"]
    [cookie] = report["set_cookie"]
    assert "Path=/dashboard" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "frame-ancestors 'none'" in report["headers"]["Content-Security-Policy"]
    assert report["headers"]["X-Content-Type-Options"] == "nosniff"
    assert report["post without the token"] == 403  # the dashboard's check, not Django's
    assert report["post"] == [303, "/dashboard/queues/emails?done=paused"]
    assert report["after"] == [200, True]
    assert report["css"] == [200, "text/css; charset=utf-8"]
    assert emails.paused
