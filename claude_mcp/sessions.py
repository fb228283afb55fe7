"""Warm sessions and per-session turn-taking.

`WarmPool` keeps a live CLI process per recently used conversation, so a follow-up skips the
CLI's cold start; it is bounded by a count (least recently used closed first) and an idle
time-to-live. `SessionLocks` makes calls on one conversation take turns: two processes must
never append to one transcript (the CLI doesn't lock it). Both are small in-process
registries; a multi-replica deployment replaces them (sticky routing, a shared lock).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from .errors import RunTimeout
from .policy import ResolvedSettings
from .runner import CLIProcess
from .session_store import PER_CALL_ONLY

logger = logging.getLogger(__name__)

# Settings a live process can change in place; any other difference needs a restart.
IN_PLACE = frozenset({"model", "permission_mode", "timeout_s"})
# Set per call (never recorded), so a difference counts whether the call named them or not.
ALWAYS_COMPARED = PER_CALL_ONLY - IN_PLACE


@dataclass
class WarmSession:
    """A live process for one conversation, and the settings it was started with."""

    process: CLIProcess
    settings: ResolvedSettings
    last_used: float

    def conflicts(self, wanted: ResolvedSettings, explicit: frozenset[str]) -> list[str]:
        """The explicitly requested settings this process can't take without a restart."""
        names = sorted((explicit | ALWAYS_COMPARED) - IN_PLACE)
        return [name for name in names if getattr(wanted, name) != getattr(self.settings, name)]


class WarmPool:
    """Idle live processes by session id. A process in use is taken out, so it is never evicted."""

    def __init__(self, max_warm: int, idle_ttl_s: float) -> None:
        self.max_warm = max_warm
        self.idle_ttl_s = idle_ttl_s
        self._idle: OrderedDict[str, WarmSession] = OrderedDict()

    def live_ids(self) -> set[str]:
        return set(self._idle)

    def take(self, session_id: str) -> WarmSession | None:
        warm = self._idle.pop(session_id, None)
        if warm is not None and not warm.process.alive:
            logger.info("warm process for %s had exited; starting a new one", session_id)
            return None
        return warm

    async def put(self, session_id: str, warm: WarmSession) -> None:
        if self.max_warm == 0 or not warm.process.alive:
            await warm.process.close()
            return
        warm.last_used = anyio.current_time()
        self._idle[session_id] = warm
        self._idle.move_to_end(session_id)
        while len(self._idle) > self.max_warm:
            _, oldest = self._idle.popitem(last=False)
            await oldest.process.close()

    async def close(self, session_id: str) -> bool:
        warm = self._idle.pop(session_id, None)
        if warm is None:
            return False
        await warm.process.close()
        return True

    async def sweep(self) -> None:
        """Close processes idle for longer than the time-to-live."""
        deadline = anyio.current_time() - self.idle_ttl_s
        for session_id in [sid for sid, warm in self._idle.items() if warm.last_used <= deadline]:
            await self.close(session_id)

    async def close_all(self) -> None:
        while self._idle:
            _, warm = self._idle.popitem()
            await warm.process.close()


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
