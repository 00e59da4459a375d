"""`routines queues`, `jobs`, `job`, `retry`, `cancel`, `run-now`, `pause`, `resume`,
`limits` and `purge`: see and act on the jobs and queues of a store, through its public API
(`store.queues()`, `queue.jobs()`, `store.job()`, `queue.retry_all()`, `queue.set_limits()`,
...), as a script of the app could.

A job id is unique in the store, so the commands given ids find each job's queue themselves. A
queue the store has never seen (no job, no pause, no limits) is most likely a typo: a command
that lists or changes its jobs fails (exit status 1), naming the queues the store has; `pause`
and `limits` with a limit to set make the new queue, and say so on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import itertools
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from .._validate import MAX_SECONDS
from . import output
from .common import (
    Command,
    CommandError,
    add_json_option,
    add_listing_options,
    add_store_options,
    duration,
    job_id,
    positive_int_up_to,
    the_names,
    usage_error,
    using_store,
)

if TYPE_CHECKING:
    from routines import durable

__all__ = ["COMMANDS", "job_document", "known_queues", "limits_document", "limits_text"]

# The job states, in the order of `durable.JobState` (tests/durable/test_cli_jobs.py pins it:
# reading them from the library would load the durable tier for every command, worker too).
_STATES: Final[tuple[durable.JobState, ...]] = (
    "queued",
    "processing",
    "completed",
    "errored",
    "failed",
    "canceled",
)
_RETRYABLE: Final[tuple[durable.JobState, ...]] = ("failed", "canceled")  # what retry puts back
_CANCELABLE: Final[tuple[durable.JobState, ...]] = ("queued", "errored", "processing")  # live
_WAITING: Final[tuple[durable.JobState, ...]] = ("queued", "errored")  # what run_now makes due
_FINAL: Final[tuple[durable.JobState, ...]] = ("completed", "failed", "canceled")  # purged
_MAX_PAGE: Final = 1000  # the most jobs `queue.jobs` lists at once
# The largest limit: the store keeps limits as 32-bit integers (durable's INT32_MAX; a test pins
# it, as it pins _STATES).
_MOST: Final = 2**31 - 1


# -- what a job looks like, for people and for scripts ------------------------------------------


def job_document(job: durable.Job) -> dict[str, object]:
    """A job for `--json`: every field of `durable.Job`, its `task`, times as ISO 8601 (the
    same keys in `routines jobs` and `routines job`)."""
    return {
        "id": job.id,
        "queue": job.queue,
        "task": job.task,
        "state": job.state,
        "priority": job.priority,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "resets": job.resets,
        "snoozes": job.snoozes,
        "key": job.key,
        "group": job.group,
        "enqueued_at": job.enqueued_at,
        "run_after": job.run_after,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "heartbeat_at": job.heartbeat_at,
        "worker": job.worker,
        "cancel_requested": job.cancel_requested,
        "payload": job.payload,
        "result": job.result,
        "last_error": job.last_error,
    }


def _when(job: durable.Job, now: datetime) -> str:
    """What a job waits for or did last, with its age: `due in 30s`, `started 2m ago`, ..."""
    if job.state in _WAITING:
        return f"due {output.age(job.run_after, now)}"
    if job.state == "processing" and job.started_at is not None:
        stopping = ", stopping" if job.cancel_requested else ""
        return f"started {output.age(job.started_at, now)}{stopping}"
    if job.finished_at is not None:
        return f"ended {output.age(job.finished_at, now)}"
    return "-"  # pragma: no cover - every job of another state has ended


# -- queues the store knows ---------------------------------------------------------------------


def known_queues(store: durable.Store) -> list[str]:
    return [info.name for info in store.queues()]


def _unknown_queue(name: str, known: Sequence[str]) -> str:
    """The message for a queue the store has never seen: the close names, and the others."""
    if not known:
        return f"the store has no queue {name!r}, nor any other: no job was ever enqueued in it"
    names = the_names(name, known, "queues")
    return f"the store has no queue {name!r} (no job, no pause, no limits); {names}"


def _note_new_queue(command: str, name: str, known: Sequence[str], made: str) -> None:
    """Say on stderr that a command made a queue the store had never seen (`made`: what it is
    now), in case the name was a typo that leaves the queue meant as it was."""
    if name not in known:
        sys.stderr.write(
            f"routines {command}: note: {_unknown_queue(name, known)}; the new queue {name!r} "
            f"is {made}\n"
        )


def _require_known(store: durable.Store, name: str) -> None:
    """Fail unless the store has seen the queue `name` (asked only when a command found or
    changed nothing in it, so the common path costs no count of every queue)."""
    known = known_queues(store)
    if name not in known:
        raise CommandError(_unknown_queue(name, known))


# -- queues -------------------------------------------------------------------------------------


def run_queues(args: argparse.Namespace) -> int:
    with using_store(args) as store:
        infos = store.queues()
    document = {
        "queues": [
            {
                "name": info.name,
                "paused": info.paused,
                "counts": info.counts,
                "oldest_ready_age": info.oldest_ready_age,
                "limits": limits_document(info.limits),
            }
            for info in infos
        ]
    }
    rows = [
        (
            info.name,
            info.paused,
            *(info.counts[state] for state in _STATES),
            None if info.oldest_ready_age is None else output.span(info.oldest_ready_age),
            limits_text(info.limits),
        )
        for info in infos
    ]
    columns = ["queue", "paused", *_STATES, "oldest ready", "limits"]
    output.show(document, columns, rows, as_json=args.json, cut=("limits",))
    return 0


# -- jobs ---------------------------------------------------------------------------------------


def add_jobs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--queue", metavar="Q", help="only this queue's jobs (default: every queue's)"
    )
    _add_states(parser, _STATES, "only jobs in this state; several may follow (default: all)")
    parser.add_argument("--task", metavar="T", help="only the calls of this task")
    parser.add_argument(
        "--limit",
        type=_page_size,
        default=50,
        metavar="N",
        help=f"at most N jobs, 1 to {_MAX_PAGE} (default: 50)",
    )
    parser.add_argument(
        "--before",
        type=job_id,
        metavar="ID",
        help="only jobs with a lower id: the next page after the job ID",
    )
    add_store_options(parser)
    add_json_option(parser)


def run_jobs(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {"state": args.states, "task": args.task, "limit": args.limit}
    options["before"] = args.before
    with using_store(args) as store:
        if args.queue is not None:
            page = store.queue(args.queue).jobs(**options)
            if not page:
                _require_known(store, args.queue)
        else:
            page = _newest_of_every_queue(store, options)
    now = output.utc_now()
    full = len(page) == args.limit
    document = {
        "jobs": [job_document(job) for job in page],
        "next_before": page[-1].id if full else None,
    }
    columns = ["id", "queue", "state", "task", "tries", "enqueued", "when", "last error"]
    rows: list[tuple[object, ...]] = [
        (
            job.id,
            job.queue,
            job.state,
            job.task,
            f"{job.attempts}/{job.max_attempts}",
            output.age(job.enqueued_at, now),
            _when(job, now),
            output.headline(job.last_error),
        )
        for job in page
    ]
    if args.queue is not None:  # one queue: its name on every row says nothing
        columns.remove("queue")
        rows = [(row[0], *row[2:]) for row in rows]
    output.show(document, columns, rows, as_json=args.json, cut=("last error", "task"))
    if full and not args.json:
        sys.stderr.write(f"more jobs may follow: add --before {page[-1].id} for the next page\n")
    return 0


def _newest_of_every_queue(store: durable.Store, options: dict[str, Any]) -> list[durable.Job]:
    """A page of every queue's jobs, newest first: the newest of each queue's page (ids are
    unique in the store, so `--before` pages through all of them as through one)."""
    pages = [store.queue(name).jobs(**options) for name in known_queues(store)]
    merged = heapq.merge(*pages, key=lambda job: -job.id)
    return list(itertools.islice(merged, options["limit"]))


# -- job ----------------------------------------------------------------------------------------


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", type=job_id, metavar="ID", help="the job's id")
    add_store_options(parser)
    add_json_option(parser)


def run_job(args: argparse.Namespace) -> int:
    with using_store(args) as store:
        job = _find(store, args.id)
    if args.json:
        output.print_json({"job": job_document(job)})
        return 0
    now = output.utc_now()
    fields: list[tuple[str, object]] = [
        ("id", job.id),
        ("queue", job.queue),
        ("task", job.task),
        ("state", job.state),
        ("priority", job.priority),
        ("attempts", f"{job.attempts} of {job.max_attempts}"),
        ("resets", job.resets),
        ("snoozes", job.snoozes),
        ("key", job.key),
        ("group", job.group),
        ("enqueued_at", output.moment(job.enqueued_at, now)),
        ("run_after", output.moment(job.run_after, now)),
        ("started_at", output.moment(job.started_at, now)),
        ("finished_at", output.moment(job.finished_at, now)),
        ("heartbeat_at", output.moment(job.heartbeat_at, now)),
        ("worker", job.worker),
        ("cancel_requested", job.cancel_requested),
    ]
    blocks = [
        ("payload", output.indented_json(job.payload)),
        ("result", None if job.result is None else output.indented_json(job.result)),
        ("last_error", job.last_error),
    ]
    output.print_fields(fields, blocks)
    return 0


def _find(store: durable.Store, wanted: int) -> durable.Job:
    job = store.job(wanted)
    if job is None:
        msg = f"the store has no job {wanted} (it may have been purged): check the id"
        raise CommandError(msg)
    return job


# -- retry, cancel, run-now ---------------------------------------------------------------------


class _Tally:
    """What a command given job ids did with each: done (by kind), or refused and why. The
    refusals end the command with exit status 1, after the others were done."""

    def __init__(self, kinds: Iterable[str]) -> None:
        self.done: dict[str, list[int]] = {kind: [] for kind in kinds}
        self.refused: list[dict[str, object]] = []

    def refuse(self, wanted: int, job: durable.Job | None, reason: str) -> None:
        self.refused.append(
            {"id": wanted, "state": None if job is None else job.state, "reason": reason}
        )

    def finish(self, args: argparse.Namespace, lines: list[str]) -> int:
        if args.json:
            output.print_json({**self.done, "refused": self.refused})
        else:
            sys.stdout.write("".join(f"{line}\n" for line in lines))
        if self.refused:
            raise CommandError("; ".join(str(each["reason"]) for each in self.refused))
        return 0


def _is_not(job: durable.Job, wanted: Sequence[str], doing: str) -> str:
    """The refusal of a job in a state the command does not take."""
    return f"job {job.id} is {job.state}: {doing} only a job that is {_either(wanted)}"


def _either(states: Sequence[str]) -> str:
    return states[0] if len(states) == 1 else f"{', '.join(states[:-1])} or {states[-1]}"


def _label(job: durable.Job) -> str:
    task = f", task {job.task}" if job.task else ""
    return f"job {job.id} (queue {job.queue}{task})"


def add_retry_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ids", nargs="*", type=job_id, metavar="ID", help="the jobs to retry")
    parser.add_argument(
        "--queue", metavar="Q", help="retry every job of this queue in --state, instead of IDs"
    )
    _add_states(parser, _RETRYABLE, "with --queue: the jobs in this state (default: failed)")
    add_store_options(parser)
    add_json_option(parser)


def run_retry(args: argparse.Namespace) -> int:
    _ids_or_queue(args)
    with using_store(args) as store:
        if args.queue is not None:
            states = args.states or ["failed"]
            count = store.queue(args.queue).retry_all(state=states)
            if not count:
                _require_known(store, args.queue)
            return _bulk(args, states, count, "retried", "back to queued, due now")
        tally = _Tally(["retried"])
        lines = []
        for wanted in args.ids:
            job = store.job(wanted)
            if job is None:
                tally.refuse(wanted, None, f"the store has no job {wanted}")
            elif job.state not in _RETRYABLE:
                tally.refuse(wanted, job, _is_not(job, _RETRYABLE, "retry takes"))
            elif store.queue(job.queue).retry(job.id):
                tally.done["retried"].append(job.id)
                lines.append(f"retried {_label(job)}: queued, due now, its attempts from 0")
            else:
                tally.refuse(wanted, job, _not_retried(store, job))
    return tally.finish(args, lines)


def _not_retried(store: durable.Store, job: durable.Job) -> str:
    """Why `retry` of a job that was failed or canceled a moment ago put nothing back."""
    now = store.job(job.id)
    if now is None:
        return f"job {job.id} was purged meanwhile"
    if now.state not in _RETRYABLE:
        return f"job {job.id} is {now.state} now"
    return (
        f"job {job.id} was not retried: a live job (queued, errored or processing) holds its key "
        f"{job.key!r}"
    )


def add_cancel_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ids", nargs="*", type=job_id, metavar="ID", help="the jobs to cancel")
    parser.add_argument(
        "--queue",
        metavar="Q",
        help="cancel every job of this queue in --state (required then), instead of IDs",
    )
    _add_states(parser, _CANCELABLE, "with --queue: the jobs in this state")
    add_store_options(parser)
    add_json_option(parser)


def run_cancel(args: argparse.Namespace) -> int:
    _ids_or_queue(args)
    if args.queue is not None and not args.states:
        usage_error(args, f"--queue needs --state, one or more of {', '.join(_CANCELABLE)}")
    with using_store(args) as store:
        if args.queue is not None:
            count = store.queue(args.queue).cancel_all(state=args.states)
            if not count:
                _require_known(store, args.queue)
            done = "canceled (a processing one ends canceled when its handler returns)"
            return _bulk(args, args.states, count, "canceled", done)
        tally = _Tally(["canceled", "stopping"])
        lines = []
        for wanted in args.ids:
            job = store.job(wanted)
            if job is None:
                tally.refuse(wanted, None, f"the store has no job {wanted}")
            elif job.state not in _CANCELABLE:
                tally.refuse(wanted, job, _is_not(job, _CANCELABLE, "cancel takes"))
            elif not store.queue(job.queue).cancel(job.id):
                ended = store.job(job.id)
                state = "purged" if ended is None else ended.state
                tally.refuse(wanted, job, f"job {job.id} ended meanwhile: it is {state}")
            elif job.state == "processing":
                tally.done["stopping"].append(job.id)
                lines.append(
                    f"asked {_label(job)} to stop: its handler is running; the job ends "
                    "canceled when the handler returns"
                )
            else:
                tally.done["canceled"].append(job.id)
                lines.append(f"canceled {_label(job)}")
    return tally.finish(args, lines)


def add_run_now_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", type=job_id, metavar="ID", help="a queued or errored job")
    add_store_options(parser)
    add_json_option(parser)


def run_run_now(args: argparse.Namespace) -> int:
    with using_store(args) as store:
        job = _find(store, args.id)
        doing = "run-now makes due"
        if job.state not in _WAITING:
            raise CommandError(_is_not(job, _WAITING, doing) + " (waiting to run)")
        if not store.queue(job.queue).run_now(job.id):
            raise CommandError(f"job {job.id} is no longer waiting: it was claimed or canceled")
        due = store.job(job.id) or job
    if args.json:
        output.print_json({"id": due.id, "queue": due.queue, "run_after": due.run_after})
    else:
        when = output.moment(due.run_after, output.utc_now())
        sys.stdout.write(
            f"{_label(due)} is due at {when}; attempts so far: {due.attempts} of "
            f"{due.max_attempts}\n"
        )
    return 0


# -- pause, resume ------------------------------------------------------------------------------


def add_queue_name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("queue", metavar="Q", help="the queue")
    add_store_options(parser)
    add_json_option(parser)


def run_pause(args: argparse.Namespace) -> int:
    with using_store(args) as store:
        queue = store.queue(args.queue)
        was_paused = queue.paused
        known = known_queues(store) if not was_paused else [args.queue]
        queue.pause()
    if args.json:
        output.print_json({"queue": args.queue, "paused": True, "was_paused": was_paused})
    elif was_paused:
        sys.stdout.write(f"queue {args.queue} was paused already\n")
    else:
        sys.stdout.write(
            f"paused queue {args.queue}: no worker claims its jobs until "
            f"'routines resume {args.queue}'; running jobs finish\n"
        )
    _note_new_queue("pause", args.queue, known, "paused")  # a typo leaves the one meant running
    return 0


def run_resume(args: argparse.Namespace) -> int:
    with using_store(args) as store:
        queue = store.queue(args.queue)
        was_paused = queue.paused
        if not was_paused:
            _require_known(store, args.queue)
        queue.resume()
    if args.json:
        output.print_json({"queue": args.queue, "paused": False, "was_paused": was_paused})
    elif was_paused:
        sys.stdout.write(f"resumed queue {args.queue}: its workers claim its jobs again\n")
    else:
        sys.stdout.write(f"queue {args.queue} was not paused\n")
    return 0


# -- limits -------------------------------------------------------------------------------------


def limits_document(limits: durable.QueueLimits) -> dict[str, object]:
    """A queue's limits for `--json` (the same in `routines queues` and `routines limits`):
    None for a limit that is not set; the rate as `{"count", "per_seconds"}`."""
    rate = limits.rate
    return {
        "max_running": limits.max_running,
        "group_running": limits.group_running,
        "rate": None if rate is None else {"count": rate[0], "per_seconds": rate[1]},
    }


def limits_text(limits: durable.QueueLimits) -> str | None:
    """A queue's limits in one cell, `max 5, group 1, 10/1s`; None when it has none."""
    parts = []
    if limits.max_running is not None:
        parts.append(f"max {limits.max_running}")
    if limits.group_running is not None:
        parts.append(f"group {limits.group_running}")
    if limits.rate is not None:
        parts.append(_rate_text(limits.rate))
    return ", ".join(parts) or None


