"""`ClaudeBridge`: the Python API under the MCP tools.

    async with ClaudeBridge(Policy.load()) as claude:
        first = await claude.ask("Remember the word kiwi", model="haiku")
        again = await claude.ask("Which word?", session_id=first.session_id)

Every call is checked against the policy, run in the CLI, and either returns an `AskResult`
or raises a `ClaudeMCPError` whose message says what to fix. This module is the one place a
call goes from policy to result (`_run`), so it stays whole; warm processes, the spare,
turn-taking, run slots and jobs each live in their own module.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from types import TracebackType
from typing import Any, Self

import anyio
from pydantic import ValidationError

from ..config.call_settings import CallSettings
from ..config.credentials import CALLER_REJECTED
from ..config.policy import Policy
from ..errors import APIError, Busy, ClaudeMCPError, DepthExceeded, InvalidArguments, SessionNotFound
from ..state import legacy
from ..state.conversations import Conversations, SessionInfo, SessionTranscript, sticky_settings
from ..state.open import store_for
from ..state.sticky import config_dir, default_state_dir, sticky
from ..state.store import JobRecord, SessionRecord, Store
from ..telemetry.activity import ACTIVITY
from . import instrument, upkeep
from .client_tools import ClientTools, ToolRelay, tools_key
from .identity import current_depth, inherited_budget, replica_id
from .job_book import SYNC_S, JobBook
from .jobs import Job, JobView
from .metering import Meter
from .observer import RunObserver
from .options import RunTarget, build_options
from .permissions import PermissionGate
from .process import CLIProcess
from .results import AskResult, RunFailed, failure_of
from .slots import Keep, RunSlots, keep_all
from .spare import SparePool
from .turns import SessionLocks
from .warm import WarmPool, WarmSession

logger = logging.getLogger(__name__)

IDLE_CLAIM_S = 2.0
"""How often a bridge with nothing to claim looks for queued jobs (at most)."""


class ClaudeBridge:
    """Delegates prompts to Claude Code under a server policy.

    Use it as an async context manager: on exit every warm CLI process is closed.
    """

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        depth: int | None = None,
        shared_slots: RunSlots | None = None,
        store: Store | None = None,
        namespace: str = "local",
        replica: str | None = None,
    ) -> None:
        """`shared_slots`: a cap shared with other bridges (tenants); this bridge's own
        `max_concurrent` is then its share of it. `store`: a store shared with other bridges,
        opened and closed by its owner, in which this bridge keeps `namespace`'s state; without
        one the bridge opens its own (the policy's `state_url`, or SQLite in its state dir)."""
        policy = policy or Policy()
        if (budget := inherited_budget()) is not None and (policy.max_budget_usd or budget) >= budget:
            # Below a budgeted run, no call may cost more than that whole run may.
            policy = policy.model_copy(update={"max_budget_usd": budget})
        self.policy = policy
        self.depth = current_depth() if depth is None else depth
        self.slots = RunSlots(self.policy.max_concurrent, self.policy.max_queued)
        self.shared_slots = shared_slots
        self.replica = replica or replica_id()
        self.state_dir = self.policy.state_dir or default_state_dir(self.policy.cli_env)
        self._own_store = store is None
        self.store = store if store is not None else store_for(self.policy.state_url, self.state_dir)
        self.namespace = namespace
        """Whose state this bridge keeps: the tenant, or the caller."""
        self.conversations = Conversations(self.store, namespace)
        self.warm = WarmPool(
            self.policy.max_warm,
            self.policy.warm_ttl_s,
            on_closed=self._cooled,
            max_warm_mb=self.policy.max_warm_mb,
            retire=self._retire_idle,
        )
        lease_s = self.policy.job_lease_s
        self._locks = SessionLocks(self.store, namespace=namespace, holder=self.replica, lease_s=lease_s)
        self.jobs = JobBook(self.store, self.replica, lease_s)
        self.meter = Meter(self.store, namespace, self.policy, depth=self.depth)
        self._tasks: anyio.abc.TaskGroup | None = None
        self._users = 0
        self._models: list[dict[str, Any]] | None = None
        prompts = self.policy.permission_prompts
        self.permissions = PermissionGate(
            mode="deny" if isinstance(prompts, tuple) else prompts,
            rules=prompts if isinstance(prompts, tuple) else (),
            timeout_s=self.policy.permission_timeout_s,
        )
        self._held: dict[str, CallSettings] = {}
        """The settings of queued jobs only this replica may run (they hold secrets)."""
        self._claims_wanted = anyio.Event()
        self._unqueued = 0
        self._claiming = anyio.Lock()
        """Jobs claimed here not yet queued for a run slot (or holding one): their slots are spoken for."""
        self._spare = SparePool(
            self.policy, self.permissions, child_depth=self.depth + 1, session_store=self.conversations.transcripts
        )
        self.credential_accepted = anyio.Event()
        """Set once a run on the bridge's credential got past the model API's authentication."""
        self.credential_refused = False
        """In caller mode: the model API rejected the credential before it was ever accepted."""

    async def __aenter__(self) -> Self:
        """Open the store (if it is the bridge's own), import conversations an earlier version left
        on disk, and start the housekeeping. Re-entrant: each connection of a server enters it."""
        self._users += 1
        if self._tasks is None:
            if self._own_store:
                await self.store.open()
            self._tasks = anyio.create_task_group()
            await self._tasks.__aenter__()
            every_s = min(30.0, self.policy.warm_ttl_s / 4)
            retention_s = self.policy.job_retention_s
            self._tasks.start_soon(
                lambda: upkeep.housekeeping(
                    self.warm, self.jobs, self.meter, every_s=every_s, job_retention_s=retention_s
                )
            )
            self._tasks.start_soon(lambda: upkeep.sync(self.jobs, self._locks, lease_s=self.policy.job_lease_s))
            self._tasks.start_soon(self._import_local)
            self._tasks.start_soon(self.claim_jobs)
            self._tasks.start_soon(self.meter.run_writer)
            if self.policy.spare_process and self.depth < self.policy.max_depth:
                self._tasks.start_soon(self._run_spares)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._users -= 1
        if self._users > 0 or self._tasks is None:
            return
        tasks, self._tasks = self._tasks, None
        with anyio.CancelScope(shield=True):
            await self.warm.close_all()
            await self._spare.close()
        tasks.cancel_scope.cancel()
        await tasks.__aexit__(None, None, None)
        if self._own_store:
            with anyio.CancelScope(shield=True):
                await self.store.close()

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
        return await self._run(prompt, settings, RunTarget(resume=session_id), observer, client_tools=client_tools)

    @property
    def idle(self) -> bool:
        """No job runs here and none is queued that only this replica's bridge can run (it holds
        the secrets the job needs): closing the bridge would lose nothing."""
        return not self.jobs.pinned and all(job.done.is_set() for job in self.jobs.live.values())

    def start_soon(self, func: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run `func` in the bridge's own tasks: it may outlive the request that started it, and is
        cancelled when the bridge closes. `func` must handle its own errors."""
        if self._tasks is None:
            raise ClaudeMCPError("This needs a running bridge: use `async with ClaudeBridge(...)`.")
        self._tasks.start_soon(func)

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
            origin = await self._find(session_id)
            await self._room_for_a_conversation()
            return await self.conversations.fork(origin, sticky(settings).over(sticky_settings(origin)))
        return await self._run(prompt, settings, RunTarget(resume=session_id, fork=True), observer)

    async def models(self) -> list[dict[str, Any]]:
        """The models the CLI offers, in its own words (aliases with the ids they resolve to).
        Asked of a CLI started for the purpose, once per bridge."""
        if self._models is None:
            options = build_options(self.policy.resolve(CallSettings()), self.policy, child_depth=self.depth + 1)
            process = CLIProcess(options)
            try:
                await process.start()
                info = await process.server_info()
            finally:
                await process.close()
            self._models = [m for m in (info or {}).get("models") or [] if isinstance(m, dict)]
        return self._models

    async def list_sessions(self, *, limit: int = 20, offset: int = 0) -> list[SessionInfo]:
        """Conversations, most recent first."""
        return await self.conversations.page(limit=limit, offset=offset)

    async def get_session(self, session_id: str, *, limit: int = 50, offset: int = 0) -> SessionTranscript:
        """A page of a conversation's messages."""
        return await self.conversations.read(await self._find(session_id), limit=limit, offset=offset)

    async def close_session(self, session_id: str) -> bool:
        """End a conversation's warm process (the transcript stays). False if none was open."""
        async with self._locks.hold(session_id, timeout_s=self.policy.default_timeout_s, on_wait=None):
            return await self.warm.close(session_id)

    async def delete_session(self, session_id: str) -> None:
        """Close a conversation's warm process and delete its transcript."""
        async with self._locks.hold(session_id, timeout_s=self.policy.default_timeout_s, on_wait=None):
            await self.warm.close(session_id)
            await self.conversations.delete(await self._find(session_id))
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
        settings = settings or CallSettings()
        await self._admit_job(owner, settings, agent, counted=kept)
        job = Job(owner=owner, agent=agent, session_id=None if fork else session_id, tool=tool, kept=kept)
        if kept:
            await self.jobs.add(job)
        self.start_soon(lambda: self._run_job(job, prompt, settings, RunTarget(resume=session_id, fork=fork)))
        return job

    async def _admit_job(self, owner: str, settings: CallSettings, agent: str | None, *, counted: bool) -> None:
        """Refuse a job this bridge cannot take: not running, over `max_jobs` (if `counted`), or with
        bad settings or an unknown agent (so that they fail now, not in the job)."""
        if self._tasks is None:
            raise ClaudeMCPError("Background jobs need a running bridge: use `async with ClaudeBridge(...)`.")
        if counted and await self.jobs.count(owner) >= self.policy.max_jobs:
            raise Busy(
                f"You have {self.policy.max_jobs} jobs (running or kept), the limit; cancel some or wait for "
                "finished ones to expire."
            )
        resolved = self.policy.resolve(settings)
        if agent is not None and agent not in resolved.agents:
            raise InvalidArguments(f"Unknown agent {agent!r}; known agents: {', '.join(resolved.agents) or '(none)'}.")

    async def keep(self, job: Job) -> None:
        """A call's own run goes on without the call: it becomes a job like any other."""
        if not job.kept:
            job.kept = True
            await self.jobs.add(job)

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
        settings = settings or CallSettings()
        await self._admit_job(owner, settings, agent, counted=counted)
        pinned = self.policy.credentials == "caller" or settings.mcp_servers is not None
        now = time.time()
        record = JobRecord(
            namespace=owner,
            job_id=str(uuid.uuid4()),
            status="queued",
            agent=agent,
            session_id=None if fork else session_id,
            created_at=now,
            updated_at=now,
            request={
                "prompt": prompt,
                "settings": settings.model_dump(mode="json", exclude_unset=True, exclude={"mcp_servers"}),
                "session_id": session_id,
                "fork": fork,
            },
            tool=tool,
            batch_id=batch_id,
            custom_id=custom_id,
        )
        if pinned:
            self._held[record.job_id] = settings
        await self.jobs.submit(record, pinned=pinned)
        await self._claim(record.job_id)
        self._claims_wanted.set()
        return record

    async def claim_jobs(self) -> None:
        """Run until cancelled: claim queued jobs while this bridge has free run slots. Woken by a
        job queued or ended here; otherwise it looks every `SYNC_S`, backing off to `IDLE_CLAIM_S`
        while there is nothing to claim. In caller-credential mode only this replica can run its
        callers' jobs, so it looks only when woken (and every `IDLE_CLAIM_S`, in case)."""
        idle_s = SYNC_S
        while True:
            with anyio.move_on_after(idle_s):
                await self._claims_wanted.wait()
            self._claims_wanted = anyio.Event()
            try:
                claimed = await self._claim()
            except Exception:  # the store is unreachable for now: try again next time
                logger.warning("could not claim queued jobs", exc_info=True)
                claimed = 0
            pinned_only = self.policy.credentials == "caller"
            idle_s = IDLE_CLAIM_S if pinned_only else SYNC_S if claimed else min(idle_s * 2, IDLE_CLAIM_S)

    def _free_slots(self) -> int:
        if ACTIVITY.draining or self.depth >= self.policy.max_depth:
            return 0
        free = self.slots.free - self._unqueued
        if self.shared_slots is not None:
            free = min(free, self.shared_slots.free - self._unqueued)
        return max(0, free)

    async def _claim(self, job_id: str | None = None) -> int:
        """Claim (the oldest, or just `job_id`) queued jobs for the free slots, and start them; how many."""
        for gone in self._held.keys() - self.jobs.pinned:  # cancelled or failed while queued: forget its secrets
            del self._held[gone]
        async with self._claiming:  # one claim at a time, each counting the jobs the last one started
            if self._tasks is None or (free := self._free_slots()) <= 0:
                return 0
            claimed = await self.jobs.claim(self.namespace, free, job_id)
            for record in claimed:
                request = record.request or {}
                settings = self._held.pop(record.job_id, None)
                job = Job.claimed(record)
                self.jobs.live[job.job_id] = job
                try:
                    if settings is None:
                        settings = CallSettings.model_validate(request.get("settings") or {})
                    prompt = str(request["prompt"])
                except (ValidationError, KeyError):
                    job.finish("failed", error="The job's request could not be read on this replica.")
                    await self.jobs.save(job)
                    continue
                target = RunTarget(resume=request.get("session_id"), fork=bool(request.get("fork")))
                self._unqueued += 1
                self._tasks.start_soon(self._run_job, job, prompt, settings, target, self._queued_once())
            return len(claimed)

    def _queued_once(self) -> Callable[[], None]:
        """What a claimed job's run calls once it queues for its run slot (or ends without one)."""
        done = False

        def queued() -> None:
            nonlocal done
            if not done:
                done = True
                self._unqueued -= 1

        return queued

    async def _run_job(
        self,
        job: Job,
        prompt: str,
        settings: CallSettings,
        target: RunTarget,
        queued: Callable[[], None] | None = None,
    ) -> None:
        """Run a job to its end; `queued` (a claimed job's) is called once it queues for its run slot."""
        with job.scope:
            try:
                result = await self._run(
                    prompt, settings, target, job, agent=job.agent, keep_warm=job.tool != "batch", queueing=queued
                )
                job.finish("completed", result=result)
            except RunFailed as exc:
                job.finish("failed", result=exc.result, error=str(exc), failure=exc)
            except ClaudeMCPError as exc:
                job.finish("failed", error=str(exc), failure=exc)
            except Exception:
                logger.exception("job %s failed unexpectedly", job.job_id)
                job.finish("failed", error="The job failed because of an internal error; the server log has details.")
            finally:
                if queued is not None:
                    queued()
        if not job.done.is_set():
            job.finish("cancelled", error="The job was cancelled; its processes were stopped.")
        if job.kept:
            with anyio.CancelScope(shield=True):
                await self.jobs.save(job)
        self._claims_wanted.set()  # a run slot is free: a queued job may take it

    async def cancel_job(self, owner: str, job_id: str) -> JobView:
        """Stop a job's run and every process it started, on whichever replica runs it; a
        finished job is left as it is."""
        return await self.jobs.cancel(owner, job_id)

    async def _run_spares(self) -> None:
        """Keep spares; a caller's only once its credential has been accepted (a made-up key starts none)."""
        if self.policy.credentials == "caller":
            await self.credential_accepted.wait()
        await self._spare.run()

    def _credential_rejected(self, failure: ClaudeMCPError | None) -> bool:
        """Whether a run's failure is the model API rejecting a caller's own credential (and note
        whether the credential has ever been accepted)."""
        if self.policy.credentials != "caller":
            return False
        if isinstance(failure, APIError) and failure.status == 401:
            self.credential_refused = not self.credential_accepted.is_set()
            return True
        self.credential_refused = False
        self.credential_accepted.set()
        return False

    async def _import_local(self) -> None:
        try:
            await legacy.import_local(self.conversations, config_dir(self.policy.cli_env), self.state_dir)
        except Exception:
            logger.warning("could not import local conversations into the store", exc_info=True)

    async def _find(self, session_id: str) -> SessionRecord:
        """A conversation's record; one an earlier version left on disk is imported first."""
        try:
            return await self.conversations.find(session_id)
        except SessionNotFound:
            if await legacy.import_one(self.conversations, config_dir(self.policy.cli_env), self.state_dir, session_id):
                return await self.conversations.find(session_id)
            raise

    async def _room_for_a_conversation(self) -> None:
        """Refuse a new conversation when this namespace already keeps `max_conversations`."""
        limit = self.policy.max_conversations
        if limit is not None and await self.store.count_sessions(self.namespace) >= limit:
            raise Busy(
                f"You keep {limit} conversations, the limit on this server; delete some (delete_session) before "
                "starting another, or continue an existing one."
            )

    async def _cooled(self, session_id: str) -> None:
        """A warm process was closed: no replica holds the conversation warm any more."""
        try:
            await self.conversations.set_warm(session_id, None)
        except Exception:
            logger.debug("could not record that %s is no longer warm", session_id, exc_info=True)

    @asynccontextmanager
    async def _slot(
        self, observer: RunObserver | None, timeout_s: float, queueing: Callable[[], None] | None = None
    ) -> AsyncIterator[Keep]:
        """A run slot of this bridge's own, then (if shared) one of the whole server's. Yields
        `keep`, which holds both past the block, until the function it returns is called.
        `queueing` is called just before the run counts among the slots' holders or waiters."""
        started = anyio.current_time()
        queued = observer.queued if observer else None
        with instrument.queue_wait() as granted:
            async with AsyncExitStack() as stack:
                if queueing is not None:
                    queueing()  # no checkpoint before `slot` counts the run
                held = [await stack.enter_async_context(self.slots.slot(queued, timeout_s=timeout_s))]
                if self.shared_slots is not None:
                    left = timeout_s - (anyio.current_time() - started)
                    held.append(await stack.enter_async_context(self.shared_slots.slot(queued, timeout_s=left)))
                granted()
                yield lambda: keep_all(held)

    async def _retire_idle(self, session_id: str, warm: WarmSession) -> None:
        """Close a warm process the pool let go of, off the request path (it is no longer warm first)."""
        await self._retire(warm.process, session_id, cooled=True)

    async def _retire(
        self,
        process: CLIProcess,
        session_id: str,
        *,
        release: Callable[[], None] | None = None,
        cooled: bool = False,
    ) -> None:
        """Close a process off the request path (a CLI takes ~55 ms to exit): the caller has its
        answer meanwhile, but the conversation's next turn waits (`SessionLocks.fence`) and the
        run slot, if `release` is given, stays taken until the process is gone. `cooled`: record
        that no replica holds the conversation warm any more."""
        lift = await self._locks.fence(session_id)

        async def close() -> None:
            try:
                if cooled:
                    await self._cooled(session_id)
                await process.close()
            except Exception:
                logger.warning("closing a finished CLI process failed", exc_info=True)
            finally:
                if release is not None:
                    release()
                    self._claims_wanted.set()  # a queued job may take the slot
                with anyio.CancelScope(shield=True):
                    await lift()

        if self._tasks is None:
            await close()
        else:
            self._tasks.start_soon(close)

    @instrument.instrumented
    async def _run(
        self,
        prompt: str,
        call: CallSettings,
        target: RunTarget,
        observer: RunObserver | None,
        *,
        agent: str | None = None,
        client_tools: ClientTools | None = None,
        keep_warm: bool = True,
        queueing: Callable[[], None] | None = None,
    ) -> AskResult:
        """One call, from policy to result. `keep_warm=False`: nobody will follow the conversation up
        (a batch request), so its process is closed rather than kept warm. `queueing`: see `_slot`."""
        if self.depth >= self.policy.max_depth:
            raise DepthExceeded(
                f"Refused: this claude-mcp server is already {self.depth} level(s) deep in a chain of Claude "
                f"delegations and the policy allows max_depth={self.policy.max_depth}. Do the work directly "
                "instead of delegating further."
            )
        record = await self._find(target.resume) if target.resume is not None else None
        if record is None or target.fork:
            await self._room_for_a_conversation()
        if record is not None:
            call = call.over(sticky_settings(record))
        explicit = frozenset(call.model_fields_set)
        if record is not None and record.cwd is not None and "cwd" not in explicit:
            # A conversation is resumed where it ran: the CLI keys transcripts by directory.
            call = call.model_copy(update={"cwd": record.cwd})
        resolved = self.policy.resolve(call)
        if agent is not None:
            if agent not in resolved.agents:
                known = ", ".join(resolved.agents) or "(none)"
                raise InvalidArguments(f"Unknown agent {agent!r}; known agents: {known}.")
            resolved = replace(resolved, agent=agent)
            explicit |= {"agent"}
        if target.resume is not None:
            target = replace(target, override_system_prompt=bool(explicit & {"system_prompt", "append_system_prompt"}))
        resolved, metered = await self.meter.admit(resolved, observer)
        started = anyio.current_time()
        continuing = target.resume if not target.fork else None

        async def waiting() -> None:
            if observer is not None:
                await observer.waiting_for_session()

        async with self._locks.hold(continuing, timeout_s=resolved.timeout_s, on_wait=waiting):
            warm = self.warm.take(continuing) if continuing else None
            wanted_tools = tools_key(client_tools.tools) if client_tools else None
            if target.resume is None and client_tools is None:
                warm = await self._spare.take(resolved, learn="mcp_servers" not in explicit)
            if warm is not None and (conflicts := warm.conflicts(resolved, explicit, wanted_tools)):
                logger.info("restarting the warm process of a session to change %s", ", ".join(conflicts))
                await warm.process.close()
                warm = None
            time_left = resolved.timeout_s - (anyio.current_time() - started)
            try:  # a taken warm or spare process is closed too if the wait for a slot fails
                async with self._slot(observer, time_left, queueing) as keep_slot:
                    if warm is None:
                        relay = ToolRelay(client_tools.tools) if client_tools else None
                        options = build_options(
                            resolved,
                            self.policy,
                            target=target,
                            child_depth=self.depth + 1,
                            session_store=self.conversations.transcripts,
                            client_tools=relay,
                            chain_id=metered.chain_id,
                        )
                        process = CLIProcess(options, self.permissions)
                        warm = WarmSession(process, resolved, anyio.current_time(), relay=relay)
                    else:
                        await warm.apply_in_place(resolved, explicit)
                    warm.process.asker = observer.ask_permission if observer else None
                    if warm.relay is not None:
                        warm.relay.caller = client_tools.caller if client_tools else None
                    await self.meter.begin(metered, warm.process)
                    outcome = await warm.process.turn(
                        prompt,
                        timeout_s=resolved.timeout_s,
                        time_left_s=resolved.timeout_s - (anyio.current_time() - started),
                        stall_timeout_s=self.policy.stall_timeout_s,
                        on_message=observer.message if observer else None,
                    )
                    self.meter.ran(metered, warm.process, outcome)
                    warm.process.asker = None
                    if warm.relay is not None:
                        warm.relay.caller = None
                    session_id = outcome.result.session_id
                    result = AskResult.from_message(outcome.result, outcome.text)
                    failure = failure_of(result, outcome.api_error_status)
                    if self._credential_rejected(failure):
                        # Nothing of an attempt on a rejected credential is kept: no warm process, no
                        # conversation, no transcript of a new one.
                        await self._retire(warm.process, session_id, release=keep_slot())
                        warm = None
                        if continuing is None:
                            await self.conversations.discard(session_id, str(resolved.cwd))
                            await legacy.remove_local(config_dir(self.policy.cli_env), session_id)
                            result.session_id = ""  # no conversation to continue
                        raise RunFailed(APIError(CALLER_REJECTED, status=401, session_id=None), result)
                    kept = keep_warm and self.warm.keeps(warm)
                    await self.conversations.record_turn(
                        session_id,
                        cwd=str(resolved.cwd),
                        prompt=prompt,
                        settings=sticky(call),
                        previous=record,
                        forked_from=target.resume if target.fork else None,
                        warm_replica=self.replica if kept else None,
                    )
                    if kept:
                        await self.warm.put(session_id, warm)
                    else:
                        await self._retire(warm.process, session_id, release=keep_slot())
            except BaseException:
                if warm is not None:
                    await warm.process.close(graceful=False)
                raise
        result.chain_cost_usd = await self.meter.settle(metered)
        if failure is not None:
            logger.info("run ended with an error: %s", failure.kind)
            raise RunFailed(failure, result)
        return result


def _settings(settings: CallSettings | None, values: dict[str, Any]) -> CallSettings:
    if settings is not None:
        if values:
            raise TypeError("pass settings either as a CallSettings or as keywords, not both")
        return settings
    try:
        return CallSettings(**values)
    except ValidationError as exc:
        raise InvalidArguments(f"invalid settings: {exc}") from None
