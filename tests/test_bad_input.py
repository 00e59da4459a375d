"""Bad input: every public constructor and method, every argument, gets a `TypeError` or
`ValueError` at the call, naming the argument and the value, never a crash later on a thread.

The table is built from the kinds of argument (a duration, a count, a fraction, a flag, a
callable, a name), so every argument of a kind is tried with every bad value of that kind. Each
public name has its section: its rows of the table, and the checks that go further (the exact
message, a value of its own, a rule that involves more than one argument). The two table-driven
tests at the end run every row of every section.
"""

from __future__ import annotations

import functools
import inspect
import math
import signal
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, NamedTuple

import pytest

import routines
from routines import PeriodicRoutine, WorkerPool, with_error_message
from routines.testing import FakeClock

from helpers import ASYNC_HANDLERS, WAIT, Gate, LogWatcher, started_monitor

HUGE_INT = 10**400  # not representable as a float
NAN, INF = math.nan, math.inf


# -- the kinds of argument and their bad values ------------------------------------------------


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


# -- the table: a call with good defaults, and each argument's bad values ----------------------


class Target(NamedTuple):
    """A call with good defaults for every argument; `args` lists each argument's bad values."""

    name: str
    call: Callable[..., object]
    args: dict[str, list[Bad]]
    setup: Callable[[], object] | None = None


class Rule(NamedTuple):
    """A call that breaks a rule involving more than one argument (or the routines given)."""

    id: str
    make: Callable[[], object]
    error: type[Exception]
    fragment: str


def close(target: object) -> None:
    """Undo what a target made, so no thread outlives the test."""
    if isinstance(target, routines.Monitor):
        target.shutdown()
        assert target.wait(WAIT) is not None


def noop() -> None:
    pass


def item_handler(item: object) -> object:
    return item


# -- BackgroundRoutine and NoopRoutine ---------------------------------------------------------


class Sample(routines.BackgroundRoutine):
    def run(self) -> None:
        self.wait(None)


ROUTINE_TARGETS = [
    Target("BackgroundRoutine", lambda **kw: Sample(**kw), {"name": NAME}),
    Target("NoopRoutine", lambda **kw: routines.NoopRoutine(**kw), {"name": NAME}),
    Target(
        "BackgroundRoutine.wait",
        lambda obj, **kw: obj.wait(**{"timeout": 0.0, **kw}),
        {"timeout": DURATION},
        setup=Sample,
    ),
]


# -- routines.sleep ----------------------------------------------------------------------------

SLEEP_TARGETS = [
    Target("sleep", lambda **kw: routines.sleep(**{"seconds": 0.0, **kw}), {"seconds": DURATION}),
]


@pytest.mark.parametrize("bad", [-0.5])
def test_sleep_rejects_a_bad_duration(bad: float) -> None:
    with pytest.raises(ValueError, match="seconds"):
        routines.sleep(bad)


@pytest.mark.parametrize("bad", [None])
def test_sleep_rejects_a_non_number(bad: object) -> None:
    with pytest.raises(TypeError, match="seconds"):
        routines.sleep(bad)  # type: ignore[arg-type]


# -- CallbackRoutine ---------------------------------------------------------------------------

CALLBACK_TARGETS = [
    Target(
        "CallbackRoutine",
        lambda **kw: routines.CallbackRoutine(**{"start": noop, **kw}),
        {"start": CALLABLE, "stop": OPTIONAL_CALLABLE, "name": NAME},
    ),
]


def test_callback_routine_start_must_be_callable() -> None:
    with pytest.raises(TypeError, match="start must be callable"):
        routines.CallbackRoutine(42)  # type: ignore[arg-type]


def test_callback_routine_stop_must_be_callable_or_none() -> None:
    with pytest.raises(TypeError, match="stop must be callable or None"):
        routines.CallbackRoutine(noop, "shutdown")  # type: ignore[arg-type]


def test_callback_routine_name_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="name"):
        routines.CallbackRoutine(noop, name=3)  # type: ignore[arg-type]


