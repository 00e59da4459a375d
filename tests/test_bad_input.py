"""Bad input: every public constructor and method, every argument, gets a `TypeError` or
`ValueError` at the call, naming the argument and the value, never a crash later on a thread.

The table is built from the kinds of argument (a duration, a count, a fraction, a flag, a
callable, a name), so every argument of a kind is tried with every bad value of that kind.
"""

from __future__ import annotations

import functools
import math
import signal
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, NamedTuple

import pytest

import routines
from routines.testing import FakeClock

from helpers import WAIT, Gate, LogWatcher

HUGE_INT = 10**400  # not representable as a float
NAN, INF = math.nan, math.inf


class Bad(NamedTuple):
    value: object
    error: type[Exception]


# A duration is a number of seconds or a timedelta: finite, not negative, and small enough that a
# thread can wait that long (threading.TIMEOUT_MAX, about 292 years).
DURATION = [
    Bad(-1, ValueError),
    Bad(-0.001, ValueError),
    Bad(NAN, ValueError),
    Bad(INF, ValueError),
    Bad(-INF, ValueError),
    Bad(HUGE_INT, ValueError),
    Bad(1e300, ValueError),
    Bad(threading.TIMEOUT_MAX, ValueError),
    Bad(timedelta(seconds=-1), ValueError),
    Bad(timedelta.max, ValueError),
    Bad(True, TypeError),
    Bad(False, TypeError),
    Bad("1", TypeError),
    Bad(b"1", TypeError),
    Bad(1j, TypeError),
    Bad([1], TypeError),
]
REQUIRED_DURATION = [*DURATION, Bad(None, TypeError)]
POSITIVE_DURATION = [
    *REQUIRED_DURATION,
    Bad(0, ValueError),
    Bad(0.0, ValueError),
    Bad(timedelta(0), ValueError),
]
POSITIVE_OPTIONAL_DURATION = [b for b in POSITIVE_DURATION if b.value is not None]


def count(minimum: int) -> list[Bad]:
    return [
        Bad(minimum - 1, ValueError),
        Bad(-(10**30), ValueError),
        Bad(True, TypeError),
        Bad(False, TypeError),
        Bad(1.0, TypeError),
        Bad(NAN, TypeError),
        Bad("2", TypeError),
        Bad(None, TypeError),
    ]


FRACTION = [
    Bad(1, ValueError),
    Bad(1.0, ValueError),
    Bad(-0.1, ValueError),
    Bad(NAN, ValueError),
    Bad(INF, ValueError),
    Bad(HUGE_INT, ValueError),
    Bad(True, TypeError),
    Bad("0.1", TypeError),
    Bad(None, TypeError),
]
FLAG = [Bad(1, TypeError), Bad(0, TypeError), Bad("yes", TypeError), Bad(None, TypeError)]
CALLABLE = [Bad(1, TypeError), Bad("print", TypeError), Bad(None, TypeError)]
OPTIONAL_CALLABLE = [Bad(1, TypeError), Bad("print", TypeError)]
NAME = [Bad(1, TypeError), Bad(b"x", TypeError), Bad("", ValueError), Bad("  ", ValueError)]
TEXT = [Bad(1, TypeError), Bad(None, TypeError), Bad(b"x", TypeError)]
SIGNALS = [
    Bad(signal.SIGTERM, TypeError),  # one number, not an iterable of them
    Bad("SIGTERM", TypeError),
    Bad(None, TypeError),
    Bad([True], TypeError),
    Bad(["SIGTERM"], TypeError),
    Bad([0], ValueError),
    Bad([-1], ValueError),
    Bad([10_000], ValueError),
    Bad([signal.SIGKILL], ValueError),
    Bad([signal.SIGSTOP], ValueError),
]


class Sample(routines.BackgroundRoutine):
    def run(self) -> None:
        self.wait(None)


def noop() -> None:
    pass


def item_handler(item: object) -> object:
    return item


def started_monitor() -> routines.Monitor:
    monitor = routines.Monitor(routines.NoopRoutine(), signals=())
    monitor.start()
    return monitor


