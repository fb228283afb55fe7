"""Turn-taking per conversation: calls on one conversation run one at a time, on every replica.

Two processes must never append to one transcript (the CLI doesn't lock it), so a call waits
for the one before it, bounded by its own timeout: first behind the other calls of this
process (an in-process lock), then for the store's lease on the conversation, which another
replica may hold. A lease is renewed while its turn runs (`renew`), so a replica that dies
lets go of its conversations within the lease.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio

from ..errors import RunTimeout
from ..state.store import Store

OnWait = Callable[[], Awaitable[None]]

RETRY_S = 0.1
"""How often a conversation leased by another replica is tried again."""


class SessionLocks:
    """One turn at a time per conversation; the others wait (bounded by their timeout)."""

    def __init__(
        self, store: Store | None = None, *, namespace: str = "", holder: str = "", lease_s: float = 15
    ) -> None:
        self._locks: dict[str, tuple[anyio.Lock, int]] = {}
        self._store = store
        self._namespace = namespace
        self._holder = holder
        self._lease_s = lease_s
        self._leased: set[str] = set()

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

    def _key(self, session_id: str) -> str:
        return f"session:{self._namespace}:{session_id}"

    async def _lease(self, session_id: str, on_wait: OnWait | None) -> None:
        if self._store is None:
            return
        key = self._key(session_id)
        while True:
            now = time.time()
            if await self._store.try_lock(key, self._holder, now + self._lease_s, now):
                self._leased.add(key)
                return
            if on_wait is not None:
                await on_wait()
                on_wait = None
            await anyio.sleep(RETRY_S)

    async def _release(self, session_id: str) -> None:
        if self._store is None:
            return
        key = self._key(session_id)
        self._leased.discard(key)
        with anyio.CancelScope(shield=True):
            await self._store.unlock(key, self._holder)

    async def renew(self) -> None:
        """Extend the leases of the conversations whose turns run here."""
        if self._store is None:
            return
        now = time.time()
        for key in list(self._leased):
            await self._store.try_lock(key, self._holder, now + self._lease_s, now)