# -- CombinedRoutine ---------------------------------------------------------------------------

COMBINED_TARGETS = [
    Target(
        "CombinedRoutine",
        lambda **kw: routines.CombinedRoutine(routines.NoopRoutine(), **kw),
        {"name": NAME, "stop_order": [Bad("random", ValueError), Bad(1, TypeError)]},
    ),
]
COMBINED_RULES = [
    Rule("combined-empty", lambda: routines.CombinedRoutine(), ValueError, "at least one routine"),
    Rule(
        "combined-not-a-routine",
        lambda: routines.CombinedRoutine(noop),  # type: ignore[arg-type]
        TypeError,
        "routines[0]",
    ),
]


def test_combined_routine_rejects_something_that_is_not_a_routine() -> None:
    with pytest.raises(TypeError, match=r"routines\[1\] must be a routine"):
        routines.CombinedRoutine(Gate(), object())  # type: ignore[arg-type]


def test_the_same_routine_twice_in_a_combined_routine_is_rejected() -> None:
    gate = Gate()
    with pytest.raises(ValueError, match=r"routines\[1\] is passed twice"):
        routines.CombinedRoutine(gate, gate)


# -- PeriodicRoutine ---------------------------------------------------------------------------

PERIODIC_TARGETS = [
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
]


class NotAClock:
    def now(self) -> float:
        return 0.0


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"handler": 1}, TypeError, "handler must be callable, got 1"),
        ({"interval": 0}, ValueError, "interval must be a positive finite number .* got 0"),
        ({"interval": -1}, ValueError, "interval must be a positive .* got -1"),
        ({"interval": float("nan")}, ValueError, "interval must be .* got nan"),
        ({"interval": float("inf")}, ValueError, "interval must be .* got inf"),
        ({"interval": True}, TypeError, "interval must be .* got True"),
        ({"interval": "1"}, TypeError, "interval must be .* got '1'"),
        ({"interval": timedelta(0)}, ValueError, "interval must be a positive"),
        ({"name": ""}, ValueError, "name must not be empty"),
        ({"name": 3}, TypeError, "name must be a str or None, got 3"),
        ({"description": None}, TypeError, "description must be a str, got None"),
        ({"initial_delay": -1}, ValueError, "initial_delay must be .* got -1"),
        ({"initial_delay": None}, TypeError, "initial_delay must be .* got None"),
        ({"concurrency": 0}, ValueError, "concurrency must be >= 1, got 0"),
        ({"concurrency": 2.0}, TypeError, "concurrency must be an int, got 2.0"),
        ({"concurrency": True}, TypeError, "concurrency must be an int, got True"),
        ({"concurrency": lambda n: n}, TypeError, "concurrency must be callable with no arg"),
        ({"interval": lambda n: n}, TypeError, "interval must be callable with no arguments"),
        ({"fixed_rate": 1}, TypeError, "fixed_rate must be a bool, got 1"),
        ({"jitter": 1}, ValueError, r"jitter must be in \[0, 1\), got 1"),
        ({"jitter": -0.1}, ValueError, r"jitter must be in \[0, 1\), got -0.1"),
        ({"jitter": float("nan")}, ValueError, "jitter must be in .* got nan"),
        ({"jitter": "0.1"}, TypeError, "jitter must be a number"),
        (
            {"max_consecutive_reinvocations": 0},
            ValueError,
            "max_consecutive_reinvocations must be >= 1, got 0",
        ),
        ({"run_timeout": 0}, ValueError, "run_timeout must be a positive .* got 0"),
        ({"run_timeout": -5}, ValueError, "run_timeout must be .* got -5"),
        ({"on_error": "log"}, TypeError, "on_error must be callable or None, got 'log'"),
        ({"on_shutdown": 1}, TypeError, "on_shutdown must be callable or None, got 1"),
        ({"clock": NotAClock()}, TypeError, "clock must have now"),
    ],
)
def test_periodic_routine_bad_arguments_are_rejected_naming_the_argument_and_value(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    arguments: dict[str, object] = {"handler": noop, **kwargs}
    handler = arguments.pop("handler")
    with pytest.raises(error, match=message):
        PeriodicRoutine(handler, **arguments)  # type: ignore[arg-type]


# Values that only a running routine sees: reported, never a crash on its thread.
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


# -- with_error_message ------------------------------------------------------------------------

WITH_ERROR_MESSAGE_TARGETS = [
    Target(
        "with_error_message",
        lambda **kw: routines.with_error_message(**{"message": "m", "fn": noop, **kw}),
        {"message": TEXT, "fn": CALLABLE},
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: with_error_message(1, noop), TypeError, "message must be a str, got 1"),
        (lambda: with_error_message("m", 1), TypeError, "fn must be callable, got 1"),
    ],
)
def test_with_error_message_rejects_bad_arguments(
    call: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        call()


# -- WorkerPool --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"handler": 3}, TypeError, "handler"),
        ({"workers": 0}, ValueError, "workers must be >= 1, got 0"),
        ({"workers": True}, TypeError, "workers"),
        ({"workers": 2.0}, TypeError, "workers"),
        ({"buffer": 0}, ValueError, "buffer must be >= 1, got 0"),
        ({"buffer": False}, TypeError, "buffer"),
        ({"buffer": "10"}, TypeError, "buffer"),
        ({"name": ""}, ValueError, "name"),
        ({"name": 7}, TypeError, "name"),
        ({"on_error": "log"}, TypeError, "on_error"),
        ({"drain_on_stop": 1}, TypeError, "drain_on_stop"),
        ({"drain_timeout": -1}, ValueError, "drain_timeout"),
        ({"drain_timeout": math.nan}, ValueError, "drain_timeout"),
        ({"drain_timeout": math.inf}, ValueError, "drain_timeout"),
        ({"drain_timeout": True}, TypeError, "drain_timeout"),
        ({"drain_timeout": "5"}, TypeError, "drain_timeout"),
        ({"drain_timeout": timedelta(seconds=-1)}, ValueError, "drain_timeout"),
    ],
)
def test_worker_pool_bad_constructor_arguments_raise_naming_the_argument(
    kwargs: dict[str, Any], error: type[Exception], fragment: str
) -> None:
    arguments: dict[str, Any] = {"handler": item_handler, **kwargs}
    handler = arguments.pop("handler")
    with pytest.raises(error, match=fragment):
        WorkerPool(handler, **arguments)


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"block": 1}, TypeError, "block must be a bool, got 1"),
        ({"block": None}, TypeError, "block"),
        ({"timeout": -1}, ValueError, "timeout"),
        ({"timeout": math.nan}, ValueError, "timeout"),
        ({"timeout": math.inf}, ValueError, "timeout"),
        ({"timeout": "1"}, TypeError, "timeout"),
        ({"timeout": True}, TypeError, "timeout"),
        ({"block": False, "timeout": 1.0}, ValueError, "timeout must be None when block is False"),
    ],
)
def test_worker_pool_bad_submit_arguments_raise_naming_the_argument(
    kwargs: dict[str, Any], error: type[Exception], fragment: str
) -> None:
    pool = WorkerPool(item_handler)
    with pytest.raises(error, match=fragment):
        pool.submit(1, **kwargs)
    assert pool.status().queued == 0