def close(target: object) -> None:
    """Undo what a target made, so no thread outlives the test."""
    if isinstance(target, routines.Monitor):
        target.shutdown()
        assert target.wait(WAIT) is not None


class Target(NamedTuple):
    """A call with good defaults for every argument; `args` lists each argument's bad values."""

    name: str
    call: Callable[..., object]
    args: dict[str, list[Bad]]
    setup: Callable[[], object] | None = None


TARGETS = [
    Target("BackgroundRoutine", lambda **kw: Sample(**kw), {"name": NAME}),
    Target("NoopRoutine", lambda **kw: routines.NoopRoutine(**kw), {"name": NAME}),
    Target(
        "BackgroundRoutine.wait",
        lambda obj, **kw: obj.wait(**{"timeout": 0.0, **kw}),
        {"timeout": DURATION},
        setup=Sample,
    ),
    Target("sleep", lambda **kw: routines.sleep(**{"seconds": 0.0, **kw}), {"seconds": DURATION}),
    Target(
        "CallbackRoutine",
        lambda **kw: routines.CallbackRoutine(**{"start": noop, **kw}),
        {"start": CALLABLE, "stop": OPTIONAL_CALLABLE, "name": NAME},
    ),
    Target(
        "CombinedRoutine",
        lambda **kw: routines.CombinedRoutine(routines.NoopRoutine(), **kw),
        {"name": NAME, "stop_order": [Bad("random", ValueError), Bad(1, TypeError)]},
    ),
    Target(
        "PeriodicRoutine",
        lambda **kw: routines.PeriodicRoutine(**{"handler": noop, **kw}),
        {
            "handler": CALLABLE,
            "interval": POSITIVE_DURATION,
            "name": NAME,
            "description": TEXT,
            "initial_delay": REQUIRED_DURATION,
            "concurrency": count(1),
            "fixed_rate": FLAG,
            "jitter": FRACTION,
            "max_consecutive_reinvocations": count(1),
            "run_timeout": POSITIVE_OPTIONAL_DURATION,
            "on_error": OPTIONAL_CALLABLE,
            "on_shutdown": OPTIONAL_CALLABLE,
            "clock": [Bad(1, TypeError), Bad(object(), TypeError)],
        },
    ),
    Target(
        "with_error_message",
        lambda **kw: routines.with_error_message(**{"message": "m", "fn": noop, **kw}),
        {"message": TEXT, "fn": CALLABLE},
    ),
    Target(
        "Monitor",
        lambda **kw: routines.Monitor(routines.NoopRoutine(), **kw),
        {
            "stop_timeout": REQUIRED_DURATION,
            "signals": SIGNALS,
            "on_signal": [
                Bad([noop], TypeError),
                Bad({"SIGHUP": noop}, TypeError),
                Bad({signal.SIGKILL: noop}, ValueError),
                Bad({signal.SIGHUP: "reload"}, TypeError),
            ],
            "restart": [Bad("always", TypeError), Bad({"restart": "always"}, TypeError)],
            "on_event": OPTIONAL_CALLABLE,
        },
    ),
    Target(
        "Monitor.shutdown",
        lambda obj, **kw: obj.shutdown(**kw),
        {"reason": TEXT},
        setup=started_monitor,
    ),
    Target(
        "Monitor.wait",
        lambda obj, **kw: obj.wait(**kw),
        {"timeout": DURATION},
        setup=started_monitor,
    ),
    Target(
        "monitor",
        lambda **kw: routines.monitor(routines.NoopRoutine(), signals=(), **kw),
        {"stop_timeout": REQUIRED_DURATION, "restart": [Bad("never", TypeError)]},
    ),
    Target(
        "RestartPolicy",
        lambda **kw: routines.RestartPolicy(**kw),
        {
            "restart": [Bad("sometimes", ValueError), Bad(None, TypeError), Bad(1, TypeError)],
            "backoff": REQUIRED_DURATION,
            "max_backoff": REQUIRED_DURATION,
            "jitter": FRACTION,
            "max_restarts": count(0),
            "within": POSITIVE_DURATION,
            "on_give_up": [Bad("explode", ValueError), Bad(True, TypeError)],
        },
    ),
    Target(
        "supervised",
        lambda **kw: routines.supervised(
            **{"routine": routines.NoopRoutine(), "policy": routines.RestartPolicy(), **kw}
        ),
        {
            "routine": [Bad(noop, TypeError), Bad(None, TypeError)],
            "policy": [Bad(None, TypeError), Bad("never", TypeError)],
        },
    ),
    Target(
        "FakeClock",
        lambda **kw: FakeClock(**kw),
        {
            "start": [
                Bad(NAN, ValueError),
                Bad(INF, ValueError),
                Bad(HUGE_INT, ValueError),
                Bad(True, TypeError),
                Bad("0", TypeError),
            ]
        },
    ),
    Target(
        "FakeClock.advance",
        lambda obj, **kw: obj.advance(**{"seconds": 0.0, **kw}),
        {"seconds": REQUIRED_DURATION},
        setup=FakeClock,
    ),
    Target(
        "FakeClock.wait_for_sleepers",
        lambda obj, **kw: obj.wait_for_sleepers(**{"count": 0, "timeout": 0.0, **kw}),
        {"count": count(0), "timeout": REQUIRED_DURATION},
        setup=FakeClock,
    ),
]


