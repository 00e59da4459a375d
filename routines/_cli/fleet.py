"""`routines schedules`, `migrations` and `leases`: what the fleet-wide routines of a store did,
through its public API (`store.schedules()`, `store.schedule_runs()`, `store.migrations()`,
`store.leases()`), as a script of the app could."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Final

from . import output
from .common import (
    Command,
    CommandError,
    add_json_option,
    add_listing_options,
    add_store_options,
    positive_int_up_to,
    the_names,
    using_store,
)

if TYPE_CHECKING:
    from routines import durable

__all__ = ["COMMANDS", "run_document"]

_MAX_RUNS: Final = 1000  # a schedule keeps its latest 1,000 runs
_runs: Final = positive_int_up_to(_MAX_RUNS, "the runs a schedule keeps")


def run_document(run: durable.ScheduleRun) -> dict[str, object]:
    """A run of a schedule for `--json`: every field of `durable.ScheduleRun`."""
    return {
        "name": run.name,
        "tick": run.tick,
        "state": run.state,
        "worker": run.worker,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "error": run.error,
    }


# -- schedules ----------------------------------------------------------------------------------


def add_schedules_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name",
        nargs="?",
        metavar="NAME",
        help="a schedule: list its latest runs (default: every schedule, with its last run)",
    )
    parser.add_argument(
        "--limit",
        type=_runs,
        default=20,
        metavar="N",
        help=f"with NAME: at most N runs, newest first, 1 to {_MAX_RUNS} (default: 20)",
    )
    add_store_options(parser)
    add_json_option(parser)


def run_schedules(args: argparse.Namespace) -> int:
    with using_store(args) as store:
        if args.name is not None:
            runs = store.schedule_runs(args.name, limit=args.limit)
            if not runs:  # a name with no run: most likely a typo
                names = [info.name for info in store.schedules()]
                raise CommandError(_unknown_schedule(args.name, names))
        else:
            infos = store.schedules()
    now = output.utc_now()
    if args.name is not None:
        rows = [
            (
                output.moment(run.tick, now),
                run.state,
                _took(run),
                run.worker,
                output.headline(run.error),
            )
            for run in runs
        ]
        output.show(
            {"name": args.name, "runs": [run_document(run) for run in runs]},
            ["tick", "state", "took", "worker", "error"],
            rows,
            as_json=args.json,
            cut=("error", "worker"),
        )
        return 0
    document = {
        "schedules": [
            {
                "name": info.name,
                "runs": info.runs,
                "failures": info.failures,
                "last_run": None if info.last_run is None else run_document(info.last_run),
            }
            for info in infos
        ]
    }
    table = [
        (
            info.name,
            None if info.last_run is None else output.moment(info.last_run.tick, now),
            None if info.last_run is None else info.last_run.state,
            info.runs,
            info.failures,
            None if info.last_run is None else output.headline(info.last_run.error),
        )
        for info in infos
    ]
    output.show(
        document,
        ["schedule", "last tick", "state", "runs", "failed", "last error"],
        table,
        as_json=args.json,
        cut=("last error", "schedule"),
    )
    return 0


def _took(run: durable.ScheduleRun) -> str | None:
    if run.finished_at is None:
        return None
    return output.span((run.finished_at - run.started_at).total_seconds())


def _unknown_schedule(name: str, known: list[str]) -> str:
    if not known:
        return f"the store has no run of a schedule {name!r}, nor of any other"
    return f"the store has no run of a schedule {name!r}; {the_names(name, known, 'schedules')}"


# -- migrations ---------------------------------------------------------------------------------


def run_migrations(args: argparse.Namespace) -> int:
    with using_store(args) as store:
        statuses = store.migrations()
    now = output.utc_now()
    document = {
        "migrations": [
            {
                "id": status.id,
                "progress": status.progress,
                "reverse": status.reverse,
                "complete": status.complete,
                "updated_at": status.updated_at,
                "errors": [{"at": error.at, "error": error.error} for error in status.errors],
            }
            for status in statuses
        ]
    }
    rows = [
        (
            status.id,
            "reverse" if status.reverse else "forward",
            f"{status.progress:.1%}",
            status.complete,
            output.age(status.updated_at, now),
            len(status.errors),
            output.headline(status.errors[0].error) if status.errors else None,
        )
        for status in statuses
    ]
    output.show(
        document,
        ["migration", "direction", "progress", "complete", "updated", "errors", "last error"],
        rows,
        as_json=args.json,
        cut=("last error", "migration"),
    )
    return 0


# -- leases -------------------------------------------------------------------------------------


def run_leases(args: argparse.Namespace) -> int:
    with using_store(args) as store:
        leases = store.leases()
    now = output.utc_now()
    document = {
        "leases": [
            {
                "name": lease.name,
                "holder": lease.holder,
                "token": lease.token,
                "expires_at": lease.expires_at,
            }
            for lease in leases
        ]
    }
    rows = [
        (lease.name, lease.holder, lease.token, output.moment(lease.expires_at, now))
        for lease in leases
    ]
    output.show(
        document,
        ["lease", "holder", "token", "expires"],
        rows,
        as_json=args.json,
        cut=("holder", "lease"),
    )
    return 0


COMMANDS = (
    Command(
        name="schedules",
        summary="list the fleet-wide schedules and their last run, or one schedule's runs",
        add_arguments=add_schedules_arguments,
        run=run_schedules,
    ),
    Command(
        name="migrations",
        summary="list the out-of-band migrations: direction, progress, latest errors",
        add_arguments=add_listing_options,
        run=run_migrations,
    ),
    Command(
        name="leases",
        summary="list the leases (singletons', migration runners'), their holders and expiry",
        add_arguments=add_listing_options,
        run=run_leases,
    ),
)
