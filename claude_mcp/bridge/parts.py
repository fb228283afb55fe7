"""The parts of one bridge, wired to one another, and their life: what `ClaudeBridge` composes.

`assemble` builds them from a policy (no I/O); `Parts.running` opens the store (if it is the
bridge's own), enters the process pool and the job engine, and runs the bridge's upkeep, until
its block ends.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from ..config.call_settings import CallSettings
from ..config.policy import Policy
from ..state import legacy
from ..state.conversations import Conversations
from ..state.open import store_for
from ..state.remote_chains import SOCKET_ENV, TOKEN_ENV, HopLedger, RemoteChains
from ..state.sticky import config_dir, default_state_dir
from ..state.store import LedgerAccounts, Store
from ..state.usage_spool import UsageSpool
from ..telemetry import metrics
from ..telemetry.activity import Activity
from . import upkeep
from .chain_channel import ChainChannel
from .job_book import JobBook
from .job_engine import JobEngine
from .launcher import Launcher
from .metering import Meter
from .options import build_options
from .permissions import PermissionGate
from .pool import ProcessPool
from .runner import CredentialCheck, Planner, RunContext, Runner
from .slots import BridgeSlots, RunSlots
from .turns import SessionLocks
from .walls import WALL_DIR, WalledLauncher, Walls, write_wrapper

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Parts:
    """A bridge's parts, and what it holds while it runs."""

    store: Store
    own_store: bool
    state_dir: Path
    conversations: Conversations
    jobs: JobBook
    meter: Meter
    locks: SessionLocks
    slots: BridgeSlots
    pool: ProcessPool
    runner: Runner
    engine: JobEngine
    tasks: anyio.abc.TaskGroup | None = None
    channel: ChainChannel | None = None
    """The namespace's chain channel, where its CLI processes run in a sandbox (`chain_channel`)."""
    models: list[dict[str, Any]] | None = field(default=None)
    users: int = 0
    """How many have entered the bridge (each connection of a server does): it runs while any has."""
    _running: AsyncExitStack | None = None

    async def enter(self) -> None:
        self.users += 1
        if self._running is None:
            async with AsyncExitStack() as stack:
                await stack.enter_async_context(self.running())
                self._running = stack.pop_all()

    async def exit(self) -> None:
        self.users -= 1
        if self.users == 0 and self._running is not None:
            running, self._running = self._running, None
            await running.aclose()

    @property
    def policy(self) -> Policy:
        return self.runner.context.policy

    async def cli_models(self) -> list[dict[str, Any]]:
        """The models the CLI offers, asked of a CLI started for the purpose once per bridge."""
        if self.models is None:
            options = build_options(
                self.policy.resolve(CallSettings()), self.policy, child_depth=self.runner.context.depth + 1
            )
            process = self.pool.launcher.launch(options)
            try:
                await process.start()
                info = await process.server_info()
            finally:
                await process.close()
            self.models = [m for m in (info or {}).get("models") or [] if isinstance(m, dict)]
        return self.models

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The parts at work for the block: on its end every process they started is closed."""
        async with AsyncExitStack() as stack:
            if self.own_store:
                await self.store.open()
                stack.push_async_callback(_shielded(self.store.close))
            if isinstance(self.meter.store, HopLedger):  # after the writer's last records
                stack.push_async_callback(_shielded(self.meter.store.remote.aclose))
            stack.callback(metrics.remove_live_source, self._live)
            metrics.add_live_source(self._live)
            if self.channel is not None:
                await stack.enter_async_context(self._serving(self.channel))
            await stack.enter_async_context(self.pool)
            await stack.enter_async_context(self.engine)
            async with anyio.create_task_group() as tasks:
                self.tasks = tasks
                self._start_upkeep(tasks)
                try:
                    yield
                finally:
                    self.tasks = None
                    tasks.cancel_scope.cancel()

    @asynccontextmanager
    async def _serving(self, channel: ChainChannel) -> AsyncIterator[None]:
        """The chain channel serves, and the launcher offers it to each CLI process, for the block."""
        launcher = self.pool.launcher
        async with channel.running():
            if isinstance(launcher, WalledLauncher) and launcher.chains is None:
                launcher.chains = channel
            try:
                yield
            finally:
                if isinstance(launcher, WalledLauncher) and launcher.chains is channel:
                    launcher.chains = None

    def _start_upkeep(self, tasks: anyio.abc.TaskGroup) -> None:
        policy = self.policy
        every_s, retention_s, lease_s = min(30.0, policy.warm_ttl_s / 4), policy.job_retention_s, policy.job_lease_s
        tasks.start_soon(
            lambda: upkeep.housekeeping(self.pool, self.jobs, self.meter, every_s=every_s, job_retention_s=retention_s)
        )
        tasks.start_soon(lambda: upkeep.sync(self.jobs, self.locks, lease_s=lease_s))
        tasks.start_soon(self._import_local)
        tasks.start_soon(self.meter.run_writer)

    async def _import_local(self) -> None:
        if self.policy.isolation == "sandbox":
            return  # what a sandboxed namespace left in its config dir is its own writing: nothing to import
        try:
            await legacy.import_local(self.conversations, config_dir(self.policy.cli_env), self.state_dir)
        except Exception:
            logger.warning("could not import local conversations into the store", exc_info=True)

    def _live(self) -> metrics.Live:
        """This bridge's share of the live gauges (a shared cap is its owner's to count)."""
        live = metrics.Live(queued=self.slots.own.queued)
        live.warm = len(self.pool.warm.live_ids())
        live.warm_bytes = self.pool.warm.memory_bytes()
        live.jobs.update(job.status for job in self.jobs.live.values())
        return live

    async def cooled(self, session_id: str) -> None:
        """A warm process was closed: no replica holds the conversation warm any more."""
        try:
            await self.conversations.set_warm(session_id, None)
        except Exception:
            logger.debug("could not record that %s is no longer warm", session_id, exc_info=True)


@dataclass(frozen=True, slots=True)
class Where:
    """Where a bridge runs: its namespace and tenant label, its replica, its depth in a chain."""

    namespace: str
    tenant: str
    replica: str
    depth: int


def _spool(policy: Policy, where: Where, directory: Path | None) -> UsageSpool | None:
    """Where a top-level bridge keeps the usage records its store did not take over a stop: in `directory`,
    the server's own (none without one: a bridge's own state dir may be in its namespace's sandbox)."""
    if directory is None or where.depth > 0 or not policy.metering:
        return None
    return UsageSpool(directory, where.namespace, str(config_dir(policy.cli_env)))


