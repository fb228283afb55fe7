"""The concurrency cap: at most `limit` CLI runs at once, the rest wait in a FIFO queue
that reports each waiter's position, and past `max_queued` waiters a call fails fast.

Kept behind this small class so that a cross-replica limiter (Redis, PostgreSQL) can
replace it later.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import anyio

from ..errors import Busy, RunTimeout

OnQueued = Callable[[int], Awaitable[None]]
Keep = Callable[[], Callable[[], None]]
"""Holds a slot past its block; call what it returns to let go of it."""


class Held:
    """A slot held by an `async with` block; `keep()` holds it past the block, until the
    function `keep` returns is called (a process that finished its turn is still exiting)."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release = release
        self.kept = False
        self._released = False

    def keep(self) -> Callable[[], None]:
        self.kept = True
        return self.release

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._release()


def keep_all(held: list[Held]) -> Callable[[], None]:
    """Hold these slots past their blocks; the function returned lets go of them, last taken first."""
    releases = [slot.keep() for slot in reversed(held)]

    def release() -> None:
        for each in releases:
            each()

    return release


@dataclass(eq=False)
class _Waiter:
    granted: bool = False
    wake: anyio.Event = field(default_factory=anyio.Event)


class RunSlots:
    """A fair (first come, first served) semaphore with a bounded queue."""

    def __init__(self, limit: int, max_queued: int) -> None:
        self.limit = limit
        self.max_queued = max_queued
        self.running = 0
        self._queue: deque[_Waiter] = deque()

    @property
    def queued(self) -> int:
        """Calls waiting for a slot."""
        return len(self._queue)

    @property
    def free(self) -> int:
        """Slots a run could take right now without waiting."""
        return max(0, self.limit - self.running - len(self._queue))

    @asynccontextmanager
    async def slot(self, on_queued: OnQueued | None = None, *, timeout_s: float | None = None) -> AsyncIterator[Held]:
        """Hold one slot for the body (or, if kept, longer); wait at most `timeout_s` in the queue
        (then `RunTimeout`)."""
        try:
            with anyio.fail_after(timeout_s):
                await self._acquire(on_queued)
        except TimeoutError:
            raise RunTimeout(
                f"The call waited its whole timeout ({timeout_s:g} s) in the queue without starting; "
                "the server is saturated. Retry later or raise timeout_s."
            ) from None
        held = Held(self._release)
        try:
            yield held
        finally:
            if not held.kept:
                held.release()

    async def _acquire(self, on_queued: OnQueued | None) -> None:
        if self.running < self.limit and not self._queue:
            self.running += 1
            return
        if len(self._queue) >= self.max_queued:
            raise Busy(
                f"The server is busy: {self.running} Claude runs are in progress and {len(self._queue)} are "
                "queued, which is the limit. Retry in a little while."
            )
        waiter = _Waiter()
        self._queue.append(waiter)
        reported = 0
        try:
            while not waiter.granted:
                position = self._queue.index(waiter) + 1
                if position != reported and on_queued is not None:
                    reported = position
                    await on_queued(position)
                if waiter.granted:
                    break
                await waiter.wake.wait()
                waiter.wake = anyio.Event()
        except BaseException:
            if waiter.granted:
                self._release()
            else:
                self._queue.remove(waiter)
                self._wake_all()
            raise

    def _release(self) -> None:
        if self._queue:
            waiter = self._queue.popleft()
            waiter.granted = True  # the slot passes straight to the next waiter
            waiter.wake.set()
            self._wake_all()
        else:
            self.running -= 1

    def _wake_all(self) -> None:
        for waiter in self._queue:
            waiter.wake.set()


class BridgeSlots:
    """A bridge's run slots: its own cap and, for a bridge among others (tenants, callers), its
    share of the whole server's."""

    def __init__(self, own: RunSlots, shared: RunSlots | None = None) -> None:
        self.own = own
        self.shared = shared

    @property
    def caps(self) -> list[RunSlots]:
        return [self.own] if self.shared is None else [self.own, self.shared]

    def free(self, spoken_for: int = 0) -> int:
        """Slots a run could take now without waiting, less `spoken_for` (runs about to queue)."""
        return max(0, min(cap.free - spoken_for for cap in self.caps))

    @asynccontextmanager
    async def hold(
        self, on_queued: OnQueued | None, timeout_s: float, queueing: Callable[[], None] | None = None
    ) -> AsyncIterator[Keep]:
        """A slot of each cap, the bridge's own first, within `timeout_s` in all. Yields `keep`,
        which holds them past the block, until the function it returns is called. `queueing` is
        called just before the run counts among the slots' holders or waiters."""
        started = anyio.current_time()
        async with AsyncExitStack() as stack:
            if queueing is not None:
                queueing()  # no checkpoint before `slot` counts the run
            held = [await stack.enter_async_context(self.own.slot(on_queued, timeout_s=timeout_s))]
            if self.shared is not None:
                left = timeout_s - (anyio.current_time() - started)
                held.append(await stack.enter_async_context(self.shared.slot(on_queued, timeout_s=left)))
            yield lambda: keep_all(held)