# -- Monitor and routines.monitor() ------------------------------------------------------------


MONITOR_TARGETS = [
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
        setup=lambda: started_monitor(routines.NoopRoutine()),
    ),
    Target(
        "Monitor.wait",
        lambda obj, **kw: obj.wait(**kw),
        {"timeout": DURATION},
        setup=lambda: started_monitor(routines.NoopRoutine()),
    ),
    Target(
        "monitor",
        lambda **kw: routines.monitor(routines.NoopRoutine(), signals=(), **kw),
        {"stop_timeout": REQUIRED_DURATION, "restart": [Bad("never", TypeError)]},
    ),
]
MONITOR_RULES = [
    Rule(
        "monitor-not-a-routine",
        lambda: routines.Monitor(noop),  # type: ignore[arg-type]
        TypeError,
        "routines[0]",
    ),
    Rule(
        "monitor-second-not-a-routine",
        lambda: routines.Monitor(Gate(), object()),  # type: ignore[arg-type]
        TypeError,
        "routines[1]",
    ),
    Rule(
        "monitor-function-unknown-option",
        lambda: routines.monitor(Gate(), signals=(), colour="red"),
        TypeError,
        "colour",
    ),
]


def test_monitor_rejects_something_that_is_not_a_routine() -> None:
    with pytest.raises(TypeError, match=r"routines\[0\] must be a routine"):
        routines.Monitor("not a routine", signals=())  # type: ignore[arg-type]


