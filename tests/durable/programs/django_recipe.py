"""The Django recipe of docs/durable.md under real Django, on a store's own database.

usage: django_recipe.py URL SCHEMA < recipe.py

Configures Django on the database of the store at URL (SQLite: its file; PostgreSQL: its
database, with the search path at SCHEMA so that the app's table lands in the test's schema),
creates the model `Order` (table `orders`), and runs the recipe read from stdin: `place_order(42)`
with a `charge` that accepts, `place_order(43)` with one that raises `Declined`, and an enqueue
given Django's connection wrapper instead of the driver's connection. Prints one JSON object:
the order the first call returned, what the second raised, and the wrapper's error message; the
test reads the tables itself.
"""

from __future__ import annotations

import json
import sys

import django
from django.conf import settings

from routines import durable


class Declined(Exception):
    """The payment failed: the order and its job must be rolled back together."""


def database(url: str, schema: str) -> dict[str, object]:
    if url.startswith("sqlite:///"):
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": url.removeprefix("sqlite:///")}
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": params["dbname"],
        "USER": params.get("user", ""),
        "PASSWORD": params.get("password", ""),
        "HOST": params.get("host", ""),
        "PORT": params.get("port", ""),
        "OPTIONS": {"options": f"-c search_path={schema}"},
    }


def main() -> None:
    url, schema = sys.argv[1:3]
    recipe = sys.stdin.read()
    settings.configure(DATABASES={"default": database(url, schema)}, INSTALLED_APPS=[], USE_TZ=True)
    django.setup()
    from django.db import connection, models

    class Order(models.Model):
        total = models.IntegerField()

        class Meta:
            app_label = "shop"
            db_table = "orders"

    with connection.schema_editor() as editor:
        editor.create_model(Order)

    declining = False

    def charge(order_id: int) -> None:
        if declining:
            raise Declined(order_id)

    report: dict[str, object] = {}
    with durable.open_store(url, schema=schema) as store:
        namespace: dict[str, object] = {
            "Order": Order,
            "emails": store.queue("emails"),
            "charge": charge,
        }
        exec(recipe, namespace)
        place_order = namespace["place_order"]
        report["committed"] = place_order(42)  # type: ignore[operator]
        declining = True
        try:
            place_order(43)  # type: ignore[operator]
        except Declined as error:
            report["declined"] = repr(error)
        try:
            store.queue("emails").enqueue(1, connection=connection)  # type: ignore[arg-type]
        except TypeError as error:
            report["wrapper"] = str(error)
    connection.close()
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
