"""`Tasks` and `Task`: functions whose calls are jobs on durable queues (spec/OPERATIONS.md, 1).

`@tasks.task` makes a function a `Task`. A plain call still runs it where it is called;
`task.enqueue(*args, **kwargs)` stores the call as a job whose payload is
`{"task": name, "args": [...], "kwargs": {...}}`, and `tasks.worker()` is a routine of
`QueueWorker`s that run such jobs by looking their task up by name.

Built on the public face of queues and workers only: a task writes through `Queue.enqueue` and
`Queue.enqueue_many`, and runs under a `QueueWorker`, so whatever the store promises about a job
it promises about a task's.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Generic, TypedDict, TypeVar, overload

from typing_extensions import ParamSpec, Unpack, final

from .._combined import CombinedRoutine
from .._status import describe_error, describe_value, error_text
from .._validate import check_callable, fleet_name
from ._model import Job
from ._queue import Queue
from ._store import Store
from ._worker import QueueWorker

if TYPE_CHECKING:
    from ._queue import AppConnection

__all__ = ["EnqueueOptions", "Task", "Tasks", "WorkerOptions"]

P = ParamSpec("P")
R = TypeVar("R")

MAX_TASK_NAME: Final = 200  # characters, like queue names and keys


class EnqueueOptions(TypedDict, total=False):
    """The options of `Queue.enqueue` a task passes on; a new one is a line here."""

    delay: float | timedelta | None
    run_at: datetime | None
    priority: int
    max_attempts: int
    key: str | None
    group: str | None
    # configure() only: the app's own connection, to enqueue in its transaction
    connection: AppConnection | None


class WorkerOptions(TypedDict, total=False):
    """The options of `QueueWorker` that `Tasks.worker` gives each of its workers."""

    concurrency: int
    poll_interval: float | timedelta
    heartbeat_interval: float | timedelta
    stalled_after: float | timedelta
    max_resets: int
    max_runtime: float | timedelta | None
    retry_backoff: float | timedelta
    max_retry_backoff: float | timedelta
    liveness: bool


_OPTION_NAMES: Final = ", ".join(EnqueueOptions.__annotations__)
# Options that say the same thing two ways: setting one drops the other's default.
_ALTERNATIVES: Final = {"delay": "run_at", "run_at": "delay"}


class UnknownTask(LookupError):
    """A job names a task this worker's `Tasks` does not have: it is retried elsewhere."""


class NotATaskCall(ValueError):
    """A job on a tasks' queue whose payload is not a task call."""