def test_monitor_rejects_the_same_routine_twice() -> None:
    gate = Gate()
    with pytest.raises(ValueError, match="passed twice"):
        routines.Monitor(gate, gate, signals=())


def test_the_same_routine_twice_in_a_monitor_is_rejected() -> None:
    gate = Gate()
    with pytest.raises(ValueError, match=r"routines\[1\] is passed twice"):
        routines.Monitor(gate, routines.supervised(gate, routines.RestartPolicy()))


@pytest.mark.parametrize("bad", ["10"])
def test_monitor_rejects_a_stop_timeout_that_is_not_a_number(bad: object) -> None:
    with pytest.raises(TypeError, match="stop_timeout"):
        routines.Monitor(Gate(), stop_timeout=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [["x"]])
def test_monitor_rejects_signals_of_the_wrong_type(bad: object) -> None:
    with pytest.raises(TypeError, match="signals"):
        routines.Monitor(Gate(), signals=bad)  # type: ignore[arg-type]


def test_monitor_rejects_on_signal_that_is_not_a_mapping() -> None:
    with pytest.raises(TypeError, match="on_signal"):
        routines.Monitor(Gate(), on_signal=[signal.SIGHUP])  # type: ignore[arg-type]


@pytest.mark.parametrize("restart", ["always", routines.RestartPolicy, 0])
def test_monitor_rejects_a_restart_that_is_not_a_policy(restart: object) -> None:
    with pytest.raises(TypeError, match=r"\brestart\b"):
        routines.Monitor(routines.NoopRoutine(), signals=(), restart=restart)  # type: ignore[arg-type]


def test_monitor_rejects_an_on_event_that_is_not_callable() -> None:
    with pytest.raises(TypeError, match="on_event"):
        routines.Monitor(Gate(), on_event=42)  # type: ignore[arg-type]


def test_monitor_rejects_a_shutdown_reason_that_is_not_a_string_before_it_starts() -> None:
    monitor = routines.Monitor(Gate(), signals=())
    with pytest.raises(TypeError, match="reason"):
        monitor.shutdown(3)  # type: ignore[arg-type]


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


class _Methods:
    def no_args(self) -> None:
        pass

    def one_arg(self, item: object) -> None:
        pass

    @staticmethod
    def static_one(item: object) -> None:
        pass

    @classmethod
    def class_no_args(cls) -> None:
        pass


