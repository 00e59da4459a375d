"""Leases on both backends: one holder at a time, expiry on the database's clock, and fencing
tokens that only grow."""

from __future__ import annotations

import threading

import pytest

from routines import durable

from .support import poll


def test_a_free_lease_is_acquired_with_a_token_and_refused_to_another_holder(
    store: durable.Store,
) -> None:
    first, second = store.lease("billing", ttl=30), store.lease("billing", ttl=30)
    assert first.acquire()
    assert first.token == 1
    assert not second.acquire()
    assert second.token is None
    assert first.acquire()  # its own: still held, same token
    assert first.token == 1


def test_renewing_keeps_the_token_and_a_release_lets_another_holder_in_with_a_larger_one(
    store: durable.Store,
) -> None:
    first, second = store.lease("billing", ttl=30), store.lease("billing", ttl=30)
    assert first.acquire()
    assert first.renew()
    assert first.token == 1
    first.release()
    assert first.token is None
    assert second.acquire()
    assert second.token == 2
    assert not first.renew()  # released: nothing to renew


def test_an_expired_lease_goes_to_the_next_holder_and_the_old_one_can_not_renew(
    store: durable.Store,
) -> None:
    old, new = store.lease("billing", ttl=0.2), store.lease("billing", ttl=30)
    assert old.acquire()
    assert not new.acquire()
    assert poll(new.acquire), "the lease did not expire on the database's clock"
    assert new.token == 2
    assert not old.renew()
    assert old.token is None
    old.release()  # a stale release changes nothing
    assert not store.lease("billing", ttl=30).acquire()


def test_tokens_only_grow_across_many_holders(store: durable.Store) -> None:
    tokens = []
    for _ in range(5):
        lease = store.lease("billing", ttl=30)
        assert lease.acquire()
        tokens.append(lease.token)
        lease.release()
    assert tokens == [1, 2, 3, 4, 5]


def test_of_many_threads_racing_for_a_free_lease_exactly_one_gets_it(
    store: durable.Store,
) -> None:
    leases = [store.lease("billing", ttl=30) for _ in range(8)]
    start = threading.Barrier(len(leases))
    won: list[bool] = [False] * len(leases)

    def race(index: int) -> None:
        start.wait(5)
        won[index] = leases[index].acquire()

    threads = [threading.Thread(target=race, args=(index,)) for index in range(len(leases))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sum(won) == 1


def test_leases_of_different_names_are_independent(store: durable.Store) -> None:
    assert store.lease("a", ttl=30).acquire()
    assert store.lease("b", ttl=30).acquire()


@pytest.mark.parametrize(
    ("args", "error", "fragment"),
    [
        (("", 30), ValueError, "name"),
        ((3, 30), TypeError, "name"),
        (("x", 0), ValueError, "ttl"),
        (("x", -1), ValueError, "ttl"),
        (("x", True), TypeError, "ttl"),
        (("x", "30"), TypeError, "ttl"),
    ],
)
def test_bad_lease_arguments_are_refused_naming_them(
    store: durable.Store, args: tuple[object, object], error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error, match=fragment):
        store.lease(*args)  # type: ignore[arg-type]
