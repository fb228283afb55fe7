"""The process pool: which CLI process a run gets, and what becomes of it after.

A run *leases* a process: its conversation's warm one, a spare (for a new conversation), or a
new one from the launcher. After the turn it is *released*: kept warm for the next turn, or
*retired*, closed off the request path (a CLI takes ~55 ms to exit) while the conversation's
next turn waits on a fence and the run slot, if one is handed over, stays taken until the
process is gone. A process a failed turn leaves behind is *discarded* at once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

import anyio
from claude_agent_sdk import ClaudeAgentOptions, SessionStore

from ..config.policy import Policy, ResolvedSettings
from .client_tools import ToolRelay
from .launcher import Launcher, Process
from .permissions import PermissionGate
from .slots import Keep
from .spare import SparePool
from .turns import SessionLocks
from .warm import WarmPool, WarmSession

logger = logging.getLogger(__name__)

Cooled = Callable[[str], Awaitable[None]]
"""Told that no process holds a conversation warm any more."""


class ProcessPool:
    """Warm processes by conversation, spares for new ones, and the launcher for the rest.

    Use it as an async context manager: spares are kept and processes retired in its own
    tasks, and on exit every process it holds is closed."""

    def __init__(
        self,
        policy: Policy,
        launcher: Launcher,
        permissions: PermissionGate,
        locks: SessionLocks,
        *,
        child_depth: int,
        session_store: SessionStore | None,
        cooled: Cooled,
        slot_freed: Callable[[], None],
        spares_after: anyio.Event | None = None,
    ) -> None:
        """`cooled`: told when a conversation is no longer warm. `slot_freed`: told when a retired
        process gave back the run slot it held. `spares_after`: spares start only once it is set
        (a caller's, once the credential has been accepted)."""
        self.launcher = launcher
        self.permissions = permissions
        self._locks = locks
        self._cooled = cooled
        self._slot_freed = slot_freed
        self._spares_after = spares_after
        self._keep_spares = policy.spare_process and child_depth <= policy.max_depth
        self.warm = WarmPool(
            policy.max_warm,
            policy.warm_ttl_s,
            on_closed=cooled,
            max_warm_mb=policy.max_warm_mb,
            retire=self._retire_idle,
        )
        self.spares = SparePool(policy, launcher, permissions, child_depth=child_depth, session_store=session_store)
        self._tasks: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> Self:
        self._tasks = await anyio.create_task_group().__aenter__()
        if self._keep_spares:
            self._tasks.start_soon(self._run_spares)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        tasks, self._tasks = self._tasks, None
        with anyio.CancelScope(shield=True):
            await self.warm.close_all()
            await self.spares.close()
        if tasks is not None:
            tasks.cancel_scope.cancel()
            await tasks.__aexit__(None, None, None)

    async def _run_spares(self) -> None:
        if self._spares_after is not None:
            await self._spares_after.wait()
        await self.spares.run()

    async def lease(
        self,
        conversation: str | None,
        wanted: ResolvedSettings,
        explicit: frozenset[str],
        tools_key: str | None,
        *,
        spare: bool,
        learn: bool,
    ) -> WarmSession | None:
        """The live process a run can take: the conversation's warm one, or (`spare`: a new
        conversation) a spare started with these settings; None if the run needs a new one. A
        taken process that can't take the settings the call names is closed (`learn`: see
        `SparePool.take`)."""
        warm = await self.warm.take(conversation) if conversation else None
        if spare:
            warm = await self.spares.take(wanted, learn=learn)
        if warm is not None and (conflicts := warm.conflicts(wanted, explicit, tools_key)):
            logger.info("restarting the warm process of a session to change %s", ", ".join(conflicts))
            await warm.process.close()
            warm = None
        return warm

    def launch(self, options: ClaudeAgentOptions, settings: ResolvedSettings, relay: ToolRelay | None) -> WarmSession:
        """A new process (started by its first turn) for these options."""
        process = self.launcher.launch(options, self.permissions)
        return WarmSession(process, settings, anyio.current_time(), relay=relay)

    def keeps(self, warm: WarmSession) -> bool:
        """Whether `release` with `keep_warm` will keep this process warm."""
        return self.warm.keeps(warm)

    async def release(self, conversation: str, warm: WarmSession, *, keep_warm: bool, keep_slot: Keep) -> None:
        """After a turn: keep the process warm for `conversation`, or retire it, holding the run
        slot (`keep_slot`) until it is gone."""
        if keep_warm and self.warm.keeps(warm):
            await self.warm.put(conversation, warm)
        else:
            await self.retire(warm.process, conversation, free_slot=keep_slot())

    @staticmethod
    async def discard(warm: WarmSession | None) -> None:
        """Close at once the process of a turn that failed (or never ran)."""
        if warm is not None:
            await warm.process.close(graceful=False)

    async def _retire_idle(self, conversation: str, warm: WarmSession) -> None:
        """Close a warm process the pool let go of, off the request path (it is no longer warm first)."""
        await self.retire(warm.process, conversation, cooled=True)

    async def retire(
        self,
        process: Process,
        conversation: str,
        *,
        free_slot: Callable[[], None] | None = None,
        cooled: bool = False,
    ) -> None:
        """Close a process off the request path: the caller has its answer meanwhile, but the
        conversation's next turn waits (`SessionLocks.fence`) and the run slot, if `free_slot` is
        given, stays taken until the process is gone. `cooled`: tell that no process holds the
        conversation warm any more."""
        lift = await self._locks.fence(conversation)

        async def close() -> None:
            try:
                if cooled:
                    await self._cooled(conversation)
                await process.close()
            except Exception:
                logger.warning("closing a finished CLI process failed", exc_info=True)
            finally:
                if free_slot is not None:
                    free_slot()
                    self._slot_freed()
                with anyio.CancelScope(shield=True):
                    await lift()

        if self._tasks is None:
            await close()
        else:
            self._tasks.start_soon(close)

    async def close(self, conversation: str) -> bool:
        """End a conversation's warm process; False if it had none."""
        return await self.warm.close(conversation)

    async def upkeep(self) -> None:
        """Close expired warm processes, measure the rest and trim them to the memory budget."""
        await self.warm.sweep()
        await self.warm.fit_memory()
