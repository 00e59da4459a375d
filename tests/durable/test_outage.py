"""How the durable tier rides out an unavailable store (`_outage.py`): `Backoff`'s waits and
its two log lines, and `retried()`, the bounded retry of a write already owed."""

from __future__ import annotations

import logging

import pytest

from routines import durable
from routines.durable._outage import Backoff, retried

logger = logging.getLogger("routines.durable.test")


def unavailable(number: int) -> durable.StoreUnavailable:
    return durable.StoreUnavailable(f"down, try {number}")


def test_the_waits_double_to_a_bound_and_an_outage_logs_once_each_way(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backoff = Backoff(logger, "worker 'w'", "w")
    with caplog.at_level(logging.INFO, logger="routines.durable.test"):
        waits = [backoff.failed(unavailable(n), "claiming") for n in range(8)]
        backoff.succeeded()
        backoff.succeeded()  # no outage: nothing to say
        again = backoff.failed(unavailable(9), "heartbeats")
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert again == 0.1  # a new outage starts from the first wait
    lines = [(record.levelname, record.getMessage()) for record in caplog.records]
    assert lines == [
        (
            "WARNING",
            "worker 'w': claiming: StoreUnavailable: down, try 0;"
            " trying again until the store is back",
        ),
        ("INFO", "worker 'w': the store works again (the outage began while claiming)"),
        (
            "WARNING",
            "worker 'w': heartbeats: StoreUnavailable: down, try 9;"
            " trying again until the store is back",
        ),
    ]
    assert [getattr(record, "event", None) for record in caplog.records] == [
        "store_unavailable",
        "store_back",
        "store_unavailable",
    ]


def test_retried_returns_the_result_once_the_store_answers() -> None:
    calls: list[int] = []

    def write() -> str:
        calls.append(len(calls))
        if len(calls) < 3:
            raise unavailable(len(calls))
        return "written"

    result = retried(write, Backoff(logger, "worker 'w'", "w"), "writing", within=60.0)
    assert (result, len(calls)) == ("written", 3)


def test_retried_gives_up_with_the_last_error_when_its_time_is_up() -> None:
    raised: list[durable.StoreUnavailable] = []

    def write() -> str:
        raised.append(unavailable(len(raised)))
        raise raised[-1]

    result = retried(write, Backoff(logger, "worker 'w'", "w"), "writing", within=0.15)
    # 0.1 s fits in 0.15 s, 0.1 + 0.2 does not: at most two calls, whatever the machine's pace.
    assert 1 <= len(raised) <= 2
    assert result is raised[-1]


def test_retried_lets_other_errors_through() -> None:
    def write() -> str:
        raise durable.StoreError("constraint violated")

    with pytest.raises(durable.StoreError, match="constraint violated"):
        retried(write, Backoff(logger, "worker 'w'", "w"), "writing", within=60.0)
