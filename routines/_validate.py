"""Argument checks shared by every constructor: clear errors at the call that made the mistake."""

from __future__ import annotations

import functools
import inspect
import math
import threading
import types
from collections.abc import Callable
from datetime import timedelta
from typing import Final, TypeVar

__all__ = [
    "MAX_SECONDS",
    "check_bool",
    "check_callable",
    "check_choice",
    "check_fraction",
    "check_int",
    "check_name",
    "check_not_async",
    "check_optional_seconds",
    "check_routine",
    "check_seconds",
    "fleet_name",
    "routine_name",
]


T = TypeVar("T")

# The longest duration accepted. A thread can't wait longer than threading.TIMEOUT_MAX (Python
# raises OverflowError, on whatever thread waits); half of it leaves room for the jitter that may
# lengthen a wait up to twice its interval or backoff.
MAX_SECONDS: Final = threading.TIMEOUT_MAX / 2


def check_optional_seconds(arg: str, value: object, *, allow_zero: bool = True) -> float | None:
    """Like `check_seconds`, but None (no limit) passes through."""
    if value is None:
        return None
    return check_seconds(arg, value, allow_zero=allow_zero, allow_none=True)


def check_seconds(
    arg: str, value: object, *, allow_zero: bool = True, allow_none: bool = False
) -> float:
    """Return `value` as a finite number of seconds, or raise naming `arg`."""
    bound = "a non-negative" if allow_zero else "a positive"
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            seconds = math.inf
    else:
        none = " or None" if allow_none else ""
        msg = f"{arg} must be {bound} number of seconds or a timedelta{none}, got {value!r}"
        raise TypeError(msg)
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        msg = f"{arg} must be {bound} finite number of seconds, got {value!r}"
        raise ValueError(msg)
    if seconds > MAX_SECONDS:
        msg = f"{arg} must be at most {MAX_SECONDS:.0f} seconds (about 146 years), got {value!r}"
        raise ValueError(msg)
    return seconds


def check_int(arg: str, value: object, *, minimum: int) -> int:
    """Return `value` as an int of at least `minimum`, or raise naming `arg`."""
    if not isinstance(value, int) or isinstance(value, bool):
        msg = f"{arg} must be an int, got {value!r}"
        raise TypeError(msg)
    if value < minimum:
        msg = f"{arg} must be >= {minimum}, got {value!r}"
        raise ValueError(msg)
    return value


def check_fraction(arg: str, value: object) -> float:
    """Return `value` as a float in [0, 1), or raise naming `arg`."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        msg = f"{arg} must be a number in [0, 1), got {value!r}"
        raise TypeError(msg)
    if not 0 <= value < 1:  # also false for NaN
        msg = f"{arg} must be in [0, 1), got {value!r}"
        raise ValueError(msg)
    return float(value)


def check_bool(arg: str, value: object) -> bool:
    if not isinstance(value, bool):
        msg = f"{arg} must be a bool, got {value!r}"
        raise TypeError(msg)
    return value


def check_callable(arg: str, value: T, *, allow_none: bool = False, takes: int | None = None) -> T:
    """Return `value` if it is callable (or None when allowed), else raise naming `arg`.

    With `takes`, a callable whose signature can be read must accept that many positional
    arguments: a one-argument function given as a periodic handler fails here, not on another
    thread at its first run. An `async def` function is refused (`check_not_async`).
    """
    if value is None and allow_none:
        return value
    if not callable(value):
        none = " or None" if allow_none else ""
        msg = f"{arg} must be callable{none}, got {value!r}"
        raise TypeError(msg)
    check_not_async(arg, value)
    if takes is not None:
        _check_takes(arg, value, takes)
    return value


def check_not_async(arg: str, fn: object) -> None:
    """Raise `TypeError` naming `arg` if calling `fn` would only make a coroutine (or an async
    generator) that nobody awaits: an `async def` function, also in a `functools.partial`, as a
    bound method, or as the `__call__` of a callable object (OPERATIONS.md section 8). Every
    handler and callback here is called on a thread, and such a call would return at once,
    counted as a run that succeeded, with its body never run."""
    called = fn
    while isinstance(called, functools.partial):
        called = called.func
    if not isinstance(called, (types.FunctionType, types.MethodType, type)):
        # A callable object: what calling it runs (its class's __call__, not whether it has one).
        called = getattr(type(called), "__call__", None)  # noqa: B004
    if inspect.iscoroutinefunction(called) or inspect.isasyncgenfunction(called):
        msg = (
            f"{arg} must be a plain function, not an async one (async def), got {fn!r}: "
            "handlers run on threads and are never awaited, so its body would never run; "
            "pass a plain function (one that calls asyncio.run(...), say)"
        )
        raise TypeError(msg)


def _check_takes(arg: str, fn: Callable[..., object], count: int) -> None:
    if _takes_by_code(fn, count):
        return  # the usual case, read from the code object: inspect.signature() is slow
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a callable whose signature Python can't read: the call tells
        return
    try:
        signature.bind(*range(count))
    except TypeError:
        what = "no arguments" if count == 0 else f"{count} positional argument{'s' * (count > 1)}"
        msg = f"{arg} must be callable with {what}, got {fn!r} with the signature {signature}"
        raise TypeError(msg) from None


def _takes_by_code(fn: Callable[..., object], count: int) -> bool:
    """True if `fn`, a plain function or a method bound to one, surely accepts `count`
    positional arguments, read from its code object; False where that can't be told this way
    (any other callable, a wrapper with `__wrapped__` or `__signature__`, or a refusal, whose
    message `inspect.signature()` then writes)."""
    bound = 0
    function: object = fn
    if isinstance(fn, types.MethodType):
        function, bound = fn.__func__, 1
    if not isinstance(function, types.FunctionType):
        return False
    if hasattr(function, "__wrapped__") or hasattr(function, "__signature__"):
        return False
    code = function.__code__
    given = count + bound
    if given > code.co_argcount and not code.co_flags & inspect.CO_VARARGS:
        return False
    if given < code.co_argcount - len(function.__defaults__ or ()):
        return False
    return code.co_kwonlyargcount <= len(function.__kwdefaults__ or {})


def check_choice(arg: str, value: T, choices: tuple[T, ...]) -> T:
    """Return `value` if it is one of the string `choices`, else raise naming `arg`."""
    if not isinstance(value, str):
        msg = f"{arg} must be one of {', '.join(map(repr, choices))}, got {value!r}"
        raise TypeError(msg)
    if value not in choices:
        msg = f"{arg} must be one of {', '.join(map(repr, choices))}, got {value!r}"
        raise ValueError(msg)
    return value


def check_name(value: object, arg: str = "name") -> str | None:
    """Return a routine name: None (use the default) or a non-empty string."""
    if value is None:
        return None
    if not isinstance(value, str):
        msg = f"{arg} must be a str or None, got {value!r}"
        raise TypeError(msg)
    if not value.strip():
        msg = f"{arg} must not be empty, got {value!r}"
        raise ValueError(msg)
    return value


def check_routine(arg: str, value: T) -> T:
    """Raise unless `value` has callable `start` and `stop` (the Routine protocol)."""
    for method in ("start", "stop"):
        if not callable(getattr(value, method, None)):
            msg = (
                f"{arg} must be a routine (an object with callable start() and stop()), "
                f"got {value!r} without a callable {method}()"
            )
            raise TypeError(msg)
    return value


def routine_name(routine: object) -> str:
    """A routine's `name` attribute if it is a non-empty str, else its class name."""
    name = getattr(routine, "name", None)
    if isinstance(name, str) and name:
        return name
    return type(routine).__name__


