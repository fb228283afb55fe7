"""One run, from a call to its result: a plan, then named steps.

*Plan* (`Planner.plan`): the depth check, the conversation the call continues (its record, its
sticky settings, the directory it ran in), room for a new conversation, the policy's resolved
settings and the agent. *Run* (`Runner.run`), step by step:

    admit → hold the conversation → lease a process → take a run slot → turn →
    judge → record → release

*admit*: quotas and the chain budget (`Meter.admit`); *hold*: one turn at a time per
conversation, on every replica (`SessionLocks`); *lease*: a warm process, a spare, or a new one
(`ProcessPool`); *slot*: the concurrency cap (`BridgeSlots`); *turn*: the prompt on the process;
*judge*: the result as success or a typed failure; *record*: the conversation's index entry;
*release*: the process kept warm or retired. Whatever fails on the way leaves no process behind.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import anyio
from claude_agent_sdk import Message, SystemMessage

from ..config.call_settings import CallSettings
from ..config.credentials import CALLER_REJECTED
from ..config.mcp_hosts import checked_servers
from ..config.policy import Policy, ResolvedSettings
from ..config.specs import unknown_agent
from ..errors import APIError, DepthExceeded, InvalidArguments, LimitReached, SessionNotFound
from ..state import legacy
from ..state.conversations import Conversations, sticky_settings
from ..state.sticky import config_dir, sticky
from ..state.store import SessionRecord
from ..telemetry.activity import Activity
from . import instrument
from .client_tools import ClientTools, ToolRelay, tools_key
from .jobs import Job
from .launcher import EventSink, RunOutcome
from .metering import Meter, Metered, ProcessChain
from .observer import RunObserver
from .options import CHAIN_ENV, RunTarget, build_options, starts_servers
from .pool import ProcessPool
from .results import AskResult, RunFailed
from .run_end import RunEnd, classify
from .run_facts import RunFacts
from .slots import BridgeSlots, Keep
from .turns import SessionLocks
from .warm import WarmSession

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What one run will do, decided before it waits for anything."""

    prompt: str
    call: CallSettings
    """The call's settings over the conversation's sticky ones (what is recorded)."""
    resolved: ResolvedSettings
    """The settings the CLI runs with (the policy's defaults and ceilings applied)."""
    explicit: frozenset[str]
    """The settings the call (or the conversation) named."""
    target: RunTarget
    record: SessionRecord | None
    """The conversation continued or forked, if any."""
    done: Callable[[], None] = lambda: None
    """Called once the run has ended: gives back its place among new conversations (if it took one)."""

    @property
    def continuing(self) -> str | None:
        """The conversation this run appends to (None: a new one, or a fork)."""
        return self.target.resume if not self.target.fork else None