def _rate_text(rate: tuple[int, float]) -> str:
    """A rate as `--rate` takes it back: `10/1s`, `600/60s`, `5/0.5s`."""
    return f"{rate[0]}/{rate[1]:g}s"


def add_limits_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("queue", metavar="Q", help="the queue")
    parser.add_argument(
        "--max-running",
        type=_limit,
        metavar="N",
        help="at most N of its jobs processing at once, across the fleet",
    )
    parser.add_argument(
        "--group-running",
        type=_limit,
        metavar="N",
        help="at most N jobs of one group processing at once (jobs without a group don't count)",
    )
    parser.add_argument(
        "--rate",
        type=_rate,
        metavar="COUNT/SECONDS",
        help=(
            "at most COUNT job starts in any window of SECONDS, across the fleet: 10/1, 600/60 "
            "or 5/0.5 (SECONDS may also be 30s, 10m, 2h)"
        ),
    )
    parser.add_argument(
        "--clear",
        action="store_true",
        help="remove every limit; with the options above, every limit but those they set",
    )
    add_store_options(parser)
    add_json_option(parser)


def run_limits(args: argparse.Namespace) -> int:
    named = {
        limit: getattr(args, limit)
        for limit in ("max_running", "group_running", "rate")
        if getattr(args, limit) is not None
    }
    with using_store(args) as store:
        queue = store.queue(args.queue)
        was = queue.limits
        known = [args.queue] if was.limited else known_queues(store)
        if not named and args.queue not in known:  # nothing to show or remove: a typo?
            raise CommandError(_unknown_queue(args.queue, known))
        if not named and not args.clear:
            return _show_limits(args, was)
        from routines import durable

        now = dataclasses.replace(durable.QueueLimits() if args.clear else was, **named)
        if now != was:
            queue.set_limits(
                max_running=now.max_running, group_running=now.group_running, rate=now.rate
            )
    if args.json:
        output.print_json(
            {
                "queue": args.queue,
                "limits": limits_document(now),
                "previous": limits_document(was),
            }
        )
    else:
        sys.stdout.write(_limits_changed(args.queue, was, now) + "\n")
    _note_new_queue("limits", args.queue, known, "limited")
    return 0