class Case(NamedTuple):
    target: Target
    arg: str
    bad: Bad


def cases() -> Iterator[Any]:
    for target in TARGETS:
        for arg, bads in target.args.items():
            for bad in bads:
                label = f"{target.name}-{arg}={bad.value!r:.24}"
                yield pytest.param(Case(target, arg, bad), id=label)


@pytest.mark.parametrize("case", list(cases()))
def test_a_bad_argument_is_rejected_at_the_call_naming_the_argument_and_the_value(
    case: Case,
) -> None:
    target, arg, bad = case
    obj = target.setup() if target.setup is not None else None
    args = () if obj is None else (obj,)
    try:
        with pytest.raises(bad.error) as raised:
            close(target.call(*args, **{arg: bad.value}))
    finally:
        close(obj)
    message = str(raised.value)
    assert arg in message, f"{message!r} does not name {arg!r}"
    if not isinstance(bad.value, (list, dict)):
        assert repr(bad.value)[:60] in message, f"{message!r} does not show {bad.value!r}"


# -- the rules that involve more than one argument, or the routines given --------------------


@pytest.mark.parametrize(
    ("make", "error", "fragment"),
    [
        (lambda: routines.Monitor(noop), TypeError, "routines[0]"),  # type: ignore[arg-type]
        (lambda: routines.Monitor(Gate(), object()), TypeError, "routines[1]"),  # type: ignore[arg-type]
        (lambda: routines.CombinedRoutine(), ValueError, "at least one routine"),
        (lambda: routines.CombinedRoutine(noop), TypeError, "routines[0]"),  # type: ignore[arg-type]
        (lambda: routines.RestartPolicy(backoff=2, max_backoff=1), ValueError, "max_backoff"),
        (lambda: routines.monitor(Gate(), signals=(), colour="red"), TypeError, "colour"),
    ],
    ids=[
        "monitor-not-a-routine",
        "monitor-second-not-a-routine",
        "combined-empty",
        "combined-not-a-routine",
        "policy-max-backoff-below-backoff",
        "monitor-function-unknown-option",
    ],
)
def test_a_bad_combination_is_rejected_naming_what_is_wrong(
    make: Callable[[], object], error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error, match=fragment.replace("[", r"\[")):
        make()


def test_the_same_routine_twice_in_a_combined_routine_is_rejected() -> None:
    gate = Gate()
    with pytest.raises(ValueError, match=r"routines\[1\] is passed twice"):
        routines.CombinedRoutine(gate, gate)


def test_the_same_routine_twice_in_a_monitor_is_rejected() -> None:
    gate = Gate()
    with pytest.raises(ValueError, match=r"routines\[1\] is passed twice"):
        routines.Monitor(gate, routines.supervised(gate, routines.RestartPolicy()))


# -- values that only a running routine sees: reported, never a crash on its thread ----------

BAD_RESULTS = [0, -1, NAN, INF, HUGE_INT, 1e300, True, "1", None]


