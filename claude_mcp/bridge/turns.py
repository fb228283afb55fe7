"""Turn-taking per conversation: calls on one conversation run one at a time, on every replica.

Two processes must never append to one transcript (the CLI doesn't lock it), so a call waits
for the one before it, bounded by its own timeout: first behind the other calls of this
process (an in-process lock), then for the store's lease on the conversation, which another
replica may hold. A lease is renewed while its turn runs (`renew`), so a replica that dies
lets go of its conversations within the lease.

A turn's process may still be exiting after its caller has the answer (`fence`): the next turn
of that conversation, here or on another replica, waits until it has.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio

from ..errors import RunTimeout
from ..state.store import Leases

OnWait = Callable[[], Awaitable[None]]
Lift = Callable[[], Awaitable[None]]

RETRY_S = 0.1
"""How often a conversation leased by another replica is tried again."""


class SessionLocks:
    """One turn at a time per conversation; the others wait (bounded by their timeout)."""

    def __init__(
        self, store: Leases | None = None, *, namespace: str = "", holder: str = "", lease_s: float = 15
    ) -> None:
        self._locks: dict[str, tuple[anyio.Lock, int]] = {}
        self._store = store
        self._namespace = namespace
        self._holder = holder
        self._lease_s = lease_s
        self._leased: dict[str, int] = {}
        """The store leases this replica holds, by key, with how many turns and fences here need each."""
        self._fences: dict[str, anyio.Event] = {}

    @asynccontextmanager
    async def hold(self, session_id: str | None, *, timeout_s: float, on_wait: OnWait | None) -> AsyncIterator[None]:
        if session_id is None:
            yield
            return
        lock, users = self._locks.get(session_id, (anyio.Lock(), 0))
        self._locks[session_id] = (lock, users + 1)
        try:
            if lock.locked() and on_wait is not None:
                await on_wait()
                on_wait = None
            try:
                with anyio.fail_after(timeout_s):
                    await lock.acquire()
                    try:
                        while (fence := self._fences.get(session_id)) is not None:
                            await fence.wait()
                        await self._lease(session_id, on_wait)
                    except BaseException:
                        lock.release()
                        raise
            except TimeoutError:
                raise RunTimeout(
                    f"Another call on this conversation was still running after {timeout_s:g} s. Wait for it "
                    "(or cancel it) and retry, or fork the conversation to work in parallel.",
                    session_id=session_id,
                ) from None
            try:
                yield
            finally:
                await self._release(session_id)
                lock.release()
        finally:
            lock, users = self._locks[session_id]
            if users == 1:
                del self._locks[session_id]
            else:
                self._locks[session_id] = (lock, users - 1)

    async def fence(self, session_id: str) -> Lift:
        """Keep `session_id`'s next turn waiting until the returned function is awaited. Called
        where a turn ends (inside its `hold`, or for a new conversation before anyone knows its
        id), it keeps the store's lease on the conversation until lifted."""
        fence = self._fences[session_id] = anyio.Event()
        key = self._key(session_id)
        leased = key in self._leased
        if self._store is not None and not leased:
            now = time.time()
            with anyio.CancelScope(shield=True):  # a fence left behind would hold the conversation
                leased = await self._store.try_lock(key, self._holder, now + self._lease_s, now)
        if leased:
            self._took(key)

        async def lift() -> None:
            if self._fences.get(session_id) is fence:
                del self._fences[session_id]
            if leased:
                await self._release(session_id)
            fence.set()

        return lift

    def _key(self, session_id: str) -> str:
        return f"session:{self._namespace}:{session_id}"

    async def _lease(self, session_id: str, on_wait: OnWait | None) -> None:
        if self._store is None:
            return
        key = self._key(session_id)
        while True:
            now = time.time()
            if await self._store.try_lock(key, self._holder, now + self._lease_s, now):
                self._took(key)
                return
            if on_wait is not None:
                await on_wait()
                on_wait = None
            await anyio.sleep(RETRY_S)

    def _took(self, key: str) -> None:
        """One more turn or fence here needs the lease on `key`."""
        self._leased[key] = self._leased.get(key, 0) + 1

    async def _release(self, session_id: str) -> None:
        """One user here is done with the lease; the last lets go of it in the store."""
        if self._store is None:
            return
        key = self._key(session_id)
        if (users := self._leased.pop(key, 0)) > 1:
            self._leased[key] = users - 1
            return
        with anyio.CancelScope(shield=True):
            await self._store.unlock(key, self._holder)

    async def renew(self) -> None:
        """Extend the leases of the conversations whose turns run here."""
        if self._store is None:
            return
        now = time.time()
        for key in list(self._leased):
            await self._store.try_lock(key, self._holder, now + self._lease_s, now)
