"""Leases: one holder at a time across a fleet, decided by the database's clock, with fencing
tokens; and `keep_renewed`, the loop that renews one while its holder works."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from typing_extensions import final

from .._flag import Flag, wait_any
from .._validate import check_seconds
from ._errors import StoreUnavailable
from ._model import check_text, holder_id

if TYPE_CHECKING:
    from ._access import StoreAccess

__all__ = ["Lease", "keep_renewed"]

# A renewal the store did not answer (busy, or away) is tried again after this part of the ttl,
# not a whole third later: one busy moment must not let the lease run out.
_RENEW_RETRY: Final = 1 / 12


@final
class Lease:
    """The lease `name` in a store, as seen by one holder (this handle); get one with
    `store.lease(name, ttl)`.

    `acquire()` never blocks for long (at most the store's timeout): True if this handle holds
    the lease now, because it was free, had expired, or was already its own. `renew()` extends
    it by `ttl` from the database's now, False once it was lost. `release()` frees it. `token`
    is the fencing token of the hold, None while not held: every new holder gets a larger one,
    and renewing keeps it. Write it into what the holder changes, to fence off a stale holder.
    """

    __slots__ = ("_access", "_holder", "name", "token", "ttl")

    def __init__(self, access: StoreAccess, name: str, ttl: float | timedelta) -> None:
        self.name = check_text("name", name)
        self.ttl = check_seconds("ttl", ttl, allow_zero=False)
        self._access = access
        self._holder = holder_id()
        self.token: int | None = None

    def acquire(self) -> bool:
        with self._access.leases("lease.acquire") as leases:
            self.token = leases.acquire_lease(self.name, self._holder, self.ttl)
        return self.token is not None

    def renew(self) -> bool:
        token = self.token
        if token is None:
            return False
        with self._access.leases("lease.renew") as leases:
            held = leases.renew_lease(self.name, self._holder, token, self.ttl)
        if not held:
            self.token = None
        return held

    def release(self) -> None:
        token, self.token = self.token, None
        if token is not None:
            with self._access.leases("lease.release") as leases:
                leases.release_lease(self.name, self._holder, token)

    def __repr__(self) -> str:
        return f"Lease({self.name!r}, ttl={self.ttl:g}, token={self.token})"


def keep_renewed(
    lease: Lease,
    until: Sequence[Flag],
    *,
    unavailable: Callable[[StoreUnavailable], object],
    renewed: Callable[[], object] = lambda: None,
) -> bool:
    """Renew `lease` every third of its ttl until one of `until` is set (True) or the lease is
    lost (False), calling `renewed` after each renewal. A renewal the store did not answer goes
    to `unavailable` and is tried again after a twelfth of the ttl."""
    wait = lease.ttl / 3
    while not wait_any(until, wait):
        try:
            held = lease.renew()
        except StoreUnavailable as error:
            unavailable(error)
            wait = lease.ttl * _RENEW_RETRY
            continue
        if not held:
            return False
        renewed()
        wait = lease.ttl / 3
    return True
