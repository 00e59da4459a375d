"""`Tasks` and `Task` (`_tasks.py`) in this process: declaring tasks and the rules of their
names, enqueueing calls (their options, their arguments as JSON, all or none), `Job.task`, and
the workers that run them: `job=`, `Retry`/`Fail`, an unknown task retried, not failed. (Real
processes under `routines worker`: test_cli.py.)"""

from __future__ import annotations

import functools
import importlib.machinery
import sqlite3
import sys
import types
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from routines import durable

from .conftest import Target
from .support import path_of, poll, write_lock
from helpers import Started

FAST = {"poll_interval": 0.05, "heartbeat_interval": 0.1, "stalled_after": 1.5}


def module_level(a: int, b: int = 0) -> int:
    """Adds."""
    return a + b


@pytest.fixture
def store(target: Target) -> durable.Store:
    return target.open(timeout=1.0)


@pytest.fixture
def sqlite_store(sqlite_target: Target) -> durable.Store:
    return sqlite_target.open(timeout=1.0)


@pytest.fixture
def tasks(sqlite_store: durable.Store) -> durable.Tasks:
    return durable.Tasks(sqlite_store, queue="calls")


def nothing_written(store: durable.Store, *queues: str) -> bool:
    return all(set(store.queue(name).counts().values()) == {0} for name in queues)


def job_of(store: durable.Store, queue: str, job_id: int) -> durable.Job:
    job = store.queue(queue).get(job_id)
    assert job is not None
    return job


def wait_until(store: durable.Store, queue: str, job_id: int, *states: str) -> durable.Job:
    """The job once it is in one of `states` (a bounded poll of the database)."""

    def check() -> durable.Job | None:
        job = store.queue(queue).get(job_id)
        return job if job is not None and job.state in states else None

    job = poll(check)
    assert job is not None, f"job {job_id} not {states}: {store.queue(queue).get(job_id)}"
    return job


# -- declaring ------------------------------------------------------------------------------------


def test_a_plain_call_runs_the_function_here_and_enqueues_nothing(tasks: durable.Tasks) -> None:
    add = tasks.task(module_level)
    assert add(2, b=3) == 5
    assert nothing_written(tasks.store, "calls")


def test_the_default_name_is_module_and_qualname_and_the_task_wraps_the_function(
    tasks: durable.Tasks,
) -> None:
    add = tasks.task(module_level)
    assert add.name == f"{module_level.__module__}.module_level"
    assert (add.__name__, add.__doc__, add.__wrapped__) == ("module_level", "Adds.", module_level)
    assert add.queue.name == "calls"
    assert repr(add) == f"<Task {add.name!r} on queue 'calls'>"


def test_name_and_queue_given_to_the_decorator(tasks: durable.Tasks) -> None:
    @tasks.task(name="reports.build", queue="reports")
    def build(day: str) -> dict[str, int]:
        return {day: 1}

    assert (build.name, build.queue.name) == ("reports.build", "reports")
    assert build("mon") == {"mon": 1}


def test_two_tasks_with_one_name_in_one_registry_are_refused(tasks: durable.Tasks) -> None:
    tasks.task(name="send")(module_level)
    with pytest.raises(ValueError, match=r"name 'send' is already a task of this Tasks"):
        tasks.task(name="send")(print)
    tasks.task(module_level)
    with pytest.raises(ValueError, match=r"already a task .*module_level.*pass another name="):
        tasks.task(module_level)  # the same default name again
    other = durable.Tasks(tasks.store)
    assert other.task(name="send")(module_level).name == "send"  # another registry: its own


@pytest.mark.parametrize("name", ["", "x" * 201, 5, b"send"])
def test_a_name_that_is_not_a_non_empty_str_of_at_most_200_characters_is_refused(
    tasks: durable.Tasks, name: object
) -> None:
    with pytest.raises(ValueError, match=r"name must be a non-empty str of at most 200 char"):
        tasks.task(name=name)(module_level)  # type: ignore[call-overload]
    assert tasks.task(name="x" * 200)(module_level).name == "x" * 200


