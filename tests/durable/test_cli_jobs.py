"""`routines queues`, `jobs`, `job`, `retry`, `cancel`, `run-now`, `pause`, `resume`, `limits`
and `purge` (routines/_cli/jobs.py) on both backends, run in this process: their tables
(columns, ages, long errors cut to the terminal), their --json documents parsed back, what each
did to the store, and their exit statuses (spec/OPERATIONS.md, section 6). A few run through
the installed console script at the end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, get_args

import pytest

from routines import durable
from routines._cli import jobs as jobs_commands
from routines.durable._model import INT32_MAX, Outcome

from .conftest import Target
from .support import Cli, Clock, backend_of, claim_jobs, end_jobs, fill_jobs
from helpers import WAIT

SCRIPT = Path(sys.executable).parent / "routines"  # the console script pip installed

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/app/jobs.py", line 12, in send_email\n'
    "    smtp.send(to)\n"
    "ConnectionRefusedError: [Errno 111] smtp.example.com refused the connection\n"
)
JOB_KEYS = [
    "id", "queue", "task", "state", "priority", "attempts", "max_attempts", "resets", "snoozes",
    "key", "group", "enqueued_at", "run_after", "started_at", "finished_at", "heartbeat_at",
    "worker", "cancel_requested", "payload", "result", "last_error",
]  # fmt: skip
TIME_KEYS = ["enqueued_at", "run_after", "started_at", "finished_at", "heartbeat_at"]


def call(task: str, *args: object) -> dict[str, object]:
    return {"task": task, "args": list(args), "kwargs": {}}


def ended(queue: durable.Queue, payload: object, outcome: Outcome) -> int:
    """A job of `payload`, claimed and ended with `outcome` (no other job of the queue may be
    due); its id."""
    job_id = queue.enqueue(payload)
    assert end_jobs(queue, outcome) == [job_id]
    return job_id


def latest_moment(store: durable.Store) -> datetime:
    """The latest time any job of the store holds (that is not in the future)."""
    moments = [
        moment
        for info in store.queues()
        for job in store.queue(info.name).jobs(limit=1000)
        for moment in (job.enqueued_at, job.started_at, job.finished_at)
        if moment is not None
    ]
    return max(moments)


@pytest.fixture
def emails(store: durable.Store) -> dict[str, int]:
    """The queue emails, with a completed job, two failed ones (a traceback) and a queued one;
    their ids by name."""
    queue = store.queue("emails")
    made = {
        "sent": ended(queue, call("mail.send", "ada@x"), Outcome.completed('{"id": "m1"}')),
        "refused": ended(queue, call("mail.send", "bob@x"), Outcome.failed(TRACEBACK)),
        "bounced": ended(queue, {"to": "eve@x"}, Outcome.failed("bounced\nby the server")),
    }
    made["waiting"] = queue.enqueue(call("mail.send", "joe@x"))
    return made


# -- queues ---------------------------------------------------------------------------------------


def test_the_job_states_are_the_library_s() -> None:
    assert get_args(durable.JobState) == jobs_commands._STATES


def test_queues_prints_each_queue_s_counts_pause_oldest_ready_wait_and_limits(
    cli: Cli, store: durable.Store, emails: dict[str, int]
) -> None:
    reports = store.queue("reports")
    reports.enqueue("later", delay=3600)
    reports.pause()
    reports.set_limits(max_running=2, rate=(10, 1))
    header, emails_row, reports_row = cli.lines("queues")
    assert header == (
        "queue    paused  queued  processing  completed  errored  failed  canceled  oldest ready"
        "  limits"
    )
    # The oldest ready job has waited since it was enqueued: a second or two on a busy machine.
    assert re.fullmatch(
        r"emails   no           1           0          1        0       2         0  [0-9]s  "
        r"          -",
        emails_row,
    )
    assert reports_row == (
        "reports  yes          1           0          0        0       0         0  -             "
        "max 2, 10/1s"
    )
    document = cli.json("queues")
    assert list(document) == ["queues"]
    first, second = document["queues"]
    assert list(first) == ["name", "paused", "counts", "oldest_ready_age", "limits"]
    assert (first["name"], first["paused"]) == ("emails", False)
    assert first["counts"] == {
        "queued": 1,
        "processing": 0,
        "completed": 1,
        "errored": 0,
        "failed": 2,
        "canceled": 0,
    }
    assert 0 <= first["oldest_ready_age"] < WAIT
    assert first["limits"] == {"max_running": None, "group_running": None, "rate": None}
    assert second == {
        "name": "reports",
        "paused": True,
        "counts": second["counts"],
        "oldest_ready_age": None,
        "limits": {
            "max_running": 2,
            "group_running": None,
            "rate": {"count": 10, "per_seconds": 1.0},
        },
    }
    assert sum(second["counts"].values()) == 1


def test_queues_cuts_long_limits_to_the_terminal_s_width(
    cli: Cli, store: durable.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.queue("newsletters").set_limits(max_running=20, group_running=1, rate=(600, 60))
    monkeypatch.setenv("COLUMNS", "100")
    _, row = cli.lines("queues")
    assert row.endswith("  max 20, g...")  # as narrow as a cut column gets: 12 characters
    monkeypatch.setenv("COLUMNS", "120")
    assert cli.lines("queues")[1].endswith("  max 20, group 1, 600/60s")


def test_queues_of_an_empty_store_prints_nothing_and_an_empty_list(cli: Cli) -> None:
    assert cli.lines("queues") == []
    assert cli.json("queues") == {"queues": []}


# -- jobs -----------------------------------------------------------------------------------------


def test_jobs_of_a_queue_is_a_table_with_ages_and_the_line_naming_each_error(
    cli: Cli, clock: Clock, store: durable.Store, emails: dict[str, int]
) -> None:
    clock.now = latest_moment(store) + timedelta(seconds=150)
    assert cli.lines("jobs", "--queue", "emails") == [
        "id  state      task       tries  enqueued  when          last error",
        " 4  queued     mail.send  0/5    2m ago    due 2m ago    -",
        " 3  failed     -          1/5    2m ago    ended 2m ago  bounced",
        " 2  failed     mail.send  1/5    2m ago    ended 2m ago  ConnectionRefusedError: [Errno 11"
        "1] smtp...",
        " 1  completed  mail.send  1/5    2m ago    ended 2m ago  -",
    ]


def test_jobs_of_every_queue_has_a_queue_column_and_a_job_due_later_says_when(
    cli: Cli, clock: Clock, store: durable.Store
) -> None:
    later = datetime(2031, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
    first = store.queue("reports").enqueue({"day": 1}, run_at=later)
    second = store.queue("emails").enqueue(call("mail.send", "ada@x"))
    clock.now = later - timedelta(seconds=5.5)
    lines = cli.lines("jobs")
    assert lines[0].split() == [
        "id",
        "queue",
        "state",
        "task",
        "tries",
        "enqueued",
        "when",
        "last",
        "error",
    ]
    assert [line.split()[:4] for line in lines[1:]] == [
        [str(second), "emails", "queued", "mail.send"],
        [str(first), "reports", "queued", "-"],
    ]
    assert "  due in 5s  " in lines[2], lines[2]


def test_jobs_json_gives_every_field_of_each_job_with_times_as_iso_8601(
    cli: Cli, store: durable.Store, emails: dict[str, int]
) -> None:
    document = cli.json("jobs", "--queue", "emails")
    assert list(document) == ["jobs", "next_before"]
    assert document["next_before"] is None
    listed = document["jobs"]
    assert [job["id"] for job in listed] == [
        emails[n] for n in ("waiting", "bounced", "refused", "sent")
    ]
    for job in listed:
        assert list(job) == JOB_KEYS
        stored = store.job(job["id"])
        assert stored is not None
        for key in JOB_KEYS:
            value = getattr(stored, key)
            if key in TIME_KEYS:
                assert job[key] == (None if value is None else value.isoformat()), key
                if value is not None:
                    assert datetime.fromisoformat(job[key]) == value
            else:
                assert job[key] == value, key
    refused = listed[2]
    assert (refused["task"], refused["last_error"], refused["payload"]["args"]) == (
        "mail.send",
        TRACEBACK,
        ["bob@x"],
    )
    assert listed[3]["result"] == {"id": "m1"}


def test_jobs_filters_by_states_and_task_and_pages_with_limit_and_before(
    cli: Cli, store: durable.Store, emails: dict[str, int]
) -> None:
    queue = store.queue("emails")
    canceled = queue.enqueue("x")
    assert queue.cancel(canceled)

    def listed(*options: str) -> list[int]:
        return [job["id"] for job in cli.json("jobs", "--queue", "emails", *options)["jobs"]]

    assert listed("--state", "failed") == [emails["bounced"], emails["refused"]]
    assert listed("--state", "failed", "canceled") == [
        canceled,
        emails["bounced"],
        emails["refused"],
    ]
    assert listed("--state", "failed", "--state", "completed") == [
        emails["bounced"],
        emails["refused"],
        emails["sent"],
    ]
    assert listed("--task", "mail.send", "--state", "failed") == [emails["refused"]]
    first = cli.json("jobs", "--queue", "emails", "--limit", "2")
    assert [job["id"] for job in first["jobs"]] == [canceled, emails["waiting"]]
    assert first["next_before"] == emails["waiting"]
    ran = cli("jobs", "--queue", "emails", "--limit", "2")
    assert ran.code == 0
    assert ran.err == f"more jobs may follow: add --before {emails['waiting']} for the next page\n"
    second = cli.json(
        "jobs", "--queue", "emails", "--limit", "2", "--before", str(emails["waiting"])
    )
    assert [job["id"] for job in second["jobs"]] == [emails["bounced"], emails["refused"]]
    last = cli.json("jobs", "--queue", "emails", "--limit", "2", "--before", str(emails["refused"]))
    assert ([job["id"] for job in last["jobs"]], last["next_before"]) == ([emails["sent"]], None)


def test_jobs_of_every_queue_pages_through_all_of_them_newest_first(
    cli: Cli, store: durable.Store
) -> None:
    made = []
    for n in range(7):
        made.append(store.queue(("a", "b", "c")[n % 3]).enqueue(n))
    seen: list[int] = []
    before: list[str] = []
    while True:
        document = cli.json("jobs", "--limit", "3", *before)
        seen += [job["id"] for job in document["jobs"]]
        if document["next_before"] is None:
            break
        before = ["--before", str(document["next_before"])]
    assert seen == made[::-1]
    assert [job["queue"] for job in cli.json("jobs", "--limit", "3")["jobs"]] == ["a", "c", "b"]


def test_a_listing_of_a_queue_the_store_has_never_seen_prints_nothing_and_names_its_queues(
    cli: Cli, store: durable.Store, emails: dict[str, int]
) -> None:
    store.queue("reports").pause()
    for options in ((), ("--json",)):
        ran = cli("jobs", "--queue", "emials", *options)
        assert (ran.code, ran.out) == (1, "")
        assert ran.err == (
            "routines jobs: error: the store has no queue 'emials' (no job, no pause, no limits); "
            "its queues: 'emails', 'reports'; did you mean 'emails'?\n"
        )
    # A known queue with no job in the states asked: nothing, and no error.
    assert cli.lines("jobs", "--queue", "reports") == []
    assert cli.json("jobs", "--queue", "emails", "--state", "errored") == {
        "jobs": [],
        "next_before": None,
    }


def test_a_listing_of_a_store_without_queues_is_empty(cli: Cli) -> None:
    assert cli.lines("jobs") == []
    assert "nor any other" in cli.fails("jobs", "--queue", "emails")


def test_long_errors_are_cut_to_the_terminal_s_width_and_job_shows_them_whole(
    cli: Cli, store: durable.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = store.queue("emails")
    long_error = "ValueError: " + "x" * 300
    job_id = ended(queue, call("mail.send", "ada@x"), Outcome.failed(long_error))
    for columns, width in ((None, 100), ("80", 80), ("200", 200)):
        if columns is None:
            monkeypatch.delenv("COLUMNS", raising=False)
        else:
            monkeypatch.setenv("COLUMNS", columns)
        lines = cli.lines("jobs", "--queue", "emails")
        assert max(len(line) for line in lines) == width, (columns, lines)
        error = lines[1].split("  ")[-1]  # the last column
        assert error.startswith("ValueError: xxx")
        assert error.endswith("x...")
    monkeypatch.delenv("COLUMNS")
    shown = cli.lines("job", str(job_id))
    assert f"    {long_error}" in shown


# -- job ------------------------------------------------------------------------------------------


def test_job_prints_every_field_then_the_payload_result_and_whole_traceback(
    cli: Cli, clock: Clock, store: durable.Store, emails: dict[str, int]
) -> None:
    job = store.job(emails["refused"])
    assert job is not None
    assert job.finished_at is not None
    clock.now = job.finished_at + timedelta(minutes=3, seconds=10)

    def moment(value: datetime | None) -> str:
        assert value is not None
        age = int((clock.now - value).total_seconds()) // 60  # type: ignore[operator]
        return f"{value.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%SZ} ({age}m ago)"

    assert cli.lines("job", str(job.id)) == [
        f"id                {job.id}",
        "queue             emails",
        "task              mail.send",
        "state             failed",
        "priority          0",
        "attempts          1 of 5",
        "resets            0",
        "snoozes           0",
        "key               -",
        "group             -",
        f"enqueued_at       {moment(job.enqueued_at)}",
        f"run_after         {moment(job.run_after)}",
        f"started_at        {moment(job.started_at)}",
        f"finished_at       {moment(job.finished_at)}",
        f"heartbeat_at      {moment(job.heartbeat_at)}",
        "worker            test-worker",
        "cancel_requested  no",
        "payload:",
        "    {",
        '      "task": "mail.send",',
        '      "args": [',
        '        "bob@x"',
        "      ],",
        '      "kwargs": {}',
        "    }",
        "result            -",
        "last_error:",
        *(f"    {line}" for line in TRACEBACK.splitlines()),
    ]
    sent = cli.lines("job", str(emails["sent"]))
    assert sent[sent.index("result:") + 1 :][:3] == ["    {", '      "id": "m1"', "    }"]
    assert sent[-1] == "last_error        -"


def test_job_json_is_the_job_s_document(
    cli: Cli, store: durable.Store, emails: dict[str, int]
) -> None:
    document = cli.json("job", str(emails["refused"]))
    assert list(document) == ["job"]
    assert document["job"] == cli.json("jobs", "--queue", "emails", "--state", "failed")["jobs"][1]


def test_job_of_an_id_the_store_has_not_fails_saying_so(cli: Cli, store: durable.Store) -> None:
    store.queue("emails").enqueue(1)
    assert (
        cli.fails("job", "99") == "the store has no job 99 (it may have been purged): check the id"
    )


# -- retry ----------------------------------------------------------------------------------------


def test_retry_of_ids_puts_failed_and_canceled_jobs_back_and_refuses_the_others(
    cli: Cli, store: durable.Store, emails: dict[str, int]
) -> None:
    queue = store.queue("emails")
    canceled = queue.enqueue("c")
    assert queue.cancel(canceled)
    ran = cli("retry", str(emails["refused"]), str(emails["waiting"]), str(canceled), "77")
    assert ran.code == 1
    assert ran.out.splitlines() == [
        f"retried job {emails['refused']} (queue emails, task mail.send): queued, due now, its "
        "attempts from 0",
        f"retried job {canceled} (queue emails): queued, due now, its attempts from 0",
    ]
    assert ran.err == (
        f"routines retry: error: job {emails['waiting']} is queued: retry takes only a job that "
        "is failed or canceled; the store has no job 77\n"
    )
    for job_id in (emails["refused"], canceled):
        job = queue.get(job_id)
        assert job is not None
        assert (job.state, job.attempts) == ("queued", 0)
    assert cli.json("retry", str(emails["bounced"])) == {
        "retried": [emails["bounced"]],
        "refused": [],
    }


def test_retry_json_of_a_job_that_is_not_retryable_says_why_and_exits_1(
    cli: Cli, emails: dict[str, int]
) -> None:
    ran = cli("retry", str(emails["sent"]), "--json")
    assert ran.code == 1
    assert json.loads(ran.out) == {
        "retried": [],
        "refused": [
            {
                "id": emails["sent"],
                "state": "completed",
                "reason": f"job {emails['sent']} is completed: retry takes only a job that is "
                "failed or canceled",
            }
        ],
    }
    assert ran.err.startswith(f"routines retry: error: job {emails['sent']} is completed")


def test_retry_of_a_job_whose_key_a_live_job_holds_says_so(cli: Cli, store: durable.Store) -> None:
    queue = store.queue("emails")
    old = queue.enqueue("first", key="welcome:ada")
    assert end_jobs(queue, Outcome.failed("no")) == [old]
    queue.enqueue("second", key="welcome:ada")
    assert cli.fails("retry", str(old)) == (
        f"job {old} was not retried: a live job (queued, errored or processing) holds its key "
        "'welcome:ada'"
    )


def test_retry_of_a_queue_puts_back_its_failed_jobs_or_the_states_asked(
    cli: Cli, store: durable.Store
) -> None:
    fill_jobs(store, 600, queue="emails", state="failed")
    fill_jobs(store, 3, queue="emails", state="canceled")
    assert cli.lines("retry", "--queue", "emails") == [
        "retried 600 jobs of queue emails that were failed: back to queued, due now"
    ]
    assert cli.json("retry", "--queue", "emails", "--state", "canceled", "failed") == {
        "queue": "emails",
        "states": ["canceled", "failed"],
        "count": 3,
    }
    counts = store.queue("emails").counts()
    assert (counts["queued"], counts["failed"], counts["canceled"]) == (603, 0, 0)
    assert cli.lines("retry", "--queue", "emails") == [
        "retried 0 jobs of queue emails that were failed: back to queued, due now"
    ]


def test_retry_of_a_queue_the_store_has_never_seen_fails_naming_its_queues(
    cli: Cli, emails: dict[str, int]
) -> None:
    assert cli.fails("retry", "--queue", "emial") == (
        "the store has no queue 'emial' (no job, no pause, no limits); its queues: 'emails'; "
        "did you mean 'emails'?"
    )


# -- cancel ---------------------------------------------------------------------------------------


def test_cancel_of_ids_cancels_waiting_jobs_asks_running_ones_and_refuses_ended_ones(
    cli: Cli, store: durable.Store, emails: dict[str, int]
) -> None:
    queue = store.queue("emails")
    running = claim_jobs(queue)[0].id  # the waiting job of `emails`
    waiting = queue.enqueue("w")
    ran = cli("cancel", str(waiting), str(running), str(emails["sent"]))
    assert ran.code == 1
    assert ran.out.splitlines() == [
        f"canceled job {waiting} (queue emails)",
        f"asked job {running} (queue emails, task mail.send) to stop: its handler is running; "
        "the job ends canceled when the handler returns",
    ]
    assert ran.err == (
        f"routines cancel: error: job {emails['sent']} is completed: cancel takes only a job "
        "that is queued, errored or processing\n"
    )
    job = queue.get(running)
    assert job is not None
    assert (job.state, job.cancel_requested) == ("processing", True)
    assert store.queue("emails").counts()["canceled"] == 1
    another = queue.enqueue("a")
    assert cli.json("cancel", str(another)) == {
        "canceled": [another],
        "stopping": [],
        "refused": [],
    }


def test_cancel_of_a_queue_cancels_the_jobs_of_the_states_given(
    cli: Cli, store: durable.Store
) -> None:
    queue = store.queue("emails")
    queue.enqueue_many(range(4))
    end_jobs(queue, Outcome.errored("boom", 3600.0))
    assert cli.lines("cancel", "--queue", "emails", "--state", "queued") == [
        "canceled 3 jobs of queue emails that were queued: canceled (a processing one ends "
        "canceled when its handler returns)"
    ]
    assert cli.json("cancel", "--queue", "emails", "--state", "errored", "processing") == {
        "queue": "emails",
        "states": ["errored", "processing"],
        "count": 1,
    }
    assert queue.counts()["canceled"] == 4
    assert "--queue needs --state" in cli.refuses("cancel", "--queue", "emails")


# -- run-now --------------------------------------------------------------------------------------


def test_run_now_makes_an_errored_job_due_at_once_its_attempts_untouched(
    cli: Cli, store: durable.Store
) -> None:
    queue = store.queue("emails")
    job_id = ended(queue, call("mail.send", "ada@x"), Outcome.errored("boom", 3600.0))
    assert claim_jobs(queue) == []  # due in an hour
    document = cli.json("run-now", str(job_id))
    assert list(document) == ["id", "queue", "run_after"]
    assert (document["id"], document["queue"]) == (job_id, "emails")
    assert datetime.fromisoformat(document["run_after"]) <= backend_of(store).now()
    claimed = claim_jobs(queue)
    assert [c.id for c in claimed] == [job_id]
    assert claimed[0].job.attempts == 2  # the errored attempt, and this one


def test_run_now_says_when_the_job_is_due_and_refuses_a_job_that_is_not_waiting(
    cli: Cli, clock: Clock, store: durable.Store, emails: dict[str, int]
) -> None:
    queue = store.queue("emails")
    waiting = queue.get(emails["waiting"])
    assert waiting is not None
    clock.now = waiting.run_after + timedelta(seconds=42)
    assert cli.lines("run-now", str(waiting.id)) == [
        f"job {waiting.id} (queue emails, task mail.send) is due at "
        f"{waiting.run_after.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%SZ} (42s ago); attempts "
        "so far: 0 of 5"
    ]
    assert cli.fails("run-now", str(emails["sent"])) == (
        f"job {emails['sent']} is completed: run-now makes due only a job that is queued or "
        "errored (waiting to run)"
    )
    assert cli.fails("run-now", "1234") == (
        "the store has no job 1234 (it may have been purged): check the id"
    )


# -- pause, resume --------------------------------------------------------------------------------


def test_pause_and_resume_a_queue_and_say_what_it_was(
    cli: Cli, store: durable.Store, emails: dict[str, int]
) -> None:
    queue = store.queue("emails")
    assert cli.lines("pause", "emails") == [
        "paused queue emails: no worker claims its jobs until 'routines resume emails'; running "
        "jobs finish"
    ]
    assert queue.paused
    assert claim_jobs(queue) == []
    assert cli.lines("pause", "emails") == ["queue emails was paused already"]
    assert cli.json("pause", "emails") == {"queue": "emails", "paused": True, "was_paused": True}
    assert cli.lines("resume", "emails") == [
        "resumed queue emails: its workers claim its jobs again"
    ]
    assert not queue.paused
    assert [c.id for c in claim_jobs(queue)] == [emails["waiting"]]
    assert cli.lines("resume", "emails") == ["queue emails was not paused"]
    assert cli.json("resume", "emails") == {"queue": "emails", "paused": False, "was_paused": False}
    assert {info.name: info.paused for info in store.queues()} == {"emails": False}


def test_pause_of_a_queue_the_store_has_never_seen_pauses_it_and_says_so_on_stderr(
    cli: Cli, store: durable.Store, emails: dict[str, int]
) -> None:
    ran = cli("pause", "emial")
    assert ran.code == 0
    assert ran.out.startswith("paused queue emial: ")
    assert ran.err == (
        "routines pause: note: the store has no queue 'emial' (no job, no pause, no limits); its "
        "queues: 'emails'; did you mean 'emails'?; the new queue 'emial' is paused\n"
    )
    assert store.queue("emial").paused
    assert not store.queue("emails").paused


def test_resume_of_a_queue_the_store_has_never_seen_fails(cli: Cli, emails: dict[str, int]) -> None:
    assert cli.fails("resume", "emial").startswith("the store has no queue 'emial'")


# -- limits -------------------------------------------------------------------------------------


NO_LIMITS = {"max_running": None, "group_running": None, "rate": None}


def test_the_largest_limit_is_the_store_s() -> None:
    assert jobs_commands._MOST == INT32_MAX


def test_limits_shows_a_queue_s_limits_and_none_as_a_dash(
    cli: Cli, store: durable.Store, emails: dict[str, int]
) -> None:
    assert cli.lines("limits", "emails") == [
        "queue          emails",
        "max_running    -",
        "group_running  -",
        "rate           -",
    ]
    assert cli.json("limits", "emails") == {"queue": "emails", "limits": NO_LIMITS}
    store.queue("emails").set_limits(max_running=5, group_running=1, rate=(10, 1.5))
    assert cli.lines("limits", "emails") == [
        "queue          emails",
        "max_running    5",
        "group_running  1",
        "rate           10/1.5s (at most 10 starts in any 1.5s)",
    ]
    assert cli.json("limits", "emails") == {
        "queue": "emails",
        "limits": {
            "max_running": 5,
            "group_running": 1,
            "rate": {"count": 10, "per_seconds": 1.5},
        },
    }


def test_limits_with_options_changes_only_the_limits_named(
    cli: Cli, store: durable.Store, emails: dict[str, int]
) -> None:
    queue = store.queue("emails")
    assert cli.lines("limits", "emails", "--max-running", "5") == [
        "limits of queue emails: max 5 (were: none); every worker of the fleet claims under them "
        "from its next claim on"
    ]
    assert queue.limits == durable.QueueLimits(max_running=5)
    assert cli.lines("limits", "emails", "--rate", "10/1", "--group-running", "1") == [
        "limits of queue emails: max 5, group 1, 10/1s (were: max 5); every worker of the fleet "
        "claims under them from its next claim on"
    ]
    assert queue.limits == durable.QueueLimits(max_running=5, group_running=1, rate=(10, 1.0))
    assert cli.json("limits", "emails", "--max-running", "2", "--rate", "600/1m") == {
        "queue": "emails",
        "limits": {
            "max_running": 2,
            "group_running": 1,
            "rate": {"count": 600, "per_seconds": 60.0},
        },
        "previous": {
            "max_running": 5,
            "group_running": 1,
            "rate": {"count": 10, "per_seconds": 1.0},
        },
    }
    assert queue.limits == durable.QueueLimits(max_running=2, group_running=1, rate=(600, 60.0))
    assert cli.lines("limits", "emails", "--group-running", "1") == [
        "queue emails had these limits already: max 2, group 1, 600/60s"
    ]


def test_limits_clear_removes_every_limit_or_every_one_but_those_named(
    cli: Cli, store: durable.Store, emails: dict[str, int]
) -> None:
    queue = store.queue("emails")
    queue.set_limits(max_running=5, group_running=1, rate=(10, 1))
    assert cli.lines("limits", "emails", "--clear", "--rate", "5/0.5") == [
        "limits of queue emails: 5/0.5s (were: max 5, group 1, 10/1s); every worker of the fleet "
        "claims under them from its next claim on"
    ]
    assert queue.limits == durable.QueueLimits(rate=(5, 0.5))
    assert cli.lines("limits", "emails", "--clear") == [
        "removed the limits of queue emails (were: 5/0.5s): its workers claim without them from "
        "their next claim on"
    ]
    assert queue.limits == durable.QueueLimits()
    assert not queue.limits.limited
    assert cli.json("limits", "emails", "--clear") == {
        "queue": "emails",
        "limits": NO_LIMITS,
        "previous": NO_LIMITS,
    }
    assert cli.lines("limits", "emails", "--clear") == ["queue emails had no limits"]


def test_limits_of_a_queue_the_store_has_never_seen_fails_unless_it_sets_one(
    cli: Cli, store: durable.Store, emails: dict[str, int]
) -> None:
    unknown = (
        "the store has no queue 'emial' (no job, no pause, no limits); its queues: 'emails'; "
        "did you mean 'emails'?"
    )
    assert cli.fails("limits", "emial") == unknown
    assert cli.fails("limits", "emial", "--clear") == unknown
    ran = cli("limits", "emial", "--max-running", "3")
    assert ran.code == 0, ran
    assert ran.out.startswith("limits of queue emial: max 3 (were: none); ")
    assert ran.err == f"routines limits: note: {unknown}; the new queue 'emial' is limited\n"
    assert store.queue("emial").limits == durable.QueueLimits(max_running=3)
    assert [info.name for info in store.queues()] == ["emails", "emial"]
    assert cli.lines("limits", "emial", "--max-running", "4") == [
        "limits of queue emial: max 4 (were: max 3); every worker of the fleet claims under them "
        "from its next claim on"
    ]  # a queue with limits is known: no note
    assert store.queue("emails").limits == durable.QueueLimits()


# -- purge ----------------------------------------------------------------------------------------


def test_purge_deletes_the_jobs_that_ended_longer_ago_than_asked(
    cli: Cli, store: durable.Store, emails: dict[str, int]
) -> None:
    queue = store.queue("emails")
    assert cli.lines("purge", "--queue", "emails", "--older-than", "7d") == [
        "deleted 0 jobs of queue emails (completed, failed, canceled) that ended more than 7d ago"
    ]
    assert queue.counts()["failed"] == 2
    assert cli.json("purge", "--queue", "emails", "--older-than", "0", "--state", "failed") == {
        "queue": "emails",
        "states": ["failed"],
        "older_than": 0.0,
        "count": 2,
    }
    assert cli.lines("purge", "--queue", "emails", "--older-than", "0s") == [
        "deleted 1 job of queue emails (completed, failed, canceled) that ended more than 0s ago"
    ]
    assert store.job(emails["sent"]) is None
    assert queue.counts()["queued"] == 1
    assert cli.fails("purge", "--queue", "emial", "--older-than", "1h").startswith(
        "the store has no queue 'emial'"
    )


# -- arguments and stores -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["purge", "--queue", "q"], "the following arguments are required: --older-than"),
        (["purge", "--older-than", "1d"], "the following arguments are required: --queue"),
        (["purge", "--queue", "q", "--older-than", "7x"], "--older-than: must be a length of time"),
        (
            ["purge", "--queue", "q", "--older-than=-1d"],
            "--older-than: must be a length of time",
        ),
        (["purge", "--queue", "q", "--older-than", "1d", "--state", "queued"], "invalid choice"),
        (["jobs", "--limit", "0"], "--limit: must be a whole number of at least 1, got '0'"),
        (
            ["jobs", "--limit", "1001"],
            "--limit: must be at most 1000 (page on with --before), got '1001'",
        ),
        (["jobs", "--before", "x"], "--before: must be a job id"),
        (["jobs", "--state", "done"], "--state: invalid choice: 'done'"),
        (["job"], "the following arguments are required: ID"),
        (["job", "0"], "ID: must be a job id (a whole number of at least 1), got '0'"),
        (["job", str(2**63)], "ID: must be a job id"),
        (["retry"], "give one or more job IDs, or --queue Q for every job of a queue"),
        (["retry", "1", "--queue", "q"], "give job IDs or --queue, not both"),
        (["retry", "1", "--state", "failed"], "--state goes with --queue"),
        (["retry", "--queue", "q", "--state", "queued"], "--state: invalid choice: 'queued'"),
        (["cancel"], "give one or more job IDs, or --queue Q"),
        (["cancel", "--queue", "q", "--state", "completed"], "invalid choice: 'completed'"),
        (["run-now"], "the following arguments are required: ID"),
        (["run-now", "1", "2"], "unrecognized arguments: 2"),
        (["pause"], "the following arguments are required: Q"),
        (["resume", "a", "b"], "unrecognized arguments: b"),
        (["limits"], "the following arguments are required: Q"),
        (["limits", "q", "--max-running", "0"], "--max-running: must be a whole number of at"),
        (["limits", "q", "--group-running", "x"], "--group-running: must be a whole number of"),
        (
            ["limits", "q", "--max-running", str(2**31)],
            "--max-running: must be at most 2147483647, got '2147483648'",
        ),
        (["limits", "q", "--rate", "10"], "--rate: must be COUNT/SECONDS, a whole number of"),
        (["limits", "q", "--rate", "10/0"], "--rate: must be COUNT/SECONDS"),
        (["limits", "q", "--rate", "0/1"], "--rate: must be COUNT/SECONDS"),
        (["limits", "q", "--rate", "1.5/1"], "--rate: must be COUNT/SECONDS"),
        (["limits", "q", "--rate", "10/-1"], "--rate: must be COUNT/SECONDS"),
        (["limits", "q", "--rate", "10/soon"], "--rate: must be COUNT/SECONDS"),
        (["limits", "q", "--rate", f"{2**31}/1"], "--rate: must be COUNT/SECONDS"),
        (["limits", "q", "--rate", "1/99999999999d"], "--rate: must be COUNT/SECONDS"),
    ],
)
def test_bad_arguments_are_usage_errors_with_exit_status_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    ran = Cli(capsys)(*argv)
    assert ran.code == 2, ran
    assert ran.out == ""
    assert ran.err.startswith("usage: routines ")
    assert message in ran.err


def test_a_queue_name_the_library_refuses_is_one_line_and_exit_status_1(cli: Cli) -> None:
    line = cli.fails("jobs", "--queue", "q" * 201)
    assert line.startswith("ValueError: name must be at most 200 characters, got 201: ")


@pytest.mark.parametrize(
    "command",
    [
        "queues",
        "jobs",
        "job 1",
        "retry 1",
        "pause q",
        "limits q",
        "purge --queue q --older-than 1d",
    ],
)
def test_a_store_that_is_not_given_or_cannot_be_opened_is_one_line_and_exit_status_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.delenv("ROUTINES_STORE_URL", raising=False)
    cli = Cli(capsys)
    assert cli.fails(*command.split()).startswith(
        "no store given: pass --store URL or set ROUTINES_STORE_URL"
    )
    assert cli.fails(*command.split(), "--store", "mysql://db/app").startswith(
        "cannot open the store: ValueError: url must start with one of the supported schemes"
    )


def test_a_store_whose_database_does_not_answer_is_one_line_and_exit_status_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = Cli(capsys).fails("queues", "--store", "postgresql://postgres:secret@127.0.0.1:1/test")
    assert line.startswith("cannot open the store: StoreUnavailable: ")
    assert "check that the database is up" in line
    assert "secret" not in line


# -- through the console script -------------------------------------------------------------------


def script(target: Target, *argv: str, columns: str = "100") -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ROUTINES_STORE_URL": target.url,
        "ROUTINES_STORE_SCHEMA": target.schema,
        "COLUMNS": columns,
    }
    return subprocess.run(
        [str(SCRIPT), *argv], env=env, capture_output=True, text=True, timeout=WAIT, check=False
    )


def test_the_console_script_lists_retries_and_exits_as_section_6_says(
    target: Target, store: durable.Store, emails: dict[str, int]
) -> None:
    listed = script(target, "jobs", "--queue", "emails", "--state", "failed", "--json")
    assert (listed.returncode, listed.stderr) == (0, "")
    document: dict[str, Any] = json.loads(listed.stdout)
    assert [job["id"] for job in document["jobs"]] == [emails["bounced"], emails["refused"]]
    shown = script(target, "job", str(emails["refused"]))
    assert shown.returncode == 0
    assert shown.stdout.splitlines()[-1] == "    " + TRACEBACK.splitlines()[-1]
    retried = script(target, "retry", "--queue", "emails")
    assert retried.returncode == 0
    assert (
        retried.stdout
        == "retried 2 jobs of queue emails that were failed: back to queued, due now\n"
    )
    unknown = script(target, "jobs", "--queue", "nope")
    assert (unknown.returncode, unknown.stdout) == (1, "")
    assert unknown.stderr.startswith("routines jobs: error: the store has no queue 'nope'")
    usage = script(target, "purge", "--queue", "emails", "--older-than", "soon")
    assert usage.returncode == 2
    assert "--older-than: must be a length of time" in usage.stderr
    assert "Traceback" not in listed.stderr + shown.stderr + unknown.stderr + usage.stderr


def test_a_reader_that_is_gone_ends_the_listing_with_status_1_and_no_traceback(
    target: Target, store: durable.Store, emails: dict[str, int]
) -> None:
    env = {**os.environ, "ROUTINES_STORE_URL": target.url, "ROUTINES_STORE_SCHEMA": target.schema}
    for options in ((), ("--json",)):
        read_end, write_end = os.pipe()
        os.close(read_end)  # as `| head -1` once it has its line: every write is refused
        try:
            listing = subprocess.run(
                [str(SCRIPT), "jobs", "--queue", "emails", *options],
                env=env,
                stdout=write_end,
                stderr=subprocess.PIPE,
                text=True,
                timeout=WAIT,
                check=False,
            )
        finally:
            os.close(write_end)
        assert (listing.returncode, listing.stderr) == (1, ""), options
