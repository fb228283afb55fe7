"""Warm sessions: a live CLI process per recently used conversation, so a follow-up skips the
CLI's cold start. The pool is bounded by a count (least recently used closed first) and an
idle time-to-live. Warm processes belong to one server process; another replica resumes a
conversation cold.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import anyio

from ..config.policy import ResolvedSettings
from ..state.sticky import PER_CALL_ONLY
from .client_tools import ToolRelay
from .process import CLIProcess

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
    relay: ToolRelay | None = None
    """The caller's tools this process was started with (see `client_tools`)."""

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
    """Idle live processes by session id. A process in use is taken out, so it is never evicted."""

    def __init__(
        self, max_warm: int, idle_ttl_s: float, on_closed: Callable[[str], Awaitable[None]] | None = None
    ) -> None:
        """`on_closed(session_id)` is told when a kept process is closed (evicted, expired, ended)."""
        self.max_warm = max_warm
        self.idle_ttl_s = idle_ttl_s
        self._idle: OrderedDict[str, WarmSession] = OrderedDict()
        self._on_closed = on_closed

    def keeps(self, warm: WarmSession) -> bool:
        """Whether `put` will keep this process (rather than close it)."""
        return self.max_warm > 0 and warm.process.alive

    async def _closed(self, session_id: str, warm: WarmSession) -> None:
        await warm.process.close()
        if self._on_closed is not None:
            await self._on_closed(session_id)

    def live_ids(self) -> set[str]:
        return set(self._idle)

    def take(self, session_id: str) -> WarmSession | None:
        warm = self._idle.pop(session_id, None)
        if warm is not None and not warm.process.alive:
            logger.info("warm process for %s had exited; starting a new one", session_id)
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
            await self._closed(oldest_id, oldest)

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
