"""The fleet layer with real processes, on both backends: three replicas of an every-second
schedule run each tick once, with no overlap, also when one is SIGKILLed mid-run; a replica
paused for several ticks claims the latest, not each it missed; a Singleton's holder SIGKILLed
is replaced within ttl + retry_interval with a larger token; a holder paused past its ttl stops
its routine, never acts beside the new holder, and holds again once the lease is free."""

from __future__ import annotations

import itertools
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from routines import durable

from .conftest import Target
from .support import ProgramGroup, backend_of, finish_program, poll
from helpers import WAIT

TTL = 1.5
RETRY_INTERVAL = 0.3
STALLED_AFTER = 1.0


class Replicas(ProgramGroup):
    """Replica processes of one test, each with its own record; all killed at the end."""

    def __init__(self, target: Target, tmp_path: Path) -> None:
        super().__init__(tmp_path, "replica")
        self.target = target

    def start(self, mode: str) -> subprocess.Popen[str]:
        return self.launch(
            "fleet", mode, self.target.url, self.target.schema, str(self.next_record())
        )

    def lines(self) -> list[list[str]]:
        """Every record line of every replica, split: [pid, ...]."""
        return self.record_lines()


@pytest.fixture
def replicas(target: Target, tmp_path: Path) -> Iterator[Replicas]:
    made = Replicas(target, tmp_path)
    try:
        yield made
    finally:
        made.close()


def test_three_replicas_run_each_tick_once_without_overlap_also_when_one_is_killed(
    target: Target, replicas: Replicas
) -> None:
    store = target.open()
    processes = [replicas.start("schedule") for _ in range(3)]
    pids = {str(process.pid): process for process in processes}

    def running_now() -> durable.ScheduleRun | None:
        runs = store.schedule_runs("every-second", limit=5)
        return next((run for run in runs if run.state == "running"), None)

    assert poll(lambda: len(store.schedule_runs("every-second", limit=100)) >= 4, timeout=15)
    victim_run = poll(running_now)  # a run is going: kill the replica that runs it
    assert victim_run is not None
    victim_pid = victim_run.worker.split(":")[1]
    pids[victim_pid].kill()
    pids[victim_pid].communicate(timeout=WAIT)
    began = time.monotonic()
    # The others go on: about ten seconds in all, so several ticks follow the kill.
    assert poll(
        lambda: (
            sum(
                run.state == "completed" and run.tick > victim_run.tick
                for run in store.schedule_runs("every-second", limit=100)
            )
            >= 3
        ),
        timeout=15,
    )
    replicas.stop_all()
    runs = sorted(store.schedule_runs("every-second", limit=1000), key=lambda run: run.tick)
    ticks = [run.tick for run in runs]
    assert ticks == sorted(set(ticks))  # one record per tick
    seconds = [(tick - ticks[0]).total_seconds() for tick in ticks]
    assert seconds == [float(n) for n in range(len(ticks))]  # every second, none left out
    killed = next(run for run in runs if run.tick == victim_run.tick)
    assert killed.state == "failed"
    assert "worker died" in (killed.error or "")
    assert time.monotonic() - began < 30
    handler_runs = replicas.lines()  # each written as a run ends: the killed one wrote none
    finished = [run for run in runs if run.state == "completed"]
    assert len(handler_runs) == len(finished)  # each completed tick ran its handler once
    spans = sorted((float(start), float(end)) for _, start, end in handler_runs)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, "two runs overlapped"
    assert {run.state for run in runs} <= {"completed", "failed", "skipped"}


def test_a_replica_paused_for_several_ticks_runs_the_latest_not_each_it_missed(
    target: Target, replicas: Replicas
) -> None:
    paused = replicas.start("schedule")
    with target.open() as store:
        backend = backend_of(store)
        assert poll(lambda: replicas.lines())  # it has run a tick
        paused.send_signal(signal.SIGSTOP)
        try:
            thawed_at = backend.now() + timedelta(seconds=4)  # four ticks go by
            assert poll(lambda: backend.now() >= thawed_at)
        finally:
            paused.send_signal(signal.SIGCONT)
        assert poll(
            lambda: any(
                run.tick > thawed_at and run.state == "completed"
                for run in store.schedule_runs("every-second")
            ),
            timeout=WAIT + 2,
        )
        replicas.stop_all()
        runs = store.schedule_runs("every-second", limit=1000)
    # Each tick was claimed within a tick of its time: the missed ones coalesced into the
    # latest, instead of being claimed one by one, seconds late, when the process thawed.
    late = [run for run in runs if run.started_at - run.tick >= timedelta(seconds=2)]
    assert late == []
    assert len(runs) >= 3