def test_a_lambda_without_a_name_is_refused_and_with_one_is_a_task(tasks: durable.Tasks) -> None:
    with pytest.raises(ValueError, match=r"<lambda>.* is a lambda, .*pass name="):
        tasks.task(lambda: 1)
    assert tasks.task(name="one")(lambda: 1)() == 1


def test_a_nested_function_a_partial_or_a_callable_object_needs_a_name(
    tasks: durable.Tasks,
) -> None:
    def nested() -> None: ...

    class Callable_:
        def __call__(self) -> None: ...

    for fn in (nested, functools.partial(module_level, 1), Callable_()):
        with pytest.raises(ValueError, match=r"pass name="):
            tasks.task(fn)
        tasks.task(name=f"named-{id(fn)}")(fn)


def test_a_function_of_a_script_run_directly_needs_a_name_unless_run_with_dash_m(
    tasks: durable.Tasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    def script_function() -> None: ...

    script_function.__module__ = "__main__"
    script_function.__qualname__ = "script_function"
    main = types.ModuleType("__main__")
    main.__spec__ = None  # python app.py
    monkeypatch.setitem(sys.modules, "__main__", main)
    with pytest.raises(ValueError, match=r"a script run as a program .* pass name="):
        tasks.task(script_function)
    main.__spec__ = importlib.machinery.ModuleSpec("app.jobs", None)  # python -m app.jobs
    assert tasks.task(script_function).name == "app.jobs.script_function"


def test_a_coroutine_function_is_refused_naming_fn(tasks: durable.Tasks) -> None:
    async def send() -> None: ...

    class Async:
        async def __call__(self) -> None: ...

    for fn in (send, functools.partial(send), Async()):
        with pytest.raises(TypeError, match=r"fn must be a plain function, not an async one"):
            tasks.task(name="send")(fn)


def test_what_is_not_callable_is_refused_naming_fn(tasks: durable.Tasks) -> None:
    with pytest.raises(TypeError, match=r"fn must be callable, got 5"):
        tasks.task(5)  # type: ignore[call-overload]


def test_bad_options_of_the_decorator_are_refused_at_decoration(tasks: durable.Tasks) -> None:
    with pytest.raises(TypeError, match=r"priority must be an int, got 'high'"):
        tasks.task(name="a", priority="high")(module_level)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match=r"max_attempts must be >= 1, got 0"):
        tasks.task(name="b", max_attempts=0)(module_level)
    with pytest.raises(TypeError, match=r"retries is not an enqueue option: the options are"):
        tasks.task(name="c", retries=3)(module_level)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match=r"queue must be a queue name: name must not be empty"):
        tasks.task(name="d", queue="")(module_level)
    with pytest.raises(TypeError, match=r"store must be a durable store"):
        durable.Tasks("sqlite:///jobs.db")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"queue must be a queue name: name must be a str"):
        durable.Tasks(tasks.store, queue=5)  # type: ignore[arg-type]
    tasks.task(module_level)  # none of the refused ones was registered
    assert nothing_written(tasks.store, "calls")


def test_declaring_and_configuring_need_no_database(sqlite_target: Target) -> None:
    store = sqlite_target.open(timeout=0.2)
    tasks = durable.Tasks(store)
    with write_lock(path_of(sqlite_target)):  # a write would wait 0.2 s, then raise
        add = tasks.task(module_level)
        add.configure(priority=3, key="k")
        tasks.task(name="b", delay=5)(module_level)


# -- enqueueing -----------------------------------------------------------------------------------


def test_enqueue_stores_the_call_as_a_task_payload(store: durable.Store) -> None:
    tasks = durable.Tasks(store)
    add = tasks.task(module_level)
    job = job_of(store, "default", add.enqueue(2, b=3))
    assert job.payload == {"task": add.name, "args": [2], "kwargs": {"b": 3}}
    assert (job.task, job.state, job.priority, job.max_attempts) == (add.name, "queued", 0, 5)


