"""The Django recipe's manage.py (a minimal project: django_settings.py, django_urls.py and the
app jobsapp/). Where the routines start:

    python manage.py runserver     jobsapp/apps.py's ready(), in the reloader's child only
    python manage.py runroutines   a process of their own (jobsapp/management/commands/)
    python manage.py check, migrate, shell, ...   nowhere: they only import the project
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_settings")
    from django.core.management import execute_from_command_line  # type: ignore[import-untyped]

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