def _show_limits(args: argparse.Namespace, limits: durable.QueueLimits) -> int:
    if args.json:
        output.print_json({"queue": args.queue, "limits": limits_document(limits)})
        return 0
    rate = limits.rate
    output.print_fields(
        [
            ("queue", args.queue),
            ("max_running", limits.max_running),
            ("group_running", limits.group_running),
            (
                "rate",
                None
                if rate is None
                else f"{_rate_text(rate)} (at most {rate[0]} starts in any {rate[1]:g}s)",
            ),
        ]
    )
    return 0


def _limits_changed(name: str, was: durable.QueueLimits, now: durable.QueueLimits) -> str:
    """What `routines limits Q --...` did, in a line."""
    before, after = limits_text(was), limits_text(now)
    if now == was:
        if after is None:
            return f"queue {name} had no limits"
        return f"queue {name} had these limits already: {after}"
    if after is None:
        return (
            f"removed the limits of queue {name} (were: {before}): its workers claim without "
            "them from their next claim on"
        )
    return (
        f"limits of queue {name}: {after} (were: {before or 'none'}); every worker of the fleet "
        "claims under them from its next claim on"
    )


# -- purge --------------------------------------------------------------------------------------


def add_purge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queue", metavar="Q", required=True, help="the queue")
    parser.add_argument(
        "--older-than",
        type=duration,
        required=True,
        metavar="AGE",
        help="delete the jobs that ended longer ago than this: 30s, 10m, 2h, 7d or seconds",
    )
    _add_states(parser, _FINAL, "only jobs in this state (default: completed, failed, canceled)")
    add_store_options(parser)
    add_json_option(parser)