@final
class Tasks:
    """A registry of tasks on one store: `@tasks.task` declares one, `tasks.worker()` runs them.

    `queue` is the queue of the tasks that name none. One registry per app and queue: a worker
    meets the tasks of another registry on its queues as unknown ones.
    """

    def __init__(self, store: Store, *, queue: str = "default") -> None:
        if not isinstance(store, Store):
            msg = (
                "store must be a durable store (durable.open_store(url)), "
                f"got {describe_value(store)}"
            )
            raise TypeError(msg)
        self.store = store
        self.queue: str = _queue(store, queue).name
        self._lock = threading.Lock()
        self._tasks: dict[str, Task[Any, Any]] = {}

    def __repr__(self) -> str:
        with self._lock:
            count = len(self._tasks)
        return f"<Tasks on {self.store!r}, queue {self.queue!r}, {count} tasks>"

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(
        self,
        fn: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Declare `fn` a task, as `@tasks.task` or `@tasks.task(name=..., queue=..., ...)`.

        `name` (default `f"{module}.{qualname}"`) is the task's identity across processes: the
        enqueuer and the worker must agree on it. `queue` defaults to the registry's. The other
        options (`delay`, `run_at`, `priority`, `max_attempts`, `key`, `group`) are the defaults of
        every enqueue of this task, as `Queue.enqueue` takes them.
        """
        if fn is None:
            return lambda given: self._declare(given, name, queue, options)
        return self._declare(fn, name, queue, options)

    def worker(
        self, *, queues: Iterable[str] | None = None, **options: Unpack[WorkerOptions]
    ) -> CombinedRoutine:
        """A routine that runs the tasks: one `QueueWorker` for every queue one of the tasks
        uses (or only those of `queues`), each with `options` (`concurrency`, ...)."""
        with self._lock:
            used = list(dict.fromkeys(task.queue.name for task in self._tasks.values()))
        if not used:
            msg = (
                "this Tasks has no tasks: declare some with @tasks.task before asking for a worker"
            )
            raise ValueError(msg)
        chosen = used if queues is None else _check_queues(queues, used)
        workers = [QueueWorker(self.store.queue(name), self._run, **options) for name in chosen]
        return CombinedRoutine(*workers, name=f"tasks[{', '.join(chosen)}]")

    def _declare(
        self,
        fn: Callable[P, R],
        name: str | None,
        queue: str | None,
        options: EnqueueOptions,
    ) -> Task[P, R]:
        check_callable("fn", fn)  # an async def too: not run by this version
        if "connection" in options:
            msg = (
                "connection is an option of a call, not of a task: pass it to "
                "task.configure(connection=...) inside the app's transaction"
            )
            raise TypeError(msg)
        name = _default_name(fn) if name is None else _check_task_name(name)
        handle = _queue(self.store, self.queue if queue is None else queue)
        checked = _checked_options(handle, {}, options)
        task = Task(self, fn, name, handle, checked)
        with self._lock:
            if name in self._tasks:
                msg = (
                    f"name {name!r} is already a task of this Tasks "
                    f"({_shown(self._tasks[name].fn)}): pass another name="
                )
                raise ValueError(msg)
            self._tasks[name] = task
        return task

    def _run(self, job: Job) -> object:
        """The handler of the workers: run the task the job names."""
        name = job.task
        if name is None:
            msg = (
                f"job {job.id} of queue {job.queue!r} is not a task call: its payload is "
                f"{describe_value(job.payload)}, not "
                '{"task": name, "args": [...], "kwargs": {...}}'
            )
            raise NotATaskCall(msg)
        with self._lock:
            task = self._tasks.get(name)
        if task is None:
            msg = (
                f"unknown task {name!r}: this worker has no task of that name (one deployed "
                "with a newer version?); the attempt is errored, so that the job is retried and "
                "a worker that knows the task runs it"
            )
            raise UnknownTask(msg)
        return task._call(job)


@final
class Task(Generic[P, R]):
    """A function declared with `@tasks.task`; calling it runs the function here, as before.

    `enqueue(*args, **kwargs)` stores the call as a job (the arguments must be JSON values) and
    returns its id; `enqueue_many` stores many calls in one transaction; `configure(...)` gives
    the same with other enqueue options. A function with a keyword-only parameter `job` gets the
    `durable.Job` it runs for (`job.id`, `job.attempts`); its return value (a JSON value) is the
    job's `result`, and `durable.Retry` and `durable.Fail` work as in any `QueueWorker` handler.
    """

    def __init__(
        self,
        tasks: Tasks,
        fn: Callable[P, R],
        name: str,
        queue: Queue,
        options: EnqueueOptions,
    ) -> None:
        self.tasks = tasks
        self.fn = fn
        self.name = name
        self.queue = queue
        self.options = options
        self._signature = _signature(fn)
        self._takes_job = self._signature is not None and _takes_job(self._signature)
        if self._signature is not None and self._takes_job:
            arguments = [each for each in self._signature.parameters.values() if each.name != "job"]
            self._signature = self._signature.replace(parameters=arguments)
        functools.update_wrapper(self, fn, updated=())  # not its __dict__: our attributes stay

    def __repr__(self) -> str:
        return f"<Task {self.name!r} on queue {self.queue.name!r}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    # The arguments of enqueue are checked against the function's signature at the call, not
    # typed with it: a handler's job= is the worker's to pass, and a ParamSpec can't leave a
    # keyword out.
    def enqueue(self, *args: Any, **kwargs: Any) -> int:
        """Store the call `task(*args, **kwargs)` as a job, for a worker to run; its id."""
        return self._enqueue(args, kwargs, self.options)

    def enqueue_many(self, calls: Iterable[tuple[Sequence[Any], Mapping[str, Any]]]) -> list[int]:
        """Store every `(args, kwargs)` call of `calls` as a job, in one transaction (all or
        none); their ids, in order."""
        return self._enqueue_many(calls, self.options)

    def configure(self, **options: Unpack[EnqueueOptions]) -> ConfiguredTask:
        """The same task enqueued with these options over the decorator's (`delay`, `run_at`,
        `priority`, `max_attempts`, `key`, `group`, `connection`, as `Queue.enqueue` takes
        them)."""
        return ConfiguredTask(self, _checked_options(self.queue, self.options, options))

    def _enqueue(
        self, args: tuple[Any, ...], kwargs: Mapping[str, Any], options: EnqueueOptions
    ) -> int:
        return self.queue.enqueue(self._payload(args, kwargs, ""), **options)

    def _enqueue_many(
        self, calls: Iterable[tuple[Sequence[Any], Mapping[str, Any]]], options: EnqueueOptions
    ) -> list[int]:
        if isinstance(calls, (str, bytes, Mapping)) or not isinstance(calls, Iterable):
            msg = f"calls must be an iterable of (args, kwargs) pairs, got {describe_value(calls)}"
            raise TypeError(msg)
        payloads = [
            self._payload(*_args_and_kwargs(call, f"calls[{index}]"), f"calls[{index}]: ")
            for index, call in enumerate(calls)
        ]
        return self.queue.enqueue_many(payloads, **options)

    def _payload(self, args: Sequence[Any], kwargs: Mapping[str, Any], where: str) -> object:
        """The job payload of a call, every argument checked first."""
        if self._takes_job and "job" in kwargs:
            msg = (
                f"{where}job is not an argument to enqueue: the worker passes the job to "
                f"task {self.name!r} (its keyword-only parameter job)"
            )
            raise TypeError(msg)
        if self._signature is not None:
            try:
                self._signature.bind(*args, **kwargs)
            except TypeError as error:
                msg = (
                    f"{where}arguments of task {self.name!r} do not fit its signature "
                    f"{self._signature}: {error_text(error)}"
                )
                raise TypeError(msg) from None
        for index, value in enumerate(args):
            _check_json(f"{where}args[{index}]", value, self.name)
        for key, value in kwargs.items():
            _check_json(f"{where}kwargs[{key!r}]", value, self.name)
        return {"task": self.name, "args": list(args), "kwargs": dict(kwargs)}

    def _call(self, job: Job) -> R:
        """Run the call a job stores (its payload checked by `job.task`)."""
        kwargs = dict(job.payload["kwargs"])
        if self._takes_job:
            kwargs["job"] = job
        return self.fn(*job.payload["args"], **kwargs)


@final
class ConfiguredTask:
    """A task with enqueue options of its own, from `task.configure(...)`."""

    __slots__ = ("options", "task")

    def __init__(self, task: Task[Any, Any], options: EnqueueOptions) -> None:
        self.task = task
        self.options = options

    def __repr__(self) -> str:
        return f"<Task {self.task.name!r} configured with {self.options!r}>"

    def enqueue(self, *args: Any, **kwargs: Any) -> int:
        """As `Task.enqueue`, with these options."""
        return self.task._enqueue(args, kwargs, self.options)

    def enqueue_many(self, calls: Iterable[tuple[Sequence[Any], Mapping[str, Any]]]) -> list[int]:
        """As `Task.enqueue_many`, with these options."""
        return self.task._enqueue_many(calls, self.options)

    def configure(self, **options: Unpack[EnqueueOptions]) -> ConfiguredTask:
        """These options, and `options` over them."""
        return ConfiguredTask(self.task, _checked_options(self.task.queue, self.options, options))


def _checked_options(
    queue: Queue, defaults: EnqueueOptions, given: EnqueueOptions
) -> EnqueueOptions:
    """`given` over `defaults`, checked by the queue itself, so that a bad option fails at the
    call that gave it: `enqueue_many` of no payloads checks every option and writes nothing."""
    unknown = sorted(set(given) - EnqueueOptions.__optional_keys__)
    if unknown:
        msg = f"{unknown[0]} is not an enqueue option: the options are {_OPTION_NAMES}"
        raise TypeError(msg)
    merged: EnqueueOptions = {**defaults, **given}
    for option, other in _ALTERNATIVES.items():
        if option in given and other not in given:
            merged.pop(other, None)  # type: ignore[misc]
    queue.enqueue_many((), **merged)
    return merged


def _queue(store: Store, name: str) -> Queue:
    try:
        return store.queue(name)
    except (TypeError, ValueError) as error:  # its message names the store's argument, `name`
        msg = f"queue must be a queue name: {error}"
        raise type(error)(msg) from None


def _check_task_name(name: object) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_TASK_NAME:
        msg = (
            f"name must be a non-empty str of at most {MAX_TASK_NAME} characters, "
            f"got {describe_value(name)}"
        )
        raise ValueError(msg)
    return name


def _default_name(fn: Callable[..., object]) -> str:
    """`f"{module}.{qualname}"`, the same in every process that imports the function (the rule
    of fleet names); a ValueError where there is no such name, and for a function of a script
    run as a program, which a worker importing it knows by another name."""
    name = fleet_name(None, handler=fn)
    if name.startswith("__main__."):
        # A script run as `python -m app.jobs` knows its real name; one run as `python app.py`
        # does not, and a worker that imports it would know its tasks as `app.<name>`.
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        module = getattr(spec, "name", None) or ""
        if not module or module == "__main__":
            msg = (
                f"{_shown(fn)} is defined in a script run as a program (module "
                "__main__), which a worker importing it knows by another name: pass name=, "
                "or declare the tasks in a module the script imports"
            )
            raise ValueError(msg)
        name = f"{module}.{name.removeprefix('__main__.')}"
    return _check_task_name(name)


def _shown(fn: Callable[..., object]) -> str:
    """A function by its qualified name, where it has one (a repr shows its address)."""
    qualname = getattr(fn, "__qualname__", None)
    return f"function {qualname}" if isinstance(qualname, str) else describe_value(fn)


def _signature(fn: Callable[..., object]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):  # a callable whose signature Python can't read
        return None


def _takes_job(signature: inspect.Signature) -> bool:
    parameter = signature.parameters.get("job")
    return parameter is not None and parameter.kind is inspect.Parameter.KEYWORD_ONLY


def _args_and_kwargs(call: object, where: str) -> tuple[Sequence[Any], Mapping[str, Any]]:
    if isinstance(call, (tuple, list)) and len(call) == 2:
        args, kwargs = call
        if (
            isinstance(args, (tuple, list))
            and isinstance(kwargs, Mapping)
            and all(isinstance(key, str) for key in kwargs)
        ):
            return args, kwargs
    msg = (
        f"{where} must be an (args, kwargs) pair such as (('ada@example.com',), "
        f"{{'subject': 'hi'}}): a tuple or list, and a dict with str keys; got "
        f"{describe_value(call)}"
    )
    raise TypeError(msg)


def _check_json(arg: str, value: object, task: str) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as error:
        msg = (
            f"{arg} of task {task!r} must be a JSON value (dicts with str keys, lists, str, int, "
            f"finite float, bool, None), got {describe_value(value)}: {describe_error(error)}"
        )
        raise TypeError(msg) from None


def _check_queues(queues: Iterable[str], used: list[str]) -> list[str]:
    if isinstance(queues, (str, bytes)) or not isinstance(queues, Iterable):
        msg = f"queues must be a list of queue names or None, got {describe_value(queues)}"
        raise TypeError(msg)
    chosen = list(dict.fromkeys(queues))
    if not chosen:
        msg = "queues must name at least one queue, or be None (every queue of the tasks)"
        raise ValueError(msg)
    for name in chosen:
        if name not in used:
            msg = (
                f"queues names {describe_value(name)}, which none of the tasks uses: "
                f"the tasks' queues are {', '.join(map(repr, used))}"
            )
            raise ValueError(msg)
    return chosen
