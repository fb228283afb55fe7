"""Callers who bring their own Claude credential (`credentials = "caller"`): a bridge each,
made on the caller's first request and dropped when idle.

A caller's bridge runs its CLI processes with that caller's credential (and none of the
server's), in a Claude config directory of its own, and keeps its state in its namespace of
the shared store: the namespace a keyed hash of the credential, or, where tenant tokens are
configured, the tenant (the credential then only pays for the runs). The pool is bounded
(`max_callers`): a new caller past the bound displaces the least recently used idle one, or is
refused as busy; a caller idle for `caller_idle_s` is dropped, its warm processes closed and
its credential forgotten.
"""

from __future__ import annotations

import functools
import logging
import shutil
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio

from ..config.credentials import CallerCredential
from ..config.policy import Policy
from ..errors import Busy
from ..state.store import Store
from .claude import ClaudeBridge
from .slots import RunSlots
from .walls import Walls, namespace_dirs

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class _Caller:
    bridge: ClaudeBridge
    last_used: float
    stop: anyio.Event
    stopped: anyio.Event
    dirs: tuple[Path, ...]
    """Its own directories: its Claude config dir and its workspace."""
    in_use: int = 0

    @property
    def idle(self) -> bool:
        return self.in_use == 0 and self.bridge.idle


class CallerPool:
    """The bridges of the callers being served, by tenant and credential."""

    def __init__(
        self,
        policies: dict[str, Policy],
        *,
        store: Store,
        replica: str,
        shared_slots: RunSlots,
        walls: Walls,
        workspaces: Path,
        namespace_key: bytes,
        state_root: Path,
        max_callers: int,
        idle_s: float,
    ) -> None:
        """`policies`: each tenant's policy (the key `""` when there are no tenants)."""
        self.policies = policies
        self._store = store
        self._replica = replica
        self._shared_slots = shared_slots
        self._walls = walls
        self._workspaces = workspaces
        self._key = namespace_key
        self._state_root = state_root
        self._max = max_callers
        self._idle_s = idle_s
        self._callers: OrderedDict[str, _Caller] = OrderedDict()
        self._creating = anyio.Lock()
        self._dropping: dict[str, anyio.Event] = {}
        """Callers being forgotten (their credential was rejected), until their directory is gone."""
        self._tasks: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> CallerPool:
        """Start serving: the callers' bridges (and the reaper) run in the pool's own tasks."""
        self._tasks = await anyio.create_task_group().__aenter__()
        self._tasks.start_soon(self._reap_every, min(30.0, self._idle_s / 4))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        tasks, self._tasks = self._tasks, None
        if tasks is None:
            return
        with anyio.CancelScope(shield=True):
            await self.close_all()
        tasks.cancel_scope.cancel()
        await tasks.__aexit__(None, None, None)

    def __len__(self) -> int:
        return len(self._callers)

    @asynccontextmanager
    async def serving(self, tenant: str, credential: CallerCredential) -> AsyncIterator[ClaudeBridge]:
        """The caller's bridge, held for one request."""
        caller = await self._caller(tenant, credential)
        caller.in_use += 1
        try:
            yield caller.bridge
        finally:
            caller.in_use -= 1
            caller.last_used = anyio.current_time()
            if caller.bridge.credential_refused and caller.idle:
                with anyio.CancelScope(shield=True):
                    await self._drop_refused(caller)

    async def _drop_refused(self, caller: _Caller) -> None:
        """Forget a caller whose credential the model API rejected before it was ever accepted: its
        bridge and processes, and the Claude config directory its attempt made."""
        for key, held in list(self._callers.items()):
            if held is caller:
                del self._callers[key]
                gone = anyio.Event()
                self._dropping[key] = gone
                try:
                    await self._close(caller)
                    for path in caller.dirs:
                        await anyio.to_thread.run_sync(functools.partial(shutil.rmtree, path, True))
                finally:
                    del self._dropping[key]
                    gone.set()

    async def _caller(self, tenant: str, credential: CallerCredential) -> _Caller:
        hashed = credential.namespace(self._key)
        key = f"{tenant}/{hashed}"
        while (dropping := self._dropping.get(key)) is not None:  # not while its directory is being removed
            await dropping.wait()
        async with self._creating:
            if (caller := self._callers.get(key)) is not None:
                self._callers.move_to_end(key)
                caller.last_used = anyio.current_time()
                return caller
            if len(self._callers) >= self._max:
                await self._displace()
            policy = self.policies[tenant]
            name = f"{tenant}-{hashed}" if tenant else hashed
            dirs = namespace_dirs(self._state_root / "callers" / name, self._workspaces, name, None)
            bridge = ClaudeBridge(
                dirs.policy(policy, {**policy.cli_env, **credential.cli_env()}),
                shared_slots=self._shared_slots,
                store=self._store,
                namespace=tenant or hashed,
                replica=self._replica,
                label=tenant or "caller",  # a tenant's name is a bounded label; a hash is not
                launcher=self._walls.launcher(dirs.writable),
                server_dir=self._state_root,
            )
            caller = await self._start(bridge, dirs.writable)
            self._callers[key] = caller
            return caller

    async def _start(self, bridge: ClaudeBridge, dirs: tuple[Path, ...]) -> _Caller:
        """Enter the bridge in a task of the pool's own, which holds it until told to stop."""
        if self._tasks is None:
            raise Busy("The server is shutting down; retry on another replica or in a little while.")
        ready, stop, stopped = anyio.Event(), anyio.Event(), anyio.Event()
        failure: list[BaseException] = []

        async def hold() -> None:
            try:
                async with bridge:
                    ready.set()
                    await stop.wait()
            except Exception as exc:
                logger.exception("a caller's bridge failed")
                failure.append(exc)
            finally:
                stopped.set()
                ready.set()

        self._tasks.start_soon(hold)
        await ready.wait()
        if failure:
            raise Busy("The server could not start serving you (its store may be unreachable); retry shortly.")
        return _Caller(bridge, anyio.current_time(), stop, stopped, dirs)

    async def _displace(self) -> None:
        for key, caller in self._callers.items():
            if caller.idle:
                del self._callers[key]
                await self._close(caller)
                return
        raise Busy(
            f"The server is serving {len(self._callers)} callers, its limit, and none of them is idle. Retry in a "
            "little while."
        )

    async def reap(self) -> None:
        """Drop the callers idle for longer than `idle_s`."""
        deadline = anyio.current_time() - self._idle_s
        for key, caller in list(self._callers.items()):
            if not caller.idle:
                continue
            if caller.bridge.credential_refused:
                await self._drop_refused(caller)
            elif caller.last_used <= deadline:
                del self._callers[key]
                await self._close(caller)

    async def _reap_every(self, every_s: float) -> None:
        while True:
            await anyio.sleep(every_s)
            await self.reap()

    async def close_all(self) -> None:
        while self._callers:
            _, caller = self._callers.popitem()
            await self._close(caller)

    @staticmethod
    async def _close(caller: _Caller) -> None:
        caller.stop.set()
        with anyio.CancelScope(shield=True):
            await caller.stopped.wait()
