"""`ClaudeBridge`: the Python API under the MCP tools and the HTTP APIs.

    async with ClaudeBridge(Policy.load()) as claude:
        first = await claude.ask("Remember the word kiwi", model="haiku")
        again = await claude.ask("Which word?", session_id=first.session_id)

Every call is checked against the policy, run in the CLI, and either returns an `AskResult`
or raises a `ClaudeMCPError` whose message says what to fix. The bridge composes the parts and
owns their lifecycle: the run pipeline (`runner`), the process pool (`pool`, over a `launcher`),
the job engine (`job_engine`), the conversations and the meter; it does none of their work.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
from pydantic import ValidationError

from ..config.call_settings import CallSettings
from ..config.policy import Policy
from ..errors import ClaudeMCPError, InvalidArguments
from ..state import legacy
from ..state.conversations import Conversations, SessionInfo, SessionTranscript, sticky_settings
from ..state.open import store_for
from ..state.sticky import config_dir, default_state_dir, sticky
from ..state.store import JobRecord, Store
from ..telemetry import metrics
from ..telemetry.activity import ACTIVITY, Activity
from . import upkeep
from .client_tools import ClientTools
from .identity import current_depth, inherited_budget, replica_id
from .job_book import JobBook
from .job_engine import JobEngine, Request
from .jobs import Job, JobView
from .launcher import Launcher
from .metering import Meter
from .observer import RunObserver
from .options import RunTarget, build_options
from .permissions import PermissionGate
from .pool import ProcessPool
from .process import SdkLauncher
from .results import AskResult
from .runner import CredentialCheck, Planner, RunContext, Runner
from .slots import BridgeSlots, RunSlots
from .turns import SessionLocks

logger = logging.getLogger(__name__)


class ClaudeBridge:
    """Delegates prompts to Claude Code under a server policy.

    Use it as an async context manager (re-entrant: each connection of a server enters it): on
    the last exit every process it started is closed."""

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        depth: int | None = None,
        shared_slots: RunSlots | None = None,
        store: Store | None = None,
        namespace: str = "local",
        replica: str | None = None,
        label: str | None = None,
        launcher: Launcher | None = None,
        activity: Activity = ACTIVITY,
    ) -> None:
        """`shared_slots`: a cap shared with other bridges (tenants); this bridge's own
        `max_concurrent` is then its share of it. `store`: a store shared with other bridges,
        opened and closed by its owner, in which this bridge keeps `namespace`'s state; without
        one the bridge opens its own (the policy's `state_url`, or SQLite in its state dir).
        `label`: the bridge's tenant in metrics (default: its namespace, or `caller`).
        `launcher`: how CLI processes are started (shared by a server's bridges)."""
        policy = _clipped(policy or Policy())
        self.policy = policy
        self.namespace = namespace
        """Whose state this bridge keeps: the tenant, or the caller."""
        depth = current_depth() if depth is None else depth
        replica = replica or replica_id()
        state_dir = policy.state_dir or default_state_dir(policy.cli_env)
        self.store = store if store is not None else store_for(policy.state_url, state_dir)
        self.conversations = Conversations(self.store, namespace)
        self.jobs = JobBook(self.store, replica, policy.job_lease_s)
        self.meter = Meter(self.store, namespace, policy, depth=depth)
        self.credential = CredentialCheck(policy)
        locks = SessionLocks(self.store, namespace=namespace, holder=replica, lease_s=policy.job_lease_s)
        slots = BridgeSlots(RunSlots(policy.max_concurrent, policy.max_queued), shared_slots)
        prompts = policy.permission_prompts
        gate = PermissionGate(
            mode="deny" if isinstance(prompts, tuple) else prompts,
            rules=prompts if isinstance(prompts, tuple) else (),
            timeout_s=policy.permission_timeout_s,
        )
        self.pool = ProcessPool(
            policy,
            launcher or SdkLauncher(),
            gate,
            locks,
            child_depth=depth + 1,
            session_store=self.conversations.transcripts,
            cooled=self._cooled,
            slot_freed=lambda: self.engine.wake(),
            spares_after=self.credential.accepted if policy.credentials == "caller" else None,
        )
        tenant = label or ("caller" if policy.credentials == "caller" else namespace)
        self._runner = Runner(
            RunContext(policy, depth, replica, tenant, namespace, activity),
            planner=Planner(policy, self.conversations, depth=depth, state_dir=state_dir),
            conversations=self.conversations,
            locks=locks,
            pool=self.pool,
            slots=slots,
            meter=self.meter,
            credential=self.credential,
        )
        runs_here = depth < policy.max_depth
        self.engine = JobEngine(
            self.jobs,
            policy,
            namespace,
            run=self._run_job,
            free_slots=lambda spoken_for: slots.free(spoken_for) if runs_here else 0,
            draining=lambda: activity.draining,
        )
        self._life = _Life(own_store=store is None, state_dir=state_dir, locks=locks, slots=slots, tenant=tenant)

    async def __aenter__(self) -> Self:
        """Open the store (if it is the bridge's own), import conversations an earlier version left
        on disk, and start the housekeeping, the pool and the job engine."""
        life = self._life
        life.users += 1
        if life.stack is None:
            async with AsyncExitStack() as stack:
                if life.own_store:
                    await self.store.open()
                    stack.push_async_callback(_shielded(self.store.close))
                stack.callback(metrics.remove_live_source, self._live)
                metrics.add_live_source(self._live)
                await stack.enter_async_context(self.pool)
                await stack.enter_async_context(self.engine)
                life.tasks = await stack.enter_async_context(anyio.create_task_group())
                stack.callback(life.tasks.cancel_scope.cancel)
                self._start_upkeep(life.tasks)
                life.stack = stack.pop_all()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        life = self._life
        life.users -= 1
        if life.users > 0 or life.stack is None:
            return
        stack, life.stack, life.tasks = life.stack, None, None
        await stack.aclose()  # the parts shield their own closing

    def _start_upkeep(self, tasks: anyio.abc.TaskGroup) -> None:
        policy, life = self.policy, self._life
        every_s, retention_s, lease_s = min(30.0, policy.warm_ttl_s / 4), policy.job_retention_s, policy.job_lease_s
        tasks.start_soon(
            lambda: upkeep.housekeeping(self.pool, self.jobs, self.meter, every_s=every_s, job_retention_s=retention_s)
        )
        tasks.start_soon(lambda: upkeep.sync(self.jobs, life.locks, lease_s=lease_s))
        tasks.start_soon(self._import_local)
        tasks.start_soon(self.meter.run_writer)

    def _live(self) -> metrics.Live:
        """This bridge's share of the live gauges (a shared cap is its owner's to count)."""
        live = metrics.Live(queued=self._life.slots.own.queued)
        live.warm = len(self.pool.warm.live_ids())
        live.warm_bytes = self.pool.warm.memory_bytes()
        live.jobs.update(job.status for job in self.jobs.live.values())
        return live

    @property
    def label(self) -> str:
        """The bridge's tenant as a bounded metric label: its tenant's name, `local`, or `caller`."""
        return self._life.tenant

    @property
    def idle(self) -> bool:
        """No job runs here and none is queued that only this replica's bridge can run (it holds
        the secrets the job needs): closing the bridge would lose nothing."""
        return self.engine.idle

    @property
    def credential_refused(self) -> bool:
        """In caller mode: the model API rejected the credential, which it had never accepted."""
        return self.credential.refused

    def start_soon(self, func: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run `func` in the bridge's own tasks: it may outlive the request that started it, and is
        cancelled when the bridge closes. `func` must handle its own errors."""
        if self._life.tasks is None:
            raise ClaudeMCPError("This needs a running bridge: use `async with ClaudeBridge(...)`.")
        self._life.tasks.start_soon(func)

    async def ask(
        self,
        prompt: str,
        *,
        session_id: str | None = None,
        settings: CallSettings | None = None,
        observer: RunObserver | None = None,
        client_tools: ClientTools | None = None,
        **setting_values: Any,
    ) -> AskResult:
        """Ask Claude; continue `session_id` if given. Settings as a model or as keywords.
        `client_tools`: the caller's own tools, whose calls go to `client_tools.caller`."""
        settings = _settings(settings, setting_values)
        target = RunTarget(resume=session_id)
        return await self._runner.run(prompt, settings, target, observer, client_tools=client_tools)

    async def fork(
        self,
        session_id: str,
        prompt: str | None = None,
        *,
        settings: CallSettings | None = None,
        observer: RunObserver | None = None,
        **setting_values: Any,
    ) -> AskResult | str:
        """Branch a conversation. With a prompt, ask the new branch at once (an `AskResult`);
        without one, return the new session id. The original is untouched either way."""
        settings = _settings(settings, setting_values)
        if prompt is None:
            planner = self._runner.planner
            origin = await planner.find(session_id)
            await planner.room_for_a_conversation()
            return await self.conversations.fork(origin, sticky(settings).over(sticky_settings(origin)))
        return await self._runner.run(prompt, settings, RunTarget(resume=session_id, fork=True), observer)

    async def models(self) -> list[dict[str, Any]]:
        """The models the CLI offers, in its own words (aliases with the ids they resolve to).
        Asked of a CLI started for the purpose, once per bridge."""
        if self._life.models is None:
            options = build_options(
                self.policy.resolve(CallSettings()), self.policy, child_depth=self._runner.context.depth + 1
            )
            process = self.pool.launcher.launch(options)
            try:
                await process.start()
                info = await process.server_info()
            finally:
                await process.close()
            self._life.models = [m for m in (info or {}).get("models") or [] if isinstance(m, dict)]
        return self._life.models

    async def list_sessions(self, *, limit: int = 20, offset: int = 0) -> list[SessionInfo]:
        """Conversations, most recent first."""
        return await self.conversations.page(limit=limit, offset=offset)

    async def get_session(self, session_id: str, *, limit: int = 50, offset: int = 0) -> SessionTranscript:
        """A page of a conversation's messages."""
        return await self.conversations.read(await self._runner.planner.find(session_id), limit=limit, offset=offset)

    async def close_session(self, session_id: str) -> bool:
        """End a conversation's warm process (the transcript stays). False if none was open."""
        async with self._life.locks.hold(session_id, timeout_s=self.policy.default_timeout_s, on_wait=None):
            return await self.pool.close(session_id)

    async def delete_session(self, session_id: str) -> None:
        """Close a conversation's warm process and delete its transcript."""
        async with self._life.locks.hold(session_id, timeout_s=self.policy.default_timeout_s, on_wait=None):
            await self.pool.close(session_id)
            await self.conversations.delete(await self._runner.planner.find(session_id))
            await legacy.remove_local(config_dir(self.policy.cli_env), session_id)

    async def start_job(
        self,
        owner: str,
        prompt: str,
        *,
        agent: str | None = None,
        session_id: str | None = None,
        fork: bool = False,
        settings: CallSettings | None = None,
        tool: str | None = None,
        kept: bool = True,
    ) -> Job:
        """Start a run here, in the background, and return its job at once (continuing `session_id`,
        or a fork of it). Bad settings fail here, not in the job. The run is bounded by its timeout;
        its job is kept `job_retention_s` after. Not `kept`: a call's own run, which joins the job
        book only if the call lets it go on without it (`keep`)."""
        request = Request(prompt, settings or CallSettings(), RunTarget(resume=session_id, fork=fork))
        return await self.engine.start(owner, request, agent=agent, tool=tool, kept=kept)

    async def keep(self, job: Job) -> None:
        """A call's own run goes on without the call: it becomes a job like any other."""
        await self.engine.keep(job)

    async def submit_job(
        self,
        owner: str,
        prompt: str,
        *,
        agent: str | None = None,
        session_id: str | None = None,
        fork: bool = False,
        settings: CallSettings | None = None,
        tool: str | None = None,
        batch_id: str | None = None,
        custom_id: str | None = None,
        counted: bool = True,
    ) -> JobRecord:
        """Queue a run in the store for whichever replica has a free run slot (this one first, if it
        has), and return its record at once. Bad settings fail here, not in the job. A job whose
        run needs a secret held only in this replica's memory (the caller's credential, MCP
        servers' settings) is run here, and fails if this replica stops before it starts. Not
        `counted`: a request of a Message Batch, which has a limit of its own (not `max_jobs`)."""
        request = Request(prompt, settings or CallSettings(), RunTarget(resume=session_id, fork=fork))
        return await self.engine.submit(
            owner, request, agent=agent, tool=tool, batch_id=batch_id, custom_id=custom_id, counted=counted
        )

    async def cancel_job(self, owner: str, job_id: str) -> JobView:
        """Stop a job's run and every process it started, on whichever replica runs it; a
        finished job is left as it is."""
        return await self.engine.cancel(owner, job_id)

    async def _run_job(
        self,
        job: Job,
        prompt: str,
        settings: CallSettings,
        target: RunTarget,
        *,
        keep_warm: bool,
        queueing: Callable[[], None] | None,
    ) -> AskResult:
        return await self._runner.run(
            prompt, settings, target, job, agent=job.agent, keep_warm=keep_warm, queueing=queueing
        )

    async def _import_local(self) -> None:
        try:
            await legacy.import_local(self.conversations, config_dir(self.policy.cli_env), self._life.state_dir)
        except Exception:
            logger.warning("could not import local conversations into the store", exc_info=True)

    async def _cooled(self, session_id: str) -> None:
        """A warm process was closed: no replica holds the conversation warm any more."""
        try:
            await self.conversations.set_warm(session_id, None)
        except Exception:
            logger.debug("could not record that %s is no longer warm", session_id, exc_info=True)


class _Life:
    """What the bridge holds while it runs, and the parts only its own methods use."""

    def __init__(
        self, *, own_store: bool, state_dir: Path, locks: SessionLocks, slots: BridgeSlots, tenant: str
    ) -> None:
        self.own_store = own_store
        self.state_dir = state_dir
        self.locks = locks
        self.slots = slots
        self.tenant = tenant
        self.users = 0
        self.stack: AsyncExitStack | None = None
        self.tasks: anyio.abc.TaskGroup | None = None
        self.models: list[dict[str, Any]] | None = None


def _shielded(close: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    async def closing() -> None:
        with anyio.CancelScope(shield=True):
            await close()

    return closing


def _clipped(policy: Policy) -> Policy:
    """Below a budgeted run, no call may cost more than that whole run may."""
    if (budget := inherited_budget()) is not None and (policy.max_budget_usd or budget) >= budget:
        return policy.model_copy(update={"max_budget_usd": budget})
    return policy


def _settings(settings: CallSettings | None, values: dict[str, Any]) -> CallSettings:
    if settings is not None:
        if values:
            raise TypeError("pass settings either as a CallSettings or as keywords, not both")
        return settings
    try:
        return CallSettings(**values)
    except ValidationError as exc:
        raise InvalidArguments(f"invalid settings: {exc}") from None