def run_purge(args: argparse.Namespace) -> int:
    states = args.states or list(_FINAL)
    with using_store(args) as store:
        count = store.queue(args.queue).purge(older_than=args.older_than, states=states)
        if not count:
            _require_known(store, args.queue)
    if args.json:
        output.print_json(
            {"queue": args.queue, "states": states, "older_than": args.older_than, "count": count}
        )
    else:
        sys.stdout.write(
            f"deleted {_jobs(count)} of queue {args.queue} ({', '.join(states)}) that ended more "
            f"than {output.span(args.older_than)} ago\n"
        )
    return 0


# -- what the commands share --------------------------------------------------------------------


def _add_states(parser: argparse.ArgumentParser, states: Sequence[str], help_text: str) -> None:
    parser.add_argument(
        "--state",
        dest="states",
        action="extend",
        nargs="+",
        choices=states,
        metavar="S",
        help=f"{help_text}; one of {', '.join(states)}",
    )


def _ids_or_queue(args: argparse.Namespace) -> None:
    """IDs, or --queue (and --state with it): one of the two."""
    if args.ids and args.queue is not None:
        usage_error(args, "give job IDs or --queue, not both")
    if not args.ids and args.queue is None:
        usage_error(args, "give one or more job IDs, or --queue Q for every job of a queue")
    if args.ids and args.states:
        usage_error(args, "--state goes with --queue (IDs name their jobs)")


