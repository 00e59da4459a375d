"""The schedules of periodic routines, on plain numbers: fixed delay, fixed rate, jitter."""

from __future__ import annotations

from routines._schedule import SHORTEST_RATE, FixedDelay, FixedRate


def test_a_fixed_delay_waits_the_interval_after_each_run() -> None:
    assert FixedDelay().next_wait(now=123.4, interval=10.0) == (10.0, 0)


def test_a_fixed_delay_adds_a_random_part_of_jitter_times_interval() -> None:
    assert FixedDelay(0.2, uniform=lambda: 0.5).next_wait(0.0, 10.0) == (11.0, 0)
    assert FixedDelay(0.2, uniform=lambda: 0.0).next_wait(0.0, 10.0) == (10.0, 0)


def test_a_fixed_rate_waits_until_the_next_due_time() -> None:
    rate = FixedRate(anchor=0.0)
    assert rate.next_wait(now=2.5, interval=10.0) == (7.5, 0)
    assert rate.next_wait(now=10.5, interval=10.0) == (9.5, 0)


def test_a_fixed_rate_skips_and_counts_the_due_times_a_long_run_overran() -> None:
    rate = FixedRate(anchor=0.0)
    assert rate.next_due(now=35.0, interval=10.0) == (40.0, 3)  # 10, 20 and 30 were missed


def test_a_run_ending_exactly_on_a_due_time_runs_at_it() -> None:
    rate = FixedRate(anchor=0.0)
    assert rate.next_due(now=10.0, interval=10.0) == (10.0, 0)


def test_a_fixed_rate_never_drifts() -> None:
    rate = FixedRate(anchor=0.0)
    due = 0.0
    for _ in range(100_000):
        due, _ = rate.next_due(now=due, interval=0.1)
    assert due == 10_000.0  # 100,000 * 0.1 from the anchor, not a sum of 0.1s


def test_a_changed_interval_rebases_on_the_last_due_time() -> None:
    rate = FixedRate(anchor=0.0)
    assert rate.next_due(now=1.0, interval=10.0) == (10.0, 0)
    assert rate.next_due(now=11.0, interval=5.0) == (15.0, 0)
    assert rate.next_due(now=16.0, interval=5.0) == (20.0, 0)


def test_fixed_rate_jitter_is_added_to_each_due_time_and_never_accumulates() -> None:
    rate = FixedRate(anchor=0.0, jitter=0.2, uniform=lambda: 0.5)
    assert rate.next_wait(now=1.0, interval=10.0) == (10.0, 0)  # due 10, + 1 s of jitter
    assert rate.next_wait(now=11.0, interval=10.0) == (10.0, 0)  # due 20, + 1 s, not 22


def test_a_tiny_interval_counts_as_the_shortest_rate_and_never_overflows() -> None:
    rate = FixedRate(anchor=0.0)
    due, missed = rate.next_due(now=1.0, interval=5e-324)
    assert due >= 1.0
    assert missed == round(1.0 / SHORTEST_RATE) - 1
