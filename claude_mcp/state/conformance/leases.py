"""`Leases`: a named lock is one holder's until it expires; only the holder extends or releases it."""

from __future__ import annotations

from ..store import Leases
from ._common import Contract, Names, run_all


async def a_held_lock_is_refused_to_another_holder_until_it_expires(store: Leases) -> None:
    n = Names()
    conv, other, a, b = n("conv"), n("other"), n("a"), n("b")
    assert await store.try_lock(conv, a, until=10.0, now=0.0) is True
    assert await store.try_lock(conv, b, until=20.0, now=5.0) is False
    assert await store.try_lock(other, b, until=20.0, now=5.0) is True
    assert await store.try_lock(conv, b, until=30.0, now=11.0) is True
    assert await store.try_lock(conv, a, until=40.0, now=12.0) is False


async def the_holder_can_take_its_lock_again_to_extend_it(store: Leases) -> None:
    n = Names()
    conv, a, b = n("conv"), n("a"), n("b")
    assert await store.try_lock(conv, a, until=10.0, now=0.0) is True
    assert await store.try_lock(conv, a, until=20.0, now=5.0) is True
    assert await store.try_lock(conv, b, until=30.0, now=15.0) is False
    assert await store.try_lock(conv, b, until=30.0, now=21.0) is True


async def only_the_holder_can_unlock(store: Leases) -> None:
    n = Names()
    conv, a, b = n("conv"), n("a"), n("b")
    await store.unlock(conv, a)  # not held: nothing happens
    assert await store.try_lock(conv, a, until=10.0, now=0.0) is True
    await store.unlock(conv, b)
    assert await store.try_lock(conv, b, until=20.0, now=1.0) is False
    await store.unlock(conv, a)
    assert await store.try_lock(conv, b, until=20.0, now=1.0) is True


async def a_holder_whose_lease_was_taken_over_cannot_unlock_the_new_holders(store: Leases) -> None:
    n = Names()
    conv, a, b = n("conv"), n("a"), n("b")
    assert await store.try_lock(conv, a, until=10.0, now=0.0) is True
    assert await store.try_lock(conv, b, until=30.0, now=11.0) is True  # a's lease ran out
    await store.unlock(conv, a)  # a, late, lets go of what it no longer holds
    assert await store.try_lock(conv, a, until=40.0, now=12.0) is False


LEASES: list[Contract[Leases]] = [
    a_held_lock_is_refused_to_another_holder_until_it_expires,
    the_holder_can_take_its_lock_again_to_extend_it,
    only_the_holder_can_unlock,
    a_holder_whose_lease_was_taken_over_cannot_unlock_the_new_holders,
]


async def run_leases_conformance(store: Leases) -> None:
    await run_all(store, LEASES)