def _bulk(args: argparse.Namespace, states: Sequence[str], count: int, verb: str, done: str) -> int:
    if args.json:
        output.print_json({"queue": args.queue, "states": list(states), "count": count})
    else:
        state = " or ".join(states)
        sys.stdout.write(f"{verb} {_jobs(count)} of queue {args.queue} that were {state}: {done}\n")
    return 0


def _jobs(count: int) -> str:
    return f"{count} job" if count == 1 else f"{count} jobs"


_limit: Final = positive_int_up_to(_MOST)  # a limit: a whole number from 1 to 2**31 - 1
_page_size: Final = positive_int_up_to(_MAX_PAGE, "page on with --before")


def _rate(text: str) -> tuple[int, float]:
    """A rate, COUNT/SECONDS: a whole number of starts per a positive length of time."""
    count, slash, per = text.partition("/")
    try:
        rate = (_limit(count.strip()), duration(per))
    except argparse.ArgumentTypeError:
        rate = (0, 0.0)
    if not slash or not 0 < rate[1] <= MAX_SECONDS or not rate[0]:
        msg = (
            "must be COUNT/SECONDS, a whole number of starts per a positive number of seconds "
            f"such as 10/1, 600/60 or 5/0.5, got {text!r}"
        )
        raise argparse.ArgumentTypeError(msg)
    return rate