def test_a_singleton_whose_holder_is_killed_moves_to_another_replica_in_time(
    target: Target, replicas: Replicas
) -> None:
    first = replicas.start("singleton")
    assert poll(lambda: replicas.lines())
    holder_pid = replicas.lines()[0][0]
    assert holder_pid == str(first.pid)
    others = [replicas.start("singleton") for _ in range(2)]
    first.kill()
    killed = time.time()
    first.communicate(timeout=WAIT)

    def taken_over() -> list[list[str]]:
        return [line for line in replicas.lines() if line[0] != holder_pid]

    assert poll(taken_over, timeout=TTL + RETRY_INTERVAL + WAIT)
    new_holder, token, at = taken_over()[0]
    assert float(at) - killed < TTL + RETRY_INTERVAL + 1.0  # a margin for the test's polling
    assert int(token) > int(replicas.lines()[0][1])
    assert {line[0] for line in taken_over()} == {new_holder}  # one holder at a time
    replicas.stop_all()
    tokens = [int(line[1]) for line in sorted(replicas.lines(), key=lambda line: float(line[2]))]
    assert tokens == sorted(tokens)  # tokens only grow
    assert len(others) == 2


def _pause_the_holder_past_its_ttl(
    replicas: Replicas,
) -> tuple[subprocess.Popen[str], subprocess.Popen[str], float]:
    """A Singleton's holder frozen (SIGSTOP) until a second replica holds, then thawed: the two
    replicas, and when the holder was thawed."""
    paused = replicas.start("singleton")
    assert poll(lambda: replicas.lines())
    other = replicas.start("singleton")
    paused.send_signal(signal.SIGSTOP)
    try:
        assert poll(
            lambda: any(line[0] == str(other.pid) for line in replicas.lines()),
            timeout=TTL + RETRY_INTERVAL + WAIT,
        )
    finally:
        paused.send_signal(signal.SIGCONT)
    resumed = time.time()
    # Let the thawed holder run a while: it must notice at once and stop.
    assert poll(lambda: max(float(line[2]) for line in replicas.lines()) > resumed + 1.0)
    return paused, other, resumed


def test_a_paused_holder_stops_its_routine_and_never_acts_beside_the_new_holder(
    target: Target, replicas: Replicas
) -> None:
    paused, other, resumed = _pause_the_holder_past_its_ttl(replicas)
    replicas.stop_all()
    lines = sorted(replicas.lines(), key=lambda line: float(line[2]))
    new_token = min(int(line[1]) for line in lines if line[0] == str(other.pid))
    late = [line for line in lines if line[0] == str(paused.pid) and float(line[2]) > resumed]
    # At most the one write that was under way when it was frozen, and it carries the old
    # token: a store fenced on the token refuses it.
    assert len(late) <= 1, late
    assert all(int(line[1]) < new_token for line in late)


def test_a_paused_holder_goes_back_to_trying_and_holds_again_once_the_lease_is_free(
    target: Target, replicas: Replicas
) -> None:
    paused, other, _ = _pause_the_holder_past_its_ttl(replicas)
    # Its routine stopped for the lost lease, not by itself: the Singleton did not end with it.
    assert paused.poll() is None
    other.send_signal(signal.SIGTERM)
    finish_program(other)
    other_tokens = [int(line[1]) for line in replicas.lines() if line[0] == str(other.pid)]
    assert poll(
        lambda: any(
            line[0] == str(paused.pid) and int(line[1]) > max(other_tokens)
            for line in replicas.lines()
        ),
        timeout=TTL + RETRY_INTERVAL + WAIT,
    )
