"""Warm sessions: a live CLI process per recently used conversation, so a follow-up skips the
CLI's cold start. The pool is bounded by a count and optionally by the memory the processes
hold (least recently used closed first), and by an idle time-to-live. Warm processes belong to
one server process; another replica resumes a conversation cold.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

import anyio
import psutil

from ..config.policy import ResolvedSettings
from ..state.sticky import PER_CALL_ONLY
from .client_tools import ToolRelay
from .launcher import Process
from .process_tree import process_tree

logger = logging.getLogger(__name__)

# Settings a live process can change in place; any other difference needs a restart.
IN_PLACE = frozenset({"model", "permission_mode", "timeout_s"})
# Set per call (never recorded), so a difference counts whether the call named them or not.
ALWAYS_COMPARED = PER_CALL_ONLY - IN_PLACE

MB = 2**20
TYPICAL_BYTES = 200 * MB
"""What an idle CLI is assumed to hold until one has been measured (the bench's figure)."""


def measure_tree(pid: int) -> int | None:
    """The memory a CLI and its descendants hold that closing them would free, in bytes (None
    if the process is gone). Blocking: it reads /proc, so call it in a worker thread.

    Each process counts its USS (unique set size: pages no other process maps). USS, not PSS,
    because the budget asks what closing a process gives back, and that is its USS; PSS also
    charges a share of pages shared with other processes (the runtime every CLI maps), so one
    process's figure would move as others start and stop. Where the full info can't be read
    (permissions, platform) the RSS stands in, which overstates by the shared pages.
    """
    tree = process_tree(pid)
    if not tree:
        return None
    total = 0
    for process in tree:
        try:
            total += process.memory_full_info().uss
        except psutil.NoSuchProcess:
            continue
        except (psutil.AccessDenied, NotImplementedError, AttributeError):
            try:
                total += process.memory_info().rss
            except psutil.Error:
                continue
    return total


def to_close(held: Sequence[tuple[str, int]], budget: int) -> list[str]:
    """The sessions to close so that what the rest hold fits in `budget` bytes.

    Args:
        held: Each idle session and the bytes it holds, least recently used first.
        budget: The most bytes the kept sessions may hold together.

    Returns:
        Session ids, least recently used first: a prefix of `held`.
    """
    total = sum(size for _, size in held)
    closing: list[str] = []
    for session_id, size in held:
        if total <= budget:
            break
        closing.append(session_id)
        total -= size
    return closing


@dataclass
class WarmSession:
    """A live process for one conversation, and the settings it was started with."""

    process: Process
    settings: ResolvedSettings
    last_used: float
    relay: ToolRelay | None = None
    """The caller's tools this process was started with (see `client_tools`)."""
    held_bytes: int | None = None
    """What the process held when last measured idle (see `measure_tree`); None before that."""
    chained: bool = False
    """Whether a turn of a budgeted chain ran on it (see `metering.ProcessChain`)."""

    async def apply_in_place(self, wanted: ResolvedSettings, explicit: frozenset[str]) -> None:
        """Change what a live process can change without a restart."""
        if "model" in explicit and wanted.model != self.settings.model:
            await self.process.set_model(wanted.model)
        if "permission_mode" in explicit and wanted.permission_mode != self.settings.permission_mode:
            await self.process.set_permission_mode(wanted.permission_mode)
        self.settings = replace(
            self.settings,
            model=wanted.model if "model" in explicit else self.settings.model,
            permission_mode=wanted.permission_mode if "permission_mode" in explicit else self.settings.permission_mode,
        )

    def conflicts(self, wanted: ResolvedSettings, explicit: frozenset[str], tools_key: str | None = None) -> list[str]:
        """The explicitly requested settings this process can't take without a restart (the
        caller's tools, identified by `tools_key`, always compared)."""
        names = sorted((explicit | ALWAYS_COMPARED) - IN_PLACE)
        found = [name for name in names if getattr(wanted, name) != getattr(self.settings, name)]
        if tools_key != (self.relay.key if self.relay is not None else None):
            found.append("client tools")
        return found


class WarmPool:
    """Idle live processes by session id. A process in use is taken out, so it is never evicted.

    The memory budget is enforced from figures measured off the request path: `put` counts
    each process at its last measured size (a new one at the typical size, the mean of the
    last measurement, but never more than the budget, so a guess alone never closes it), and
    `fit_memory`, run by the housekeeping, measures the idle processes and trims again.
    """

    def __init__(
        self,
        max_warm: int,
        idle_ttl_s: float,
        on_closed: Callable[[str], Awaitable[None]] | None = None,
        *,
        max_warm_mb: float | None = None,
        retire: Callable[[str, WarmSession], Awaitable[None]] | None = None,
    ) -> None:
        """`on_closed(session_id)` is told when a kept process is closed (evicted, expired, ended).
        `max_warm_mb`: the most memory (MiB) the idle processes may hold together; None: no limit.
        `retire(session_id, warm)`: closes the processes `put` evicts, off the request path (it
        must call `on_closed` itself); without it they are closed in `put`."""
        self.max_warm = max_warm
        self.idle_ttl_s = idle_ttl_s
        self.max_bytes = None if max_warm_mb is None else int(max_warm_mb * MB)
        self.typical_bytes = TYPICAL_BYTES
        """What an unmeasured process is assumed to hold: the mean of the last measurement."""
        self._idle: OrderedDict[str, WarmSession] = OrderedDict()
        self._on_closed = on_closed
        self._retire = retire

    def estimate(self, warm: WarmSession) -> int:
        """The bytes `warm` is counted at: its last measurement, else the typical size (capped
        at the budget, so it is kept until a measurement says it does not fit)."""
        if warm.held_bytes is not None:
            return warm.held_bytes
        return self.typical_bytes if self.max_bytes is None else min(self.typical_bytes, self.max_bytes)

    def memory_bytes(self) -> int:
        """What the idle processes hold together, as last measured (or estimated)."""
        return sum(self.estimate(warm) for warm in self._idle.values())

    def keeps(self, warm: WarmSession) -> bool:
        """Whether `put` will keep this process (rather than close it)."""
        fits = self.max_bytes is None or self.estimate(warm) <= self.max_bytes
        return self.max_warm > 0 and warm.process.alive and fits

    async def _closed(self, session_id: str, warm: WarmSession) -> None:
        await warm.process.close()
        if self._on_closed is not None:
            await self._on_closed(session_id)

    def live_ids(self) -> set[str]:
        return set(self._idle)

    async def take(self, session_id: str) -> WarmSession | None:
        """The conversation's idle process, taken out of the pool; one that exited meanwhile is
        closed (its SDK client and whatever it started) and None returned."""
        warm = self._idle.pop(session_id, None)
        if warm is not None and not warm.process.alive:
            logger.info("warm process for %s had exited; starting a new one", session_id)
            await warm.process.close(graceful=False)
            return None
        return warm

    async def put(self, session_id: str, warm: WarmSession) -> None:
        if not self.keeps(warm):
            await warm.process.close()
            return
        warm.last_used = anyio.current_time()
        self._idle[session_id] = warm
        self._idle.move_to_end(session_id)
        while len(self._idle) > self.max_warm:
            oldest_id, oldest = self._idle.popitem(last=False)
            await self._evict(oldest_id, oldest)
        await self._trim()

    async def _evict(self, session_id: str, warm: WarmSession) -> None:
        if self._retire is None:
            await self._closed(session_id, warm)
        else:
            await self._retire(session_id, warm)

    async def _trim(self) -> None:
        """Close the least recently used processes while the idle ones exceed the budget."""
        if self.max_bytes is None:
            return
        held = [(session_id, self.estimate(warm)) for session_id, warm in self._idle.items()]
        for session_id in to_close(held, self.max_bytes):
            logger.info("closing warm process for %s: the warm pool is over max_warm_mb", session_id)
            await self._evict(session_id, self._idle.pop(session_id))

    async def fit_memory(self) -> None:
        """Measure what each idle process holds (in a worker thread: it reads /proc), then close
        the least recently used while they exceed the budget."""
        idle = [(warm, warm.process.pid) for warm in self._idle.values()]
        pids = [pid for _, pid in idle if pid is not None]
        figures = dict(
            zip(pids, await anyio.to_thread.run_sync(lambda: [measure_tree(pid) for pid in pids]), strict=True)
        )
        measured = []
        for warm, pid in idle:
            if pid is not None and (figure := figures[pid]) is not None:
                warm.held_bytes = figure
                measured.append(figure)
        if measured:
            self.typical_bytes = sum(measured) // len(measured)
        await self._trim()

    async def close(self, session_id: str) -> bool:
        warm = self._idle.pop(session_id, None)
        if warm is None:
            return False
        await self._closed(session_id, warm)
        return True

    async def sweep(self) -> None:
        """Close processes idle for longer than the time-to-live."""
        deadline = anyio.current_time() - self.idle_ttl_s
        for session_id in [sid for sid, warm in self._idle.items() if warm.last_used <= deadline]:
            await self.close(session_id)

    async def close_all(self) -> None:
        while self._idle:
            session_id, warm = self._idle.popitem()
            await self._closed(session_id, warm)