def assemble(
    policy: Policy,
    where: Where,
    *,
    store: Store | None,
    shared_slots: RunSlots | None,
    launcher: Launcher | None,
    activity: Activity,
    above: Mapping[str, str] | None = None,
    server_dir: Path | None = None,
) -> Parts:
    """Build a bridge's parts (no I/O). `store`: a shared store its owner opens, else the bridge's own.
    `above`: the chain channel of the server above (a hop below a sandboxed CLI: `identity.inherited_channel`).
    `server_dir`: the server's own state directory, out of every sandbox's view, where usage records the store
    did not take are kept over a stop (default: the bridge's own state dir, if the store is its own too)."""
    state_dir = policy.state_dir or default_state_dir(policy.cli_env)
    own = store if store is not None else store_for(policy.state_url, state_dir)
    spool = _spool(policy, where, server_dir if server_dir is not None else state_dir if store is None else None)
    conversations = Conversations(own, where.namespace)
    locks = SessionLocks(own, namespace=where.namespace, holder=where.replica, lease_s=policy.job_lease_s)
    slots = BridgeSlots(RunSlots(policy.max_concurrent, policy.max_queued), shared_slots)
    credential = CredentialCheck(policy)
    meter = Meter(_chains_of(own, above), where.namespace, policy, depth=where.depth, spool=spool)
    jobs = JobBook(own, where.replica, policy.job_lease_s)
    engine_of: list[JobEngine] = []
    launcher = launcher or Walls("none", write_wrapper(state_dir / WALL_DIR), person=True).launcher()
    pool = ProcessPool(
        policy,
        launcher,
        _gate(policy),
        locks,
        child_depth=where.depth + 1,
        session_store=conversations.transcripts,
        cooled=lambda session_id: parts.cooled(session_id),
        slot_freed=lambda: engine_of[0].wake(),
        spares_after=credential.accepted if policy.credentials == "caller" else None,
    )
    runner = Runner(
        RunContext(policy, where.depth, where.replica, where.tenant, where.namespace, activity),
        planner=Planner(policy, conversations, depth=where.depth, state_dir=state_dir),
        conversations=conversations,
        locks=locks,
        pool=pool,
        slots=slots,
        meter=meter,
        credential=credential,
    )
    runs_here = where.depth < policy.max_depth
    engine = JobEngine(
        jobs,
        policy,
        where.namespace,
        run=runner.run_job,
        free_slots=lambda spoken_for: slots.free(spoken_for) if runs_here else 0,
        draining=lambda: activity.draining,
    )
    engine_of.append(engine)
    parts = Parts(own, store is None, state_dir, conversations, jobs, meter, locks, slots, pool, runner, engine)
    parts.channel = _channel_for(launcher, own, where.namespace)
    return parts


def _chains_of(own: Store, above: Mapping[str, str] | None) -> LedgerAccounts:
    """The ledger a bridge's meter keeps chains in: its own store, or, below a sandboxed CLI, the
    chain channel of the server above for the chains (`remote_chains.HopLedger`)."""
    if not above:
        return own
    return HopLedger(own, RemoteChains(above[SOCKET_ENV], above[TOKEN_ENV]))


def _channel_for(launcher: Launcher, own: Store, namespace: str) -> ChainChannel | None:
    """A chain channel for the namespace, where its CLI processes run in a sandbox (the hops below
    them cannot see the store)."""
    if not isinstance(launcher, WalledLauncher) or launcher.walls.isolation != "sandbox":
        return None
    return ChainChannel(own, namespace)


def _gate(policy: Policy) -> PermissionGate:
    prompts = policy.permission_prompts
    return PermissionGate(
        mode="deny" if isinstance(prompts, tuple) else prompts,
        rules=prompts if isinstance(prompts, tuple) else (),
        timeout_s=policy.permission_timeout_s,
    )


def _shielded(close: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    async def closing() -> None:
        with anyio.CancelScope(shield=True):
            await close()

    return closing
