"""Turn-taking per conversation: calls on one conversation run one at a time.

Two processes must never append to one transcript (the CLI doesn't lock it), so a call waits
for the one before it, bounded by its own timeout.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio

from ..errors import RunTimeout

OnWait = Callable[[], Awaitable[None]]


class SessionLocks:
    """One turn at a time per conversation; the others wait (bounded by their timeout)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[anyio.Lock, int]] = {}

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
            try:
                with anyio.fail_after(timeout_s):
                    await lock.acquire()
            except TimeoutError:
                raise RunTimeout(
                    f"Another call on this conversation was still running after {timeout_s:g} s. Wait for it "
                    "(or cancel it) and retry, or fork the conversation to work in parallel.",
                    session_id=session_id,
                ) from None
            try:
                yield
            finally:
                lock.release()
        finally:
            lock, users = self._locks[session_id]
            if users == 1:
                del self._locks[session_id]
            else:
                self._locks[session_id] = (lock, users - 1)
