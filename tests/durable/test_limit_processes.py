"""Flow control with real processes, on both backends (spec/OPERATIONS.md section 5): four
worker processes with `concurrency=4` keep `max_running`, `group_running` and `rate` across the
fleet, each run over at least 5 s of work; a snoozed job spends no attempt; a change of limits
while they run holds from the next claim.

What is checked comes from the handlers' own records (programs/limited_worker.py: the
wall-clock time each handler started and ended each job, one file per process), not from the
library's counters. A handler records its end before its outcome is written, and its start
after its claim committed, so a job a limit let start never overlaps, in the records, one that
the limit counted as still running.
"""

from __future__ import annotations

import collections
import itertools
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from routines import durable

from .conftest import Target
from .support import ProgramGroup, poll

pytestmark = pytest.mark.timeout(180)

PROCESSES = 4
CONCURRENCY = 4


@dataclass(frozen=True)
class Run:
    """One job's run, as its handler recorded it."""

    job_id: int
    group: str
    start: float
    end: float


class Workers(ProgramGroup):
    """Worker processes of one test, each recording the runs of its handlers."""

    def __init__(self, target: Target, tmp_path: Path) -> None:
        super().__init__(tmp_path, "limited")
        self.target = target

    def start(
        self,
        seconds: float,
        *,
        concurrency: int = CONCURRENCY,
        poll_interval: float = 1.0,
        snoozes: int = 0,
    ) -> subprocess.Popen[str]:
        target = self.target
        return self.launch(
            "limited_worker",
            target.url,
            target.schema,
            "limited",
            str(self.next_record()),
            str(concurrency),
            str(seconds),
            str(poll_interval),
            str(snoozes),
        )

    def fleet(self, seconds: float, **options: float) -> None:
        for _ in range(PROCESSES):
            self.start(seconds, **options)  # type: ignore[arg-type]

    def runs(self) -> list[Run]:
        """Every run a handler ended, in the order they started."""
        starts: dict[tuple[int, int], tuple[str, float]] = {}
        runs = []
        seen: collections.Counter[int] = collections.Counter()
        for what, job_id, group, at in self.record_lines():
            if what == "start":
                seen[int(job_id)] += 1
                starts[int(job_id), seen[int(job_id)]] = (group, float(at))
            else:
                group, began = starts[int(job_id), seen[int(job_id)]]
                runs.append(Run(int(job_id), group, began, float(at)))
        return sorted(runs, key=lambda run: run.start)


@pytest.fixture
def workers(target: Target, tmp_path: Path) -> Iterator[Workers]:
    made = Workers(target, tmp_path)
    try:
        yield made
    finally:
        made.close()


def most_at_once(runs: list[Run]) -> int:
    """The most runs going on at one moment (a run that ends as another starts is not beside
    it)."""
    events = sorted(
        itertools.chain(((run.start, 1) for run in runs), ((run.end, -1) for run in runs)),
        key=lambda event: (event[0], event[1]),  # at a tie, the end first
    )
    going = most = 0
    for _, change in events:
        going += change
        most = max(most, going)
    return most


def mean_at_once(runs: list[Run], start: float, end: float) -> float:
    """How many runs were going on, on average over the time from `start` to `end`."""
    covered = sum(max(0.0, min(run.end, end) - max(run.start, start)) for run in runs)
    return covered / (end - start)


def all_done(queue: durable.Queue, count: int) -> bool:
    return queue.counts()["completed"] == count


def test_max_running_holds_across_four_processes(target: Target, workers: Workers) -> None:
    queue = target.open().queue("limited")
    queue.set_limits(max_running=2)
    queue.enqueue_many(range(60))  # 60 runs of 0.2 s, two at a time: about 6 s
    workers.fleet(0.2)
    assert poll(lambda: all_done(queue, 60), timeout=60), queue.counts()
    workers.stop_all()
    runs = workers.runs()
    assert len(runs) == 60
    assert most_at_once(runs) == 2  # never more, and the limit was reached
    # The fleet kept both slots busy: a job that ended woke the others at once.
    assert mean_at_once(runs, runs[0].start, runs[-1].end) > 1.6