def describe_callable(fn: Callable[..., object]) -> str:
    """The qualified name of a callable, for default routine names."""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return name if isinstance(name, str) else type(fn).__name__


# The attribute in which a routine kind that names itself after its handler when given no name
# keeps that handler (None when it was given a name), for `fleet_name`.
NAMED_AFTER: Final = "_named_after"


def fleet_name(name: object, *, handler: object = None, routine: object = None) -> str:
    """The name of a `Scheduled`, a `Singleton` (or a task): an identity across the fleet
    (OPERATIONS.md section 9), so two different schedules must never share one by accident.

    `name` if given; else the stable name of `handler` (a `Scheduled`'s), or the name of
    `routine` (a `Singleton`'s): for a routine whose name came from its handler (a periodic
    routine, a pool or a callback routine built without `name`), that handler's stable name,
    otherwise the routine's `name` (given, or its class's). A function's stable name is
    f"{module}.{qualname}", the same in every process and distinct for distinct functions; a
    lambda, a nested function, a `functools.partial`, a bound method or a callable object has
    none (two of them share a qualname, or their state differs), and then this raises
    `ValueError` saying to pass `name=`.
    """
    given = check_name(name)
    if given is not None:
        return given
    whose = "the handler"
    if routine is not None:
        handler = getattr(routine, NAMED_AFTER, None)
        if handler is None:
            return routine_name(routine)
        whose = f"the handler of {routine!r}"
    stable, why = _stable_name(handler)
    if stable is not None:
        return stable
    msg = (
        f"name must be given: {whose} {handler!r} is {why}, with no name that is the same in "
        "every process and distinct from others; pass name= (an identity across the fleet)"
    )
    raise ValueError(msg)


def _stable_name(fn: object) -> tuple[str | None, str]:
    """(f"{module}.{qualname}", "") of a function, class or builtin defined at module level (or
    in a class there); else (None, what `fn` is that has no such name)."""
    if isinstance(fn, functools.partial):
        return None, "a functools.partial"
    target = fn
    if isinstance(fn, (types.MethodType, types.BuiltinMethodType)):
        if not isinstance(fn.__self__, (type, types.ModuleType, type(None))):
            return None, "a method bound to an object"  # whose state may differ from another's
        target = fn.__func__ if isinstance(fn, types.MethodType) else fn
    if not isinstance(target, (types.FunctionType, types.BuiltinFunctionType, type)):
        return None, "a callable object"
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return None, "a callable without __module__ and __qualname__"
    if "<lambda>" in qualname:
        return None, "a lambda"
    if "<locals>" in qualname:
        return None, "defined inside a function"
    return f"{module}.{qualname}", ""