def _decorated(fn: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> None:
        fn(*args, **kwargs)

    return wrapper


def _kw_required(*, flag: bool) -> None:
    pass


def _kw_optional(item: object = None, *, flag: bool = False) -> None:
    pass


def _positional_only(item: object, /) -> None:
    pass


def _three_with_two_defaults(a: object, b: object = 1, c: object = 2) -> None:
    pass


SIGNATURES: list[Callable[..., None]] = [
    _no_args,
    _one_arg,
    _two_args,
    _kw_required,
    _kw_optional,
    _positional_only,
    _three_with_two_defaults,
    _Methods().no_args,
    _Methods().one_arg,
    _Methods.static_one,
    _Methods.class_no_args,
    _decorated(_one_arg),
    _decorated(_no_args),
    lambda *items: None,
    lambda item, *rest, flag=True: None,
]


@pytest.mark.parametrize("fn", SIGNATURES)
@pytest.mark.parametrize(
    ("takes", "make"), [(0, routines.PeriodicRoutine), (1, routines.WorkerPool)]
)
def test_the_signature_check_agrees_with_inspect_for_every_kind_of_function(
    fn: Callable[..., None], takes: int, make: Callable[[Callable[..., None]], object]
) -> None:
    try:
        inspect.signature(fn).bind(*range(takes))
    except TypeError:
        with pytest.raises(TypeError, match="must be callable with"):
            make(fn)
    else:
        make(fn)


# -- RestartPolicy -----------------------------------------------------------------------------

POLICY_TARGETS = [
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
]
POLICY_RULES = [
    Rule(
        "policy-max-backoff-below-backoff",
        lambda: routines.RestartPolicy(backoff=2, max_backoff=1),
        ValueError,
        "max_backoff",
    ),
]


# The argument's name as a word of the message (`backoff`, not only inside `max_backoff`).
@pytest.mark.parametrize(
    ("arg", "value", "error"),
    [
        ("restart", "sometimes", ValueError),
        ("restart", "ON-FAILURE", ValueError),
        ("restart", None, (TypeError, ValueError)),
        ("restart", 1, (TypeError, ValueError)),
        ("on_give_up", "explode", ValueError),
        ("on_give_up", None, (TypeError, ValueError)),
        ("backoff", -1, ValueError),
        ("backoff", NAN, ValueError),
        ("backoff", INF, ValueError),
        ("backoff", True, TypeError),
        ("backoff", "1", TypeError),
        ("backoff", None, TypeError),
        ("backoff", timedelta(seconds=-1), ValueError),
        ("max_backoff", -1, ValueError),
        ("max_backoff", NAN, ValueError),
        ("max_backoff", INF, ValueError),
        ("max_backoff", False, TypeError),
        ("max_backoff", "60", TypeError),
        ("max_backoff", 0.5, ValueError),  # less than the default backoff of 1
        ("jitter", -0.1, ValueError),
        ("jitter", 1, ValueError),
        ("jitter", 1.5, ValueError),
        ("jitter", NAN, ValueError),
        ("jitter", INF, ValueError),
        ("jitter", True, TypeError),
        ("jitter", "0.1", TypeError),
        ("max_restarts", -1, ValueError),
        ("max_restarts", 1.5, TypeError),
        ("max_restarts", 3.0, TypeError),
        ("max_restarts", True, TypeError),
        ("max_restarts", "3", TypeError),
        ("max_restarts", None, TypeError),
        ("within", 0, ValueError),
        ("within", timedelta(0), ValueError),
        ("within", -1, ValueError),
        ("within", NAN, ValueError),
        ("within", INF, ValueError),
        ("within", True, TypeError),
        ("within", "60", TypeError),
    ],
)
def test_policy_rejects_bad_input_naming_the_argument(
    arg: str, value: object, error: type[Exception] | tuple[type[Exception], ...]
) -> None:
    with pytest.raises(error, match=rf"\b{arg}\b"):
        routines.RestartPolicy(**{arg: value})


def test_policy_rejects_max_backoff_below_backoff_naming_both() -> None:
    with pytest.raises(ValueError, match=r"max_backoff.*backoff"):
        routines.RestartPolicy(backoff=5, max_backoff=2)


# -- supervised --------------------------------------------------------------------------------

SUPERVISED_TARGETS = [
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
]


def test_supervised_rejects_a_non_routine_naming_the_argument() -> None:
    with pytest.raises(TypeError, match=r"\broutine\b"):
        routines.supervised(object(), routines.RestartPolicy())  # type: ignore[arg-type]


@pytest.mark.parametrize("policy", [None, "always", {"restart": "always"}, 1])
def test_supervised_rejects_a_policy_that_is_not_a_restart_policy(policy: object) -> None:
    with pytest.raises(TypeError, match=r"\bpolicy\b"):
        routines.supervised(routines.NoopRoutine(), policy)  # type: ignore[arg-type]


# -- FakeClock ---------------------------------------------------------------------------------

FAKE_CLOCK_TARGETS = [
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


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: FakeClock("0"), TypeError, "start must be a number of seconds, got '0'"),
        (lambda: FakeClock(True), TypeError, "start must be a number"),
        (lambda: FakeClock(float("nan")), ValueError, "start must be a finite"),
        (lambda: FakeClock().advance(-1), ValueError, "seconds must be .* got -1"),
        (lambda: FakeClock().advance(float("inf")), ValueError, "seconds must be"),
        (lambda: FakeClock().wait_for_sleepers(-1), ValueError, "count must be >= 0, got -1"),
        (lambda: FakeClock().wait_for_sleepers(1.5), TypeError, "count must be an int"),
        (lambda: FakeClock().wait_for_sleepers(1, -1), ValueError, "timeout must be"),
    ],
)
def test_fake_clock_bad_arguments_are_rejected_naming_the_argument(
    call: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        call()


# -- async def handlers (OPERATIONS.md section 8) ---------------------------------------------

# Each argument that takes a handler or callback: (the call given it, the argument's name).
ASYNC_TAKERS = {
    "PeriodicRoutine-handler": (lambda fn: PeriodicRoutine(fn), "handler"),
    "PeriodicRoutine-on_error": (lambda fn: PeriodicRoutine(noop, on_error=fn), "on_error"),
    "PeriodicRoutine-on_shutdown": (
        lambda fn: PeriodicRoutine(noop, on_shutdown=fn),
        "on_shutdown",
    ),
    "WorkerPool-handler": (lambda fn: routines.WorkerPool(fn), "handler"),
    "WorkerPool-on_error": (lambda fn: routines.WorkerPool(item_handler, on_error=fn), "on_error"),
    "CallbackRoutine-start": (lambda fn: routines.CallbackRoutine(fn), "start"),
    "CallbackRoutine-stop": (lambda fn: routines.CallbackRoutine(noop, fn), "stop"),
    "with_error_message-fn": (lambda fn: routines.with_error_message("x", fn), "fn"),
    "Monitor-on_event": (lambda fn: routines.Monitor(on_event=fn), "on_event"),
    "Monitor-on_signal": (
        lambda fn: routines.Monitor(on_signal={signal.SIGHUP: fn}),
        f"on_signal[{signal.SIGHUP!r}]",
    ),
}


@pytest.mark.parametrize("handler", ASYNC_HANDLERS.values(), ids=ASYNC_HANDLERS.keys())
@pytest.mark.parametrize(("take", "arg"), ASYNC_TAKERS.values(), ids=ASYNC_TAKERS.keys())
def test_an_async_handler_is_refused_naming_the_argument(
    take: Callable[[object], object], arg: str, handler: object
) -> None:
    # Issue 25.11: a PeriodicRoutine of an async def reported runs and no failure, its body
    # never run (each call only made a coroutine).
    with pytest.raises(TypeError, match=r"must be a plain function, not an async one") as raised:
        close(take(handler))
    assert str(raised.value).startswith(f"{arg} must be"), raised.value
    assert repr(handler) in str(raised.value)


# -- every row of every section above ----------------------------------------------------------

TARGETS = [
    *ROUTINE_TARGETS,
    *SLEEP_TARGETS,
    *CALLBACK_TARGETS,
    *COMBINED_TARGETS,
    *PERIODIC_TARGETS,
    *WITH_ERROR_MESSAGE_TARGETS,
    *MONITOR_TARGETS,
    *POLICY_TARGETS,
    *SUPERVISED_TARGETS,
    *FAKE_CLOCK_TARGETS,
]
RULES = [*MONITOR_RULES, *COMBINED_RULES, *POLICY_RULES]


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


@pytest.mark.parametrize(
    ("make", "error", "fragment"),
    [pytest.param(rule.make, rule.error, rule.fragment, id=rule.id) for rule in RULES],
)
def test_a_bad_combination_is_rejected_naming_what_is_wrong(
    make: Callable[[], object], error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error, match=fragment.replace("[", r"\[")):
        make()
