"""`Retry` and `Fail`: what a handler raises to say how its job ends."""

from __future__ import annotations

import pickle
from datetime import timedelta

import pytest

from routines import durable


def test_retry_after_defaults_to_the_backoff() -> None:
    retry = durable.Retry()
    assert retry.after is None
    assert str(retry) == "retry after the backoff"


def test_retry_after_takes_seconds_or_a_timedelta() -> None:
    assert durable.Retry(after=2).after == 2.0
    assert durable.Retry(timedelta(minutes=1)).after == 60.0
    assert str(durable.Retry(after=2.5)) == "retry after 2.5s"


def test_fail_keeps_its_message() -> None:
    fail = durable.Fail("the address bounced")
    assert fail.message == "the address bounced"
    assert str(fail) == "the address bounced"


def test_handler_exceptions_are_plain_exceptions_not_store_errors() -> None:
    for error in (durable.Retry(), durable.Fail("no")):
        assert isinstance(error, Exception)
        assert not isinstance(error, durable.StoreError)


@pytest.mark.parametrize("error", [durable.Retry(3.0), durable.Fail("no")])
def test_handler_exceptions_survive_pickling(error: Exception) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