@pytest.mark.parametrize("result", BAD_RESULTS, ids=lambda r: f"{r!r:.24}")
def test_a_bad_interval_function_result_is_reported_and_the_loop_goes_on(result: object) -> None:
    clock, runs, errors = FakeClock(), threading.Semaphore(0), []
    periodic = routines.PeriodicRoutine(
        runs.release,
        interval=lambda: result,
        clock=clock,
        on_error=errors.append,  # type: ignore[arg-type,return-value]
    )
    thread = threading.Thread(target=periodic.start, name="test-periodic")
    thread.start()
    try:
        assert runs.acquire(timeout=WAIT)
        clock.wait_for_sleepers(1)
        clock.advance(1.0)  # the fallback interval
        assert runs.acquire(timeout=WAIT)
    finally:
        periodic.stop()
        thread.join(WAIT)
    assert not thread.is_alive()
    assert errors, "the bad interval was not reported"
    assert all(isinstance(e, (TypeError, ValueError)) for e in errors)
    assert "interval" in str(errors[0])


@pytest.mark.parametrize("result", [0, -3, True, 2.0, "2", None], ids=repr)
def test_a_bad_concurrency_function_result_is_reported_and_one_loop_runs(result: object) -> None:
    ran, errors = threading.Event(), []
    periodic = routines.PeriodicRoutine(
        ran.set,
        interval=60,
        concurrency=lambda: result,
        on_error=errors.append,  # type: ignore[arg-type,return-value]
    )
    thread = threading.Thread(target=periodic.start, name="test-periodic")
    thread.start()
    try:
        assert ran.wait(WAIT)
    finally:
        periodic.stop()
        thread.join(WAIT)
    assert not thread.is_alive()
    assert errors
    assert "concurrency" in str(errors[0])


def test_a_routine_whose_name_is_not_a_string_is_named_after_its_class() -> None:
    class Odd(Gate):
        pass

    odd = Odd()
    odd.name = 42  # type: ignore[assignment]
    with LogWatcher():
        monitor = routines.Monitor(odd, signals=())
        monitor.start()
        assert odd.started.wait(WAIT)
        monitor.shutdown()
        report = monitor.wait(WAIT)
    assert report is not None
    assert report.outcomes[0].name == "Odd"


# -- callables whose signature cannot take the call ---------------------------------------------


def _no_args() -> None:
    pass


def _one_arg(item: object) -> None:
    pass


def _two_args(item: object, error: object) -> None:
    pass


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: routines.PeriodicRoutine(_one_arg), "handler must be callable with no arguments"),
        (lambda: routines.PeriodicRoutine(_no_args, on_error=_no_args), "on_error"),
        (lambda: routines.PeriodicRoutine(_no_args, on_shutdown=_one_arg), "on_shutdown"),
        (lambda: routines.WorkerPool(_no_args), "handler must be callable with 1 positional"),
        (lambda: routines.WorkerPool(_one_arg, on_error=_one_arg), "on_error"),
        (lambda: routines.CallbackRoutine(_one_arg), "start must be callable with no arguments"),
        (lambda: routines.CallbackRoutine(_no_args, _one_arg), "stop"),
        (lambda: routines.Monitor(on_event=_no_args), "on_event"),
        (lambda: routines.Monitor(on_signal={signal.SIGHUP: _one_arg}), "on_signal"),
        (lambda: routines.with_error_message("m", _one_arg), "fn"),
    ],
)
def test_a_callable_that_cannot_take_the_call_is_refused_at_construction(
    make: Callable[[], object], fragment: str
) -> None:
    with pytest.raises(TypeError, match=fragment) as caught:
        make()
    assert "signature" in str(caught.value)


def test_callables_with_defaults_varargs_or_no_readable_signature_are_accepted() -> None:
    def defaults(item: object = None, *rest: object) -> None:
        pass

    routines.PeriodicRoutine(defaults)
    routines.WorkerPool(defaults, on_error=defaults)
    routines.PeriodicRoutine(print)  # a builtin: its signature is read where Python can
    routines.WorkerPool(functools.partial(_two_args, 1))