def test_configure_defaults_come_from_the_decorator(store: durable.Store) -> None:
    tasks = durable.Tasks(store)
    build = tasks.task(name="build", queue="reports", priority=5, max_attempts=3)(module_level)
    plain = job_of(store, "reports", build.enqueue(1))
    assert (plain.priority, plain.max_attempts, plain.key) == (5, 3, None)
    keyed = build.configure(key="day:1", priority=9)
    first = job_of(store, "reports", keyed.enqueue(1))
    assert (first.priority, first.max_attempts, first.key) == (9, 3, "day:1")
    assert keyed.enqueue(1) == first.id  # the key de-duplicates, as in Queue.enqueue
    later = job_of(store, "reports", build.configure(delay=60).configure(priority=1).enqueue(2))
    assert (later.priority, later.max_attempts) == (1, 3)
    assert later.run_after - later.enqueued_at == timedelta(seconds=60)


def test_run_at_given_to_configure_replaces_a_delay_from_the_decorator(
    store: durable.Store,
) -> None:
    tasks = durable.Tasks(store)
    later = tasks.task(name="later", delay=60)(module_level)
    when = datetime(2100, 1, 1, tzinfo=timezone.utc)
    assert job_of(store, "default", later.configure(run_at=when).enqueue(1)).run_after == when
    with pytest.raises(ValueError, match=r"pass delay or run_at, not both"):
        later.configure(run_at=when, delay=1)


def test_bad_configure_options_are_refused_at_configure(tasks: durable.Tasks) -> None:
    add = tasks.task(module_level)
    with pytest.raises(TypeError, match=r"delay must be a non-negative number of seconds"):
        add.configure(delay="soon")  # type: ignore[typeddict-item]
    with pytest.raises(ValueError, match=r"key must not be empty"):
        add.configure(key="")
    with pytest.raises(TypeError, match=r"connection must be"):
        add.configure(connection=object())  # type: ignore[arg-type]


def test_arguments_that_do_not_fit_the_function_are_refused_and_nothing_is_written(
    tasks: durable.Tasks,
) -> None:
    add = tasks.task(module_level)
    with pytest.raises(TypeError, match=r"arguments of task .* do not fit its signature .*'a'"):
        add.enqueue(b=1)
    with pytest.raises(TypeError, match=r"do not fit its signature .* unexpected keyword"):
        add.enqueue(1, c=2)
    assert nothing_written(tasks.store, "calls")


def test_arguments_that_are_not_json_are_refused_naming_args_or_kwargs(
    tasks: durable.Tasks,
) -> None:
    @tasks.task(name="send")
    def send(*args: object, **kwargs: object) -> None: ...

    with pytest.raises(TypeError, match=r"args\[1\] of task 'send' must be a JSON value"):
        send.enqueue("a", object())
    with pytest.raises(TypeError, match=r"kwargs\['subject'\] of task 'send' must be a JSON va"):
        send.enqueue("a", subject={1, 2})
    with pytest.raises(TypeError, match=r"args\[0\] .* must be a JSON value .*nan"):
        send.enqueue(float("nan"))
    with pytest.raises(TypeError, match=r"calls\[1\]: kwargs\['to'\] of task 'send' must be"):
        send.enqueue_many([(("a",), {}), ((), {"to": b"bytes"})])
    assert nothing_written(tasks.store, "calls")


def test_job_is_not_an_argument_to_enqueue_when_the_worker_passes_it(
    tasks: durable.Tasks,
) -> None:
    @tasks.task(name="send")
    def send(to: str, *, job: durable.Job) -> None: ...

    with pytest.raises(TypeError, match=r"job is not an argument to enqueue: the worker pas"):
        send.enqueue("a", job=None)
    assert send.enqueue("a") > 0  # job is not a missing argument either


