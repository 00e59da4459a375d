"""The model: a job's states and their transitions, the one table the SQL store follows.

The state sets are read from `TRANSITIONS`; and a random run of every operation that changes a
job, on each engine, moves jobs only along the table's arrows.
"""

from __future__ import annotations

import random
from datetime import timedelta

from routines import durable
from routines.durable._model import (
    FINAL_STATES,
    JOB_STATES,
    LIVE_STATES,
    READY_STATES,
    RETRYABLE_STATES,
    TRANSITIONS,
    Claim,
    Claimer,
    Outcome,
)

from .support import backend_of, poll


def test_the_state_sets_follow_the_transitions() -> None:
    assert set(TRANSITIONS) == set(JOB_STATES)
    assert READY_STATES == ("queued", "errored")
    assert LIVE_STATES == ("queued", "errored", "processing")
    assert FINAL_STATES == ("completed", "failed", "canceled")
    assert RETRYABLE_STATES == ("failed", "canceled")
    for state in FINAL_STATES:  # a job that ended is only ever put back to queued
        assert TRANSITIONS[state] <= {"queued"}


OUTCOMES = (
    Outcome.completed("1"),
    Outcome.errored("boom", 0.0),
    Outcome.failed("no"),
    Outcome.canceled(),
    Outcome.handed_back(),
)


def test_every_operation_moves_jobs_along_the_table_only(
    store: durable.Store, queue: durable.Queue
) -> None:
    backend = backend_of(store)
    chance = random.Random(24)
    claims: list[Claim] = []
    ids: list[int] = []
    seen: set[tuple[str, str]] = set()

    def states() -> dict[int, str]:
        found = {job_id: queue.get(job_id) for job_id in ids}
        return {job_id: job.state for job_id, job in found.items() if job is not None}

    def claim(stalled_after: float) -> None:
        claimed = backend.claim("emails", Claimer("w", stalled_after, 1), 2)
        claims.extend(claimed)
        if claimed and stalled_after < 1:
            # Stalled by the next operation on the database's clock, whose steps are 1 ms on
            # SQLite: else whether the sweep finds them depends on the machine's speed.
            due = backend.now() + timedelta(seconds=stalled_after * 2)
            assert poll(lambda: backend.now() >= due, interval=0.001)

    def finish() -> None:
        if claims:
            claim_ = claims.pop(chance.randrange(len(claims)))
            backend.finish(claim_, chance.choice(OUTCOMES))

    operations = [
        lambda: ids.append(queue.enqueue(chance.random(), max_attempts=2)),
        lambda: claim(3600.0),
        lambda: claim(0.001),  # stalls at once: the sweep below finds it
        finish,
        finish,
        lambda: ids and queue.cancel(chance.choice(ids)),
        lambda: ids and queue.retry(chance.choice(ids)),
        lambda: backend.sweep_stalled("emails"),
        lambda: ids and queue.run_now(chance.choice(ids)),
        lambda: queue.retry_all(state=chance.choice(["failed", "canceled"])),
        lambda: queue.cancel_all(state=chance.choice(["queued", "errored", "processing"])),
    ]
    for _ in range(600):
        before = states()
        chance.choice(operations)()
        for job_id, state in states().items():
            old = before.get(job_id)
            if old is not None and old != state:
                assert state in TRANSITIONS[old], f"job {job_id}: {old} -> {state}"
                seen.add((old, state))
    # The run went through most of the table (10 of its 11 moves in every run seen), not a
    # corner of it. Which moves a run makes depends a little on the clock (jobs due in the same
    # millisecond of SQLite's clock are claimed by id), hence 600 operations, not the fewest.
    assert len(seen) >= 9, seen
