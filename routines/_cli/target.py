"""A command's TARGET, `module:attribute`: imported as `python -m` would import it, and turned
into the routines it names; every way that fails is one `CommandError` saying what to fix."""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import sys
from collections.abc import Mapping
from typing import Any, cast

from .._context import Routine
from .._status import describe_error, describe_value
from .common import CommandError

__all__ = ["KINDS", "load_target", "routines_of"]

KINDS = (
    "a routine (an object with start() and stop()), a list or tuple of routines, a "
    "durable.Tasks, or a function of no arguments that returns one of those"
)
_SHOWN_NAMES = 12  # at most this many of a module's names in a message
_SHOWN_REPR = 80  # characters of a value's repr in a message


def load_target(target: str) -> object:
    """The object `module:attribute` names (the attribute may be dotted: `app:registry.tasks`),
    with the current directory first on `sys.path`, as `python -m` has it."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        msg = f"TARGET must be module:attribute, such as app.jobs:tasks; got {target!r}"
        raise CommandError(msg)
    here = os.getcwd()
    if sys.path[:1] not in ([""], [here]):
        sys.path.insert(0, here)
    found: object = _import(module_name)
    where = f"module {module_name}"
    parts = attribute.split(".")
    for depth, part in enumerate(parts):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise CommandError(_no_attribute(found, where, part)) from None
        except Exception as error:  # noqa: BLE001 - a property or a module __getattr__ raised
            msg = f"reading {part!r} of {where} failed: {describe_error(error)}"
            raise CommandError(msg) from None
        where = f"{module_name}:{'.'.join(parts[: depth + 1])}"
    return found


def routines_of(
    found: object, target: str, tasks_options: Mapping[str, object], tasks_flags: str
) -> tuple[Routine, ...]:
    """The routines a loaded target stands for: a routine, a list or tuple of them, a Tasks
    registry's `worker(**tasks_options)`, or what a function of no arguments returns.
    `tasks_flags` are the options that gave `tasks_options`, as the user typed them."""
    if _is_factory(found):
        if _is_durable(found, "Task"):
            msg = (
                f"{target} is a task (durable.Task): TARGET names the durable.Tasks it was "
                "declared with (module:tasks), which runs all of its tasks"
            )
            raise CommandError(msg)
        signature = _signature(found)
        if signature is not None and not _takes_no_arguments(signature):
            msg = f"{target} takes arguments {signature}: TARGET's function must take none"
            raise CommandError(msg)
        try:
            found = found()  # type: ignore[operator]
        except Exception as error:  # noqa: BLE001 - the user's code: one line, not a traceback
            msg = f"calling {target}() failed: {describe_error(error)}"
            raise CommandError(msg) from None
        target = f"{target}()"
        if _is_factory(found):
            msg = f"{target} returned {_kind(found)}, not a routine: TARGET must name {KINDS}"
            raise CommandError(msg)
    if _is_tasks(found):
        try:
            return (cast(Any, found).worker(**tasks_options),)
        except (TypeError, ValueError) as error:
            msg = f"{target}: {describe_error(error)}"
            raise CommandError(msg) from None
    if tasks_options:
        several = " and " in tasks_flags
        verb, them = ("apply", "them") if several else ("applies", "it")
        msg = (
            f"{tasks_flags} {verb} to a durable.Tasks target, and {target} is {_kind(found)}: "
            f"leave {them} out, or set {them} where the routine is made"
        )
        raise CommandError(msg)
    if _is_routine(found):
        return (found,)  # type: ignore[return-value]
    if isinstance(found, (list, tuple)):
        if not found:
            msg = f"{target} is an empty {type(found).__name__}: it must hold at least one routine"
            raise CommandError(msg)
        for index, member in enumerate(found):
            if not _is_routine(member):
                msg = (
                    f"{target}[{index}] is {_kind(member)}, not a routine (an object with "
                    "start() and stop())"
                )
                raise CommandError(msg)
        return tuple(found)
    msg = f"{target} is {_kind(found)}: TARGET must name {KINDS}"
    raise CommandError(msg)


def _import(module_name: str) -> object:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if missing and (module_name == missing or module_name.startswith(f"{missing}.")):
            msg = (
                f"no module named {missing!r}: run routines from the directory that holds "
                f"{module_name.split('.')[0]}, or install it (sys.path starts with {os.getcwd()})"
            )
            raise CommandError(msg) from None
        msg = f"importing {module_name} failed: {describe_error(error)}"
        raise CommandError(msg) from None
    except Exception as error:  # noqa: BLE001 - the user's code: one line, not a traceback
        fix = (
            "check the store's URL (ROUTINES_STORE_URL?) and that its database is up"
            if _is_durable(error, "StoreError")
            else f"python -c 'import {module_name}' shows the traceback"
        )
        msg = f"importing {module_name} failed: {describe_error(error)} ({fix})"
        raise CommandError(msg) from None


def _no_attribute(found: object, where: str, name: str) -> str:
    names = sorted(each for each in dir(found) if not each.startswith("_"))
    close = difflib.get_close_matches(name, names, n=3)
    if close:
        return f"{where} has no attribute {name!r}; did you mean {' or '.join(map(repr, close))}?"
    if not names:
        return f"{where} has no attribute {name!r}, nor any public one"
    shown = ", ".join(names[:_SHOWN_NAMES]) + (", ..." if len(names) > _SHOWN_NAMES else "")
    return f"{where} has no attribute {name!r}; it has {shown}"


def _is_routine(found: object) -> bool:
    return not isinstance(found, type) and all(
        callable(getattr(found, method, None)) for method in ("start", "stop")
    )


def _is_factory(found: object) -> bool:
    """A function or a class: called with no arguments for what it makes."""
    return callable(found) and not _is_routine(found) and not _is_tasks(found)


def _is_tasks(found: object) -> bool:
    return _is_durable(found, "Tasks")


def _is_durable(found: object, name: str) -> bool:
    """Whether `found` is a `routines.durable.<name>`: one exists only once that module was
    imported, so a target of another kind never loads the durable tier."""
    kind = getattr(sys.modules.get("routines.durable"), name, None)
    return isinstance(kind, type) and isinstance(found, kind)


def _signature(found: object) -> inspect.Signature | None:
    try:
        return inspect.signature(found)  # type: ignore[arg-type]
    except (TypeError, ValueError):  # one Python can't read: the call tells
        return None


def _takes_no_arguments(signature: inspect.Signature) -> bool:
    try:
        signature.bind()
    except TypeError:
        return False
    return True


def _kind(found: object) -> str:
    if isinstance(found, type):
        return f"the class {found.__qualname__}"
    if callable(found):
        return f"the function {getattr(found, '__qualname__', describe_value(found))}"
    kind = type(found).__name__
    return f"{_article(kind)} {kind} ({_shown(found)})"


def _shown(value: object) -> str:
    """A value's repr for a message: whole up to a line's worth, and never an exception."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a repr of the user's code must not end the message
        return describe_value(value)
    return text if len(text) <= _SHOWN_REPR else f"{text[: _SHOWN_REPR - 3]}..."


def _article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"