def test_enqueue_many_stores_every_call_in_order_or_none(store: durable.Store) -> None:
    tasks = durable.Tasks(store)
    add = tasks.task(module_level)
    ids = add.enqueue_many([((1,), {}), ([2], {"b": 3}), ((4, 5), {})])
    jobs = [job_of(store, "default", job_id) for job_id in ids]
    assert [(job.payload["args"], job.payload["kwargs"]) for job in jobs] == [
        ([1], {}),
        ([2], {"b": 3}),
        ([4, 5], {}),
    ]
    with pytest.raises(TypeError, match=r"calls\[2\]: arguments of task .* do not fit"):
        add.enqueue_many([((1,), {}), ((2,), {}), ((), {})])
    assert store.queue("default").counts()["queued"] == 3  # none of the second batch
    assert add.enqueue_many([]) == []
    configured = add.configure(priority=7).enqueue_many([((1,), {})])
    assert job_of(store, "default", configured[0]).priority == 7


@pytest.mark.parametrize(
    "calls",
    [[(1,)], [((1,), {}, {})], [("abc", {})], [((1,), [])], [((1,), {1: 2})]],
)
def test_enqueue_many_refuses_what_is_not_an_args_kwargs_pair(
    tasks: durable.Tasks, calls: object
) -> None:
    add = tasks.task(module_level)
    with pytest.raises(TypeError, match=r"calls\[0\] must be an \(args, kwargs\) pair"):
        add.enqueue_many(calls)  # type: ignore[arg-type]
    for not_calls in ("abc", {"a": 1}, 5):
        with pytest.raises(TypeError, match=r"calls must be an iterable of \(args, kwargs\)"):
            add.enqueue_many(not_calls)  # type: ignore[arg-type]
    assert nothing_written(tasks.store, "calls")


def test_job_task_is_the_name_of_a_payload_of_exactly_the_task_shape(
    sqlite_store: durable.Store,
) -> None:
    queue = sqlite_store.queue("q")
    by_hand = queue.enqueue({"task": "t", "args": [], "kwargs": {}})  # whoever enqueued it
    assert job_of(sqlite_store, "q", by_hand).task == "t"
    for payload in (
        {"task": "t", "args": [], "kwargs": {}, "more": 1},
        {"task": "t", "args": {}, "kwargs": {}},
        {"task": "t", "args": [], "kwargs": []},
        {"task": 5, "args": [], "kwargs": {}},
        {"task": "t", "args": []},
        ["t", [], {}],
        "t",
        None,
    ):
        assert job_of(sqlite_store, "q", queue.enqueue(payload)).task is None, payload


# -- running --------------------------------------------------------------------------------------


def test_the_worker_runs_each_task_and_stores_its_result(
    store: durable.Store, run: Callable[..., Started]
) -> None:
    tasks = durable.Tasks(store)
    add = tasks.task(module_level)

    @tasks.task(name="shout", queue="other")
    def shout(text: str, *, times: int = 1) -> str:
        return text.upper() * times

    worker = tasks.worker(**FAST)
    assert worker.name == "tasks[default, other]"
    run(worker)
    first, second = add.enqueue(2, b=3), shout.enqueue("hi", times=2)
    assert wait_until(store, "default", first, "completed").result == 5
    assert wait_until(store, "other", second, "completed").result == "HIHI"


def test_a_handler_that_takes_job_gets_its_job(
    store: durable.Store, run: Callable[..., Started]
) -> None:
    tasks = durable.Tasks(store)
    seen: list[durable.Job] = []

    @tasks.task(name="send")
    def send(to: str, *, job: durable.Job) -> str:
        seen.append(job)
        if job.attempts == 1:
            raise durable.Retry(after=0)
        return f"{to} on attempt {job.attempts}"

    run(tasks.worker(**FAST))
    job_id = send.enqueue("ada")
    job = wait_until(store, "default", job_id, "completed", "failed")
    assert (job.state, job.result) == ("completed", "ada on attempt 2")
    assert [(each.id, each.attempts, each.task) for each in seen] == [
        (job_id, 1, "send"),
        (job_id, 2, "send"),
    ]


