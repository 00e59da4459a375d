"""The Django recipe of docs/dashboard.md under real Django: the dashboard behind
`staff_member_required`, at /dashboard/.

usage: dashboard_django.py URL SCHEMA < recipe.py

Configures Django (auth, sessions and admin on an in-memory database), runs the recipe read
from stdin as the URLconf with `store` opened at URL, then drives it with Django's test client
(enforcing Django's CSRF checks): as nobody, as a user who is not staff, as staff. Prints one
JSON object of what each request got; the test reads the store itself.
"""

from __future__ import annotations

import json
import re
import sys
import types

import django
from django.conf import settings

from routines import durable

FORM = "application/x-www-form-urlencoded"  # how a browser sends the dashboard's forms


def main() -> None:
    url, schema = sys.argv[1:3]
    recipe = sys.stdin.read()
    settings.configure(
        SECRET_KEY="not a secret: a test",
        ALLOWED_HOSTS=["testserver"],
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
            "django.middleware.clickjacking.XFrameOptionsMiddleware",
        ],
        ROOT_URLCONF="dashboard_urls",
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        USE_TZ=True,
    )
    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0)
    report: dict[str, object] = {}
    with durable.open_store(url, schema=schema) as store:
        urls = types.ModuleType("dashboard_urls")
        urls.__dict__["store"] = store
        exec(recipe, urls.__dict__)
        sys.modules["dashboard_urls"] = urls

        client = Client(enforce_csrf_checks=True)
        reply = client.get("/dashboard/")
        report["nobody"] = [reply.status_code, reply.get("Location")]
        client.force_login(User.objects.create_user("ada", password="-", is_staff=False))
        reply = client.get("/dashboard/")
        report["not staff"] = [reply.status_code, reply.get("Location")]
        client.force_login(User.objects.create_user("grace", password="-", is_staff=True))
        reply = client.get("/dashboard/")
        html = reply.content.decode()
        report["staff"] = reply.status_code
        report["links"] = sorted(set(re.findall(r'(?:href|action)="(/[^"?]*)', html)))
        report["set_cookie"] = [str(morsel) for morsel in reply.cookies.values()]
        report["headers"] = {
            name: reply.get(name)
            for name in ("Content-Security-Policy", "X-Content-Type-Options", "Content-Type")
        }
        token = re.search(r'name="csrf" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]
        reply = client.post("/dashboard/queues/emails/pause", "", content_type=FORM)
        report["post without the token"] = reply.status_code
        reply = client.post("/dashboard/queues/emails/pause", f"csrf={token}", content_type=FORM)
        report["post"] = [reply.status_code, reply.get("Location")]
        reply = client.get(reply["Location"])
        report["after"] = [reply.status_code, "Paused: no worker" in reply.content.decode()]
        reply = client.get("/dashboard/static/dashboard.css")
        report["css"] = [reply.status_code, reply.get("Content-Type")]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