class Planner:
    """Turns a call into a `RunPlan`, or refuses it with an error that says why."""

    def __init__(self, policy: Policy, conversations: Conversations, *, depth: int, state_dir: Path) -> None:
        self._policy = policy
        self._conversations = conversations
        self._depth = depth
        self._state_dir = state_dir
        self._starting = 0
        """New conversations planned here and not yet recorded (or failed): they count toward the limit."""

    async def plan(self, prompt: str, call: CallSettings, target: RunTarget, agent: str | None) -> RunPlan:
        self._check_depth()
        record = await self.find(target.resume) if target.resume is not None else None
        done = await self.room_for_a_conversation() if record is None or target.fork else _nothing
        if record is not None:
            call = call.over(sticky_settings(record))
        explicit = frozenset(call.model_fields_set)
        if record is not None and record.cwd is not None and "cwd" not in explicit:
            # A conversation is resumed where it ran: the CLI keys transcripts by directory.
            call = call.model_copy(update={"cwd": record.cwd})
        try:
            if call.mcp_servers:  # where its URL servers point, and pinned where they had to be checked
                call = call.model_copy(update={"mcp_servers": await checked_servers(call.mcp_servers, self._policy)})
            return self._resolved(prompt, call, explicit, target, agent, record, done)
        except BaseException:
            done()
            raise

    def _resolved(
        self,
        prompt: str,
        call: CallSettings,
        explicit: frozenset[str],
        target: RunTarget,
        agent: str | None,
        record: SessionRecord | None,
        done: Callable[[], None],
    ) -> RunPlan:
        resolved = self._policy.resolve(call, prompt)
        if agent is not None:
            if agent not in resolved.agents:
                raise InvalidArguments(unknown_agent(agent, resolved.agents))
            resolved = replace(resolved, agent=agent)
            explicit |= {"agent"}
        if target.resume is not None:
            target = replace(target, override_system_prompt=bool(explicit & {"system_prompt", "append_system_prompt"}))
        return RunPlan(prompt, call, resolved, explicit, target, record, done)

    def _check_depth(self) -> None:
        if self._depth >= self._policy.max_depth:
            raise DepthExceeded(
                f"Refused: this claude-mcp server is already {self._depth} level(s) deep in a chain of Claude "
                f"delegations and the policy allows max_depth={self._policy.max_depth}. Do the work directly "
                "instead of delegating further."
            )

    async def find(self, session_id: str) -> SessionRecord:
        """A conversation's record; one an earlier version left on disk is imported first."""
        try:
            return await self._conversations.find(session_id)
        except SessionNotFound:
            if self._policy.isolation == "sandbox":
                raise  # a sandboxed namespace's config dir is its own to write: nothing of it is imported
            cli_config = config_dir(self._policy.cli_env)
            if await legacy.import_one(self._conversations, cli_config, self._state_dir, session_id):
                return await self._conversations.find(session_id)
            raise

    async def room_for_a_conversation(self) -> Callable[[], None]:
        """Refuse a new conversation when this namespace already keeps `max_conversations` (those
        being started here included); else hold its place until the returned function is called.
        The store is asked either way: a store that cannot be reached refuses the conversation now
        (`StoreUnavailable`), not after a run that could not be recorded (~17 s over HTTP, whose
        runs touched the store only then)."""
        limit = self._policy.max_conversations
        conversations = self._conversations
        kept = await conversations.store.count_sessions(conversations.namespace)
        if limit is None:
            return _nothing
        if kept + self._starting >= limit:  # no checkpoint from here to taking the place
            raise LimitReached(
                f"You keep {limit} conversations, the limit on this server; delete some (delete_session) before "
                "starting another, or continue an existing one."
            )
        self._starting += 1
        given_back = False

        def give_back() -> None:
            nonlocal given_back
            if not given_back:
                given_back = True
                self._starting -= 1

        return give_back


@dataclass(frozen=True, slots=True)
class RunContext:
    """Who a run is for and how it is watched: the parts the bridge composes."""

    policy: Policy
    depth: int
    replica: str
    tenant: str
    """The bridge's tenant label (bounded: a tenant's name, `local`, or `caller`)."""
    namespace: str
    activity: Activity


