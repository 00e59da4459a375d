"""Settings of the Django recipe's minimal project: one app, no database, no middleware."""

from __future__ import annotations

SECRET_KEY = "an example, not a secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["jobsapp"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "django_urls"
DATABASES: dict[str, object] = {}
USE_TZ = True