def test_fail_in_a_task_fails_its_job_at_once(
    store: durable.Store, run: Callable[..., Started]
) -> None:
    tasks = durable.Tasks(store)

    @tasks.task(name="refuse")
    def refuse() -> None:
        raise durable.Fail("no such customer")

    run(tasks.worker(**FAST))
    job = wait_until(store, "default", refuse.enqueue(), "completed", "failed")
    assert (job.state, job.attempts, job.last_error) == ("failed", 1, "no such customer")


def test_an_unknown_task_is_errored_naming_it_then_run_by_a_worker_that_knows_it(
    store: durable.Store,
) -> None:
    newer = durable.Tasks(store)  # a newer deploy's registry, and its task

    @newer.task(name="reports.build")
    def build(day: str) -> str:
        return f"built {day}"

    job_id = build.enqueue("mon")
    older = durable.Tasks(store)
    older.task(name="other")(module_level)
    old_worker = Started(older.worker(retry_backoff=0.2, **FAST))
    try:
        job = wait_until(store, "default", job_id, "errored", "failed")
        assert job.state == "errored"
        assert job.last_error is not None
        assert "unknown task 'reports.build'" in job.last_error
        assert "retried" in job.last_error
    finally:
        assert old_worker.stop() is None
    new_worker = Started(newer.worker(**FAST))
    try:
        done = wait_until(store, "default", job_id, "completed", "failed")
    finally:
        assert new_worker.stop() is None
    assert (done.state, done.result) == ("completed", "built mon")
    assert done.attempts >= 2  # the old worker's attempts were errored, none failed it


def test_a_payload_that_is_not_a_task_call_is_errored_saying_so(
    store: durable.Store, run: Callable[..., Started]
) -> None:
    tasks = durable.Tasks(store)
    tasks.task(module_level)
    run(tasks.worker(retry_backoff=60, **FAST))
    job = wait_until(store, "default", store.queue("default").enqueue({"to": "ada"}), "errored")
    assert job.last_error is not None
    assert "is not a task call: its payload is {'to': 'ada'}" in job.last_error


def test_worker_works_the_queues_of_the_tasks_or_only_those_named(
    tasks: durable.Tasks,
) -> None:
    with pytest.raises(ValueError, match=r"this Tasks has no tasks: declare some with @tasks"):
        tasks.worker()
    tasks.task(name="a")(module_level)
    tasks.task(name="b", queue="other")(module_level)
    assert tasks.worker(queues=["other"]).name == "tasks[other]"
    with pytest.raises(ValueError, match=r"queues names 'nope', which none of the tasks uses: "):
        tasks.worker(queues=["nope"])
    with pytest.raises(TypeError, match=r"queues must be a list of queue names or None"):
        tasks.worker(queues="other")
    with pytest.raises(ValueError, match=r"queues must name at least one queue"):
        tasks.worker(queues=[])
    with pytest.raises(ValueError, match=r"concurrency must be >= 1, got 0"):
        tasks.worker(concurrency=0)


def test_configure_enqueues_in_the_apps_transaction(tmp_path: Path) -> None:
    # The same connection= as Queue.enqueue (tests/durable/test_app_transactions.py).
    url = f"sqlite:///{tmp_path}/store.db"
    with durable.open_store(url) as store:
        tasks = durable.Tasks(store)

        @tasks.task(name="mail.send")
        def send(to: str) -> None: ...

        app = sqlite3.connect(tmp_path / "store.db")
        try:
            job_id = send.configure(connection=app).enqueue("ada")
            app.rollback()
            assert store.queue("default").get(job_id) is None
            job_id = send.configure(connection=app).enqueue("bob")
            app.commit()
            job = store.queue("default").get(job_id)
            assert job is not None
            assert (job.task, job.payload["args"]) == ("mail.send", ["bob"])
        finally:
            app.close()


def test_a_connection_is_refused_as_a_tasks_default(store: durable.Store) -> None:
    tasks = durable.Tasks(store)
    with pytest.raises(TypeError, match=r"connection is an option of a call, not of a task"):
        tasks.task(name="x", connection=None)(lambda: None)