COMMANDS = (
    Command(
        name="queues",
        summary="list every queue: its jobs in each state, paused, its oldest ready job's wait",
        add_arguments=add_listing_options,
        run=run_queues,
    ),
    Command(
        name="jobs",
        summary="list jobs, newest first, by queue, state and task, a page at a time",
        description=(
            "List jobs, newest first (highest id first): of one queue, or of every queue. "
            "A page holds --limit jobs; --before ID gives the next one. Long errors are cut: "
            "'routines job ID' shows the whole traceback, and --json every field."
        ),
        add_arguments=add_jobs_arguments,
        run=run_jobs,
    ),
    Command(
        name="job",
        summary="show one job: every field, its payload, result and the error's traceback",
        add_arguments=add_job_arguments,
        run=run_job,
    ),
    Command(
        name="retry",
        summary="put failed or canceled jobs back in their queue, due now",
        description=(
            "Put failed or canceled jobs back to queued, due now, their attempts from 0: the "
            "jobs IDs, or with --queue every job of that queue in --state (default: failed). "
            "A job whose key a live job holds stays as it is."
        ),
        add_arguments=add_retry_arguments,
        run=run_retry,
    ),
    Command(
        name="cancel",
        summary="cancel waiting jobs, or ask running ones to stop",
        description=(
            "Cancel the jobs IDs, or with --queue every job of that queue in --state. A queued "
            "or errored job is canceled at once; a processing one is asked to stop (its "
            "handler sees routines.stopping()) and ends canceled when the handler returns."
        ),
        add_arguments=add_cancel_arguments,
        run=run_cancel,
    ),
    Command(
        name="run-now",
        summary="make a queued or errored job due at once (a retry's wait skipped)",
        add_arguments=add_run_now_arguments,
        run=run_run_now,
    ),
    Command(
        name="pause",
        summary="stop every worker of the fleet from claiming a queue's jobs",
        description=(
            "Pause the queue Q for the whole fleet, until 'routines resume Q': from their next "
            "claim on no worker claims its jobs. Running jobs finish; enqueues are stored."
        ),
        add_arguments=add_queue_name,
        run=run_pause,
    ),
    Command(
        name="resume",
        summary="undo pause: the workers claim the queue's jobs again",
        add_arguments=add_queue_name,
        run=run_resume,
    ),
    Command(
        name="limits",
        summary="show or change a queue's limits: jobs running at once, per group, starts a second",
        description=(
            "Show the limits of the queue Q, or change those named and keep the others: "
            "--max-running (its jobs processing at once, across the fleet), --group-running "
            "(jobs of one group processing at once) and --rate (job starts in any window of "
            "SECONDS). --clear removes every limit (with the others: every limit but those). "
            "Every worker claims under the new limits from its next claim on; a job a limit "
            "holds back stays queued."
        ),
        add_arguments=add_limits_arguments,
        run=run_limits,
    ),
    Command(
        name="purge",
        summary="delete a queue's jobs that ended longer ago than --older-than",
        add_arguments=add_purge_arguments,
        run=run_purge,
    ),
)
