"""The spare process: one CLI pre-started with the policy's default settings, so a new
conversation that asks for exactly those settings skips the CLI's cold start."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

import anyio
from claude_agent_sdk import SessionStore

from ..config.call_settings import CallSettings
from ..config.policy import Policy, ResolvedSettings
from ..errors import ClaudeMCPError
from .options import build_options
from .permissions import PermissionGate
from .process import CLIProcess
from .warm import WarmSession

logger = logging.getLogger(__name__)


class Spare:
    """Holds at most one pre-started process; `take` hands it out and starts the next."""

    def __init__(
        self, policy: Policy, permissions: PermissionGate, child_depth: int, session_store: SessionStore | None = None
    ) -> None:
        self._policy = policy
        self._session_store = session_store
        self._permissions = permissions
        self._child_depth = child_depth
        self._process: WarmSession | None = None
        self._start_soon: Callable[[], None] | None = None

    def run_in(self, tasks: anyio.abc.TaskGroup) -> None:
        """Start keeping a spare, its start-ups running in `tasks`."""

        def start_soon() -> None:
            tasks.start_soon(self._start)

        self._start_soon = start_soon
        self._refill()

    async def close(self) -> None:
        self._start_soon = None
        if self._process is not None:
            await self._process.process.close()
            self._process = None

    def take(self, wanted: ResolvedSettings) -> WarmSession | None:
        """The spare process, if it was started with exactly these settings (the timeout aside)."""
        spare = self._process
        if spare is None or replace(spare.settings, timeout_s=wanted.timeout_s) != wanted or not spare.process.alive:
            return None
        self._process = None
        self._refill()
        return spare

    def _refill(self) -> None:
        if self._start_soon is not None and self._process is None:
            self._start_soon()

    async def _start(self) -> None:
        settings = self._policy.resolve(CallSettings())
        options = build_options(
            settings, self._policy, child_depth=self._child_depth, session_store=self._session_store
        )
        spare = WarmSession(CLIProcess(options, self._permissions), settings, anyio.current_time())
        try:
            await spare.process.start()
        except ClaudeMCPError as exc:
            logger.warning("could not pre-start a spare CLI process: %s", exc)
            return
        if self._start_soon is None or self._process is not None:  # shut down, or raced another refill
            await spare.process.close()
        else:
            self._process = spare