def test_group_running_never_overlaps_a_group_and_keeps_the_workers_busy(
    target: Target, workers: Workers
) -> None:
    queue = target.open().queue("limited")
    queue.set_limits(group_running=1)
    # Group by group, so that the claims must skip the jobs of the groups that are running.
    for group in range(20):
        queue.enqueue_many(range(15), group=f"customer:{group}")
    workers.fleet(0.2)  # 300 runs of 0.2 s over 16 handlers and 20 groups: about 4-5 s
    assert poll(lambda: all_done(queue, 300), timeout=90), queue.counts()
    workers.stop_all()
    runs = workers.runs()
    assert len(runs) == 300
    by_group: dict[str, list[Run]] = collections.defaultdict(list)
    for run in runs:
        by_group[run.group].append(run)
    assert len(by_group) == 20
    assert {group: most_at_once(each) for group, each in by_group.items()} == dict.fromkeys(
        by_group, 1
    )
    # While 20 groups had work, the 16 handlers were nearly all busy.
    busy_until = min(max(run.end for run in each) for each in by_group.values())
    assert mean_at_once(runs, runs[0].start, busy_until) > 12


def test_rate_starts_at_most_ten_in_any_second_and_eight_a_second_on_average(
    target: Target, workers: Workers
) -> None:
    queue = target.open().queue("limited")
    queue.set_limits(rate=(10, 1.0))
    queue.enqueue_many(range(70))
    # A long poll: only the wake-up at the opening of the window keeps the rate up.
    workers.fleet(0.01, poll_interval=30.0)
    assert poll(lambda: all_done(queue, 70), timeout=60), queue.counts()
    workers.stop_all()
    starts = [run.start for run in workers.runs()]
    assert len(starts) == 70
    # A handler starts a few milliseconds after its claim, the moment the rate counts (on the
    # database's clock): windows 50 ms short of a second absorb that jitter.
    in_window = [
        sum(1 for later in starts[index:] if later - start < 0.95)
        for index, start in enumerate(starts)
    ]
    assert max(in_window) == 10
    per_second = (len(starts) - 10) / (starts[-1] - starts[10])  # after the first burst
    assert per_second >= 8.0, f"{per_second:.1f} starts a second"


def test_a_snoozed_job_spends_no_attempt_and_never_fails(target: Target, workers: Workers) -> None:
    queue = target.open().queue("limited")
    ids = queue.enqueue_many(range(80), max_attempts=1)  # a spent attempt would fail it
    workers.fleet(0.05, snoozes=2)  # 240 runs of 0.05 s: each job snoozed twice, then done
    assert poll(lambda: all_done(queue, 80), timeout=60), queue.counts()
    workers.stop_all()
    assert len(workers.runs()) == 240
    jobs = [queue.get(job_id) for job_id in ids]
    assert {(job.state, job.attempts, job.snoozes) for job in jobs if job is not None} == {
        ("completed", 1, 2)
    }


def test_a_change_of_limits_holds_from_the_next_claim(target: Target, workers: Workers) -> None:
    store = target.open()
    queue = store.queue("limited")
    queue.set_limits(max_running=4)
    queue.enqueue_many(range(80))
    workers.fleet(0.2)
    assert poll(lambda: queue.counts()["completed"] >= 8, timeout=30), queue.counts()
    queue.set_limits(max_running=1)
    changed = time.time()
    then = queue.counts()["completed"]
    # Those running at the change, then a dozen one at a time (about 2.5 s).
    assert poll(lambda: queue.counts()["completed"] >= then + 16, timeout=60), queue.counts()
    queue.set_limits()  # no limits: the fleet's 16 handlers take the rest
    lifted = time.time()
    assert poll(lambda: all_done(queue, 80), timeout=60), queue.counts()
    workers.stop_all()
    runs = workers.runs()
    before = [run for run in runs if run.start < changed]
    assert most_at_once(before) == 4
    # A run that started after the change started alone: the runs that started before it had
    # ended (they count against the new limit too). A claim that committed just before the
    # change may start its handler a few milliseconds after it: 50 ms of margin.
    after = [run for run in runs if changed + 0.05 <= run.start < lifted]
    assert len(after) >= 10
    beside = {
        run.job_id: sum(1 for other in runs if other.start <= run.start < other.end)
        for run in after
    }
    assert beside == dict.fromkeys(beside, 1)
    assert most_at_once([run for run in runs if run.start >= lifted]) > 4