class Runner:
    """Runs plans: each step a method of a few lines, in the order the module docstring gives."""

    def __init__(
        self,
        context: RunContext,
        *,
        planner: Planner,
        conversations: Conversations,
        locks: SessionLocks,
        pool: ProcessPool,
        slots: BridgeSlots,
        meter: Meter,
        credential: CredentialCheck,
    ) -> None:
        self.context = context
        self._policy = context.policy
        self.planner = planner
        self._conversations = conversations
        self._locks = locks
        self._pool = pool
        self._slots = slots
        self._meter = meter
        self.credential = credential

    async def run(
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
        job: Job | None = None,
    ) -> AskResult:
        """Plan a call and run it to its result, or raise (`RunFailed` for a result that is an
        error). `keep_warm=False`: nobody will follow the conversation up (a batch request).
        `queueing`: called once the run queues for its slot. `job`: the job it runs for (its observer)."""
        context = self.context
        continues = target.resume if not target.fork else None
        facts = RunFacts(context.tenant, context.namespace, continues, tool=instrument.calling_tool(), job=job)

        async def body(watcher: RunObserver) -> AskResult:
            plan = await self.planner.plan(prompt, call, target, agent)
            try:
                return await self._steps(plan, facts, watcher, client_tools, keep_warm, queueing)
            finally:
                plan.done()

        return await instrument.run(facts, observer, body, context.activity)

    async def branch(self, session_id: str, call: CallSettings) -> str:
        """Copy a conversation into a new one (no run); the new one's session id. `call`'s explicit
        settings stick to the branch, over the origin's."""
        origin = await self.planner.find(session_id)
        done = await self.planner.room_for_a_conversation()
        try:
            return await self._conversations.fork(origin, sticky(call).over(sticky_settings(origin)))
        finally:
            done()

    async def run_job(
        self,
        job: Job,
        prompt: str,
        settings: CallSettings,
        target: RunTarget,
        *,
        keep_warm: bool,
        queueing: Callable[[], None] | None,
    ) -> AskResult:
        """Run a job's prompt (the job watches its run, and names its agent)."""
        return await self.run(
            prompt, settings, target, job, agent=job.agent, keep_warm=keep_warm, queueing=queueing, job=job
        )

    async def _steps(
        self,
        plan: RunPlan,
        facts: RunFacts,
        observer: RunObserver,
        client_tools: ClientTools | None,
        keep_warm: bool,
        queueing: Callable[[], None] | None,
    ) -> AskResult:
        resolved, metered = await self._meter.admit(plan.resolved, facts)
        plan = replace(plan, resolved=resolved)
        started = anyio.current_time()
        async with self._hold(plan, observer):
            warm = await self._lease(plan, client_tools)
            try:  # a leased process is closed too if the wait for a slot (or anything after) fails
                time_left = resolved.timeout_s - (anyio.current_time() - started)
                async with self._slot(observer, time_left, queueing) as keep_slot:
                    if warm is None:
                        warm = self._launch(plan, client_tools, metered)
                    else:
                        await warm.apply_in_place(plan.resolved, plan.explicit)
                    outcome = await self._turn(plan, warm, observer, client_tools, metered, started)
                    result, end = self._judge(outcome)
                    if self.credential.rejected(end):
                        await self._forget_attempt(plan, warm, result, keep_slot)
                        warm = None
                        raise RunFailed(APIError(CALLER_REJECTED, status=401, session_id=None), result)
                    kept = keep_warm and self._pool.keeps(warm)
                    await self._record(plan, result.session_id, kept)
                    await self._pool.release(result.session_id, warm, keep_warm=kept, keep_slot=keep_slot)
            except BaseException:
                await self._pool.discard(warm)
                raise
        result.chain_cost_usd = await self._meter.settle(metered)
        if (failure := end.error()) is not None:
            logger.info("run ended with an error: %s", failure.kind)
            raise RunFailed(failure, result, end)
        return result

    @asynccontextmanager
    async def _hold(self, plan: RunPlan, observer: RunObserver) -> AsyncIterator[None]:
        """One turn at a time on the conversation this run continues."""
        async with self._locks.hold(
            plan.continuing, timeout_s=plan.resolved.timeout_s, on_wait=observer.waiting_for_session
        ):
            yield

    async def _lease(self, plan: RunPlan, client_tools: ClientTools | None) -> WarmSession | None:
        """The conversation's warm process, or a spare for a new conversation (None: start one)."""
        return await self._pool.lease(
            plan.continuing,
            plan.resolved,
            plan.explicit,
            tools_key(client_tools.tools) if client_tools else None,
            spare=plan.target.resume is None and client_tools is None,
            learn="mcp_servers" not in plan.explicit,
        )

    @asynccontextmanager
    async def _slot(
        self, observer: RunObserver, timeout_s: float, queueing: Callable[[], None] | None
    ) -> AsyncIterator[Keep]:
        with instrument.queue_wait() as granted:
            async with self._slots.hold(observer.queued, timeout_s, queueing) as keep:
                granted()
                yield keep

    def _launch(self, plan: RunPlan, client_tools: ClientTools | None, metered: Metered) -> WarmSession:
        """A new process for the plan (started by its first turn)."""
        relay = ToolRelay(client_tools.tools) if client_tools else None
        options = build_options(
            plan.resolved,
            self._policy,
            target=plan.target,
            child_depth=self.context.depth + 1,
            session_store=self._conversations.transcripts,
            client_tools=relay,
            chain_id=metered.chain_id,
        )
        return self._pool.launch(options, plan.resolved, relay)

    async def _turn(
        self,
        plan: RunPlan,
        warm: WarmSession,
        observer: RunObserver,
        client_tools: ClientTools | None,
        metered: Metered,
        started: float,
    ) -> RunOutcome:
        """The prompt on the process, with the call's asker and tools wired in for the turn only."""
        warm.process.asker = observer.ask_permission
        if warm.relay is not None:
            warm.relay.caller = client_tools.caller if client_tools else None
        options = warm.process.options
        hop = ProcessChain(options.env.get(CHAIN_ENV), starts_servers(options), warm.chained)
        warm.chained = await self._meter.begin(metered, hop)
        timeout_s = plan.resolved.timeout_s
        outcome = await warm.process.turn(
            plan.prompt,
            timeout_s=timeout_s,
            time_left_s=timeout_s - (anyio.current_time() - started),
            stall_timeout_s=self._policy.stall_timeout_s,
            on_message=self._indexing(plan, observer),
        )
        self._meter.ran(metered, outcome)
        warm.process.asker = None
        if warm.relay is not None:
            warm.relay.caller = None
        return outcome

    def _indexing(self, plan: RunPlan, observer: RunObserver) -> EventSink:
        """The observer's message hook, which first indexes a new conversation as soon as the CLI
        names it: a first turn stopped midway (a timeout, a drain, a killed server) leaves a
        conversation that can be continued (its transcript is mirrored to the store as it is written)."""
        if plan.continuing is not None:
            return observer.message
        indexed = False

        async def message(message: Message) -> None:
            nonlocal indexed
            if not indexed and isinstance(message, SystemMessage) and message.subtype == "init":
                indexed = True
                if session_id := message.data.get("session_id"):
                    await self._record(plan, str(session_id), kept=False)
                    plan.done()  # it counts among the stored conversations now
            await observer.message(message)

        return message

    @staticmethod
    def _judge(outcome: RunOutcome) -> tuple[AskResult, RunEnd]:
        """The run's answer, and how it ended (classified once: `run_end`)."""
        result = AskResult.from_message(outcome.result, outcome.text)
        return result, classify(result, outcome.api_error_status)

    async def _forget_attempt(self, plan: RunPlan, warm: WarmSession, result: AskResult, keep_slot: Keep) -> None:
        """Keep nothing of an attempt on a credential the API rejected: no warm process, and for
        a new conversation no transcript (and no session_id to offer)."""
        session_id = result.session_id
        await self._pool.retire(warm.process, session_id, free_slot=keep_slot())
        if plan.continuing is None:
            await self._conversations.discard(session_id, str(plan.resolved.cwd))
            await legacy.remove_local(config_dir(self._policy.cli_env), session_id)
            result.session_id = ""

    async def _record(self, plan: RunPlan, session_id: str, kept: bool) -> None:
        """Index the conversation after its turn (and on which replica it is warm, if kept)."""
        await self._conversations.record_turn(
            session_id,
            cwd=str(plan.resolved.cwd),
            prompt=plan.prompt,
            settings=sticky(plan.call),
            previous=plan.record,
            forked_from=plan.target.resume if plan.target.fork else None,
            warm_replica=self.context.replica if kept else None,
        )


class CredentialCheck:
    """In caller mode: whether the model API has accepted the bridge's credential (a caller's own),
    learnt from each run's result."""

    def __init__(self, policy: Policy) -> None:
        self._applies = policy.credentials == "caller"
        self.accepted = anyio.Event()
        """Set once a run got past the model API's authentication."""
        self.refused = False
        """The model API rejected the credential, which it had never accepted."""

    def rejected(self, end: RunEnd) -> bool:
        """Whether a run ended with the model API rejecting the caller's credential."""
        if not self._applies:
            return False
        if end.kind in ("api_401", "not_logged_in"):
            self.refused = not self.accepted.is_set()
            return True
        self.refused = False
        self.accepted.set()
        return False


def _nothing() -> None:
    """Nothing to give back."""
