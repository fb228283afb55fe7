"""Spare processes: CLIs pre-started for new conversations, so a new conversation skips the CLI's
cold start.

A spare pays off only if it is ready when a conversation arrives and its start-up did not slow
anyone down. So:

- a spare is *primed* once started: the CLI is asked for its context usage, which makes it build
  its system prompt and tool definitions, the work it otherwise does on the first prompt (no
  model request, no transcript);
- a spare is started only when no other CLI in this server is starting up (a start-up is
  CPU-bound; two at once on a small machine slow both), so the replacement for a taken spare
  waits until that run has its first answer from the model;
- a conversation that arrives while a matching spare is still starting waits for it rather
  than starting a process of its own: the spare is ahead, and one start-up costs less than two;
- the pool follows demand: one spare at start, one more for each new conversation in the last
  minute that found none ready (up to `max_spares`), none after `spare_idle_s` without a new
  conversation (until the next arrives);
- spares are started with the settings most recent new conversations used (the policy's
  defaults until there are any), learned from calls that name no MCP servers of their own.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import anyio
from claude_agent_sdk import SessionStore

from ..config.call_settings import CallSettings
from ..config.policy import Policy, ResolvedSettings
from ..errors import ClaudeMCPError
from .launcher import Launcher
from .options import build_options
from .permissions import PermissionGate
from .warm import WarmSession

logger = logging.getLogger(__name__)

DEMAND_WINDOW_S = 60.0
"""New conversations that found no spare ready within this window each ask for one more spare."""
LEARN_FROM = 20
"""Spares take the most common settings of this many recent new conversations."""
QUIET_WAIT_S = 5.0
"""A spare start waits at most this long for other start-ups to finish."""
TICK_S = 1.0


def _matching(settings: ResolvedSettings) -> ResolvedSettings:
    """The settings a spare must have been started with to serve a call (its timeout is the call's)."""
    return replace(settings, timeout_s=0.0)


@dataclass(eq=False)
class _Entry:
    """A spare, ready or starting."""

    settings: ResolvedSettings
    ready: anyio.Event = field(default_factory=anyio.Event)
    session: WarmSession | None = None
    since: float = 0.0

    @property
    def usable(self) -> bool:
        return self.session is not None and self.session.process.alive


class SparePool:
    """Pre-started processes for new conversations; `take` hands one out."""

    def __init__(
        self,
        policy: Policy,
        launcher: Launcher,
        permissions: PermissionGate,
        child_depth: int,
        session_store: SessionStore | None = None,
        clock: Callable[[], float] = anyio.current_time,
    ) -> None:
        self._policy = policy
        self._launcher = launcher
        self._session_store = session_store
        self._permissions = permissions
        self._child_depth = child_depth
        self._clock = clock
        self._entries: list[_Entry] = []
        self._misses: deque[float] = deque()
        self._recent: deque[ResolvedSettings] = deque(maxlen=LEARN_FROM)
        self._last_demand: float | None = None
        self._opened_at = 0.0
        self._wake = anyio.Event()
        self._running = False

    @property
    def ready(self) -> int:
        """Spares ready to serve now."""
        return sum(1 for entry in self._entries if entry.usable)

    @property
    def starting(self) -> int:
        """Spares still starting."""
        return sum(1 for entry in self._entries if not entry.ready.is_set())

    def target(self, now: float) -> int:
        """How many spares demand calls for now."""
        while self._misses and self._misses[0] <= now - DEMAND_WINDOW_S:
            self._misses.popleft()
        last = self._last_demand if self._last_demand is not None else self._opened_at
        if now - last >= self._policy.spare_idle_s:
            return 0
        return min(self._policy.max_spares, 1 + len(self._misses))

    def preferred(self) -> ResolvedSettings:
        """The settings the next spare is started with: the most common among recent new
        conversations (the latest wins a tie), else the policy's defaults."""
        best, best_count = None, 0
        for settings in reversed(self._recent):  # ResolvedSettings holds dicts: not hashable
            count = sum(1 for other in self._recent if other == settings)
            if count > best_count:
                best, best_count = settings, count
        return best if best is not None else _matching(self._policy.resolve(CallSettings()))

    async def take(self, wanted: ResolvedSettings, *, learn: bool = True) -> WarmSession | None:
        """A spare started with exactly these settings (the timeout aside), waiting for one that is
        starting; None if there is none. Every call counts as demand; `learn=False` keeps its
        settings out of what spares are started with (it named secrets of its own)."""
        if not self._running:
            return None
        now = self._clock()
        self._last_demand = now
        key = _matching(wanted)
        if learn:
            self._recent.append(key)
        entry = next((e for e in self._entries if e.settings == key and e.usable), None)
        entry = entry or next((e for e in self._entries if e.settings == key and not e.ready.is_set()), None)
        if entry is None:
            self._misses.append(now)
            self._wake.set()
            return None
        if not entry.ready.is_set():
            logger.debug("a new conversation waits for the spare that is starting")
            await entry.ready.wait()
        if entry not in self._entries or not entry.usable:  # another call took it, or it failed
            self._misses.append(now)
            self._wake.set()
            return None
        self._entries.remove(entry)
        self._wake.set()
        assert entry.session is not None
        return entry.session

    async def run(self) -> None:
        """Keep the pool at its target until cancelled (the bridge runs this in its tasks)."""
        self._running = True
        self._opened_at = self._clock()
        try:
            while True:
                await self._adjust()
                with anyio.move_on_after(TICK_S):
                    await self._wake.wait()
                self._wake = anyio.Event()
        finally:
            self._running = False
            with anyio.CancelScope(shield=True):
                await self.close()

    async def _adjust(self) -> None:
        now = self._clock()
        target = self.target(now)
        self._entries = [e for e in self._entries if not e.ready.is_set() or e.usable]
        preferred = self.preferred()
        extra = len(self._entries) - target
        for entry in [e for e in self._entries if e.usable]:
            stale = entry.settings != preferred and now - entry.since > DEMAND_WINDOW_S
            if extra > 0 or stale:
                self._entries.remove(entry)
                extra -= 1
                assert entry.session is not None
                await entry.session.process.close()
        if len(self._entries) < target:
            if not await self._launcher.startups.quiet(QUIET_WAIT_S):
                logger.debug("starting a spare although other CLI start-ups are still running")
            if self._running and len(self._entries) < self.target(self._clock()):
                await self._start(preferred)

    async def _start(self, key: ResolvedSettings) -> None:
        entry = _Entry(key)
        self._entries.append(entry)
        settings = replace(key, timeout_s=self._policy.resolve(CallSettings()).timeout_s)
        options = build_options(
            settings,
            self._policy,
            child_depth=self._child_depth,
            session_store=self._session_store,
            chain_id=uuid.uuid4().hex,
        )
        session = WarmSession(self._launcher.launch(options, self._permissions), settings, self._clock())
        try:
            await session.process.start(prime=True)
        except ClaudeMCPError as exc:
            logger.warning("could not pre-start a spare CLI process: %s", exc)
            self._entries.remove(entry)
        else:
            if entry in self._entries:
                entry.session = session
                entry.since = self._clock()
            else:  # the pool was closed meanwhile
                await session.process.close()
        finally:
            entry.ready.set()

    async def close(self) -> None:
        entries, self._entries = self._entries, []
        for entry in entries:
            entry.ready.set()
            if entry.session is not None:
                await entry.session.process.close()
