"""The SQL both backends speak alike: the rules of a job's life, written once.

What an outcome and the stalled sweep set on a job are the heart of the queue's guarantees (a
cancel asked while a job runs wins whatever its worker writes; a retry spends an attempt; a job
whose worker keeps dying fails after `max_resets`). Each backend builds its statements from
these, giving its own spelling of the database's now and of its parameters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ._backend import OutcomeKind

__all__ = ["LIVE_STATES", "outcome_assignments", "stalled_assignments"]

# The states of a job that is not final: a job's key is unique among the jobs in these.
LIVE_STATES: Final = "('queued', 'errored', 'processing')"


def outcome_assignments(
    *, now: str, result: str, error: str, run_after: str
) -> dict[OutcomeKind, str]:
    """What each outcome sets on a claimed job, as the SET list of one UPDATE (the old row's
    values on the right), in SQL that both backends speak: the rules live here once, and each
    backend gives its spelling of the database's `now`, of the `result` and `error` parameters
    and of `run_after` (now plus the outcome's delay)."""
    return {
        "completed": f"""
            state = CASE WHEN cancel_requested THEN 'canceled' ELSE 'completed' END,
            finished_at = {now}, result = {result}
        """,
        "errored": f"""
            state = CASE WHEN cancel_requested THEN 'canceled'
                         WHEN attempts >= max_attempts THEN 'failed' ELSE 'errored' END,
            finished_at = CASE WHEN cancel_requested OR attempts >= max_attempts THEN {now} END,
            run_after = {run_after}, last_error = {error}
        """,
        "failed": f"""
            state = CASE WHEN cancel_requested THEN 'canceled' ELSE 'failed' END,
            finished_at = {now}, last_error = {error}
        """,
        "canceled": f"state = 'canceled', finished_at = {now}",
        "handed_back": f"""
            state = CASE WHEN cancel_requested THEN 'canceled' ELSE 'queued' END,
            attempts = CASE WHEN cancel_requested THEN attempts ELSE attempts - 1 END,
            finished_at = CASE WHEN cancel_requested THEN {now} END
        """,
    }


def stalled_assignments(*, now: str) -> str:
    """What the stalled sweep sets on a processing job whose worker stopped heartbeating (the
    SET list of one UPDATE): back to queued with one more reset, or failed after `max_resets`
    resets, or canceled if a cancel was asked; `now` is the backend's spelling of its now."""
    return f"""
        state = CASE WHEN cancel_requested THEN 'canceled'
                     WHEN resets >= max_resets THEN 'failed' ELSE 'queued' END,
        finished_at = CASE WHEN cancel_requested OR resets >= max_resets THEN {now} END,
        last_error = CASE WHEN NOT cancel_requested AND resets >= max_resets
            THEN 'the worker died ' || (resets + 1)
                || CASE WHEN resets = 0 THEN ' time' ELSE ' times' END
                || ' while running it'
            ELSE last_error END,
        resets = resets + 1,
        claim_token = NULL
    """
