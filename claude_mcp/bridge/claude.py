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
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pydantic import ValidationError

from ..config.call_settings import CallSettings
from ..config.policy import Policy
from ..errors import ClaudeMCPError, InvalidArguments
from ..state import legacy
from ..state.conversations import SessionInfo, SessionTranscript
from ..state.sticky import config_dir
from ..state.store import JobRecord, Store
from ..telemetry.activity import ACTIVITY, Activity
from .client_tools import ClientTools
from .identity import current_depth, inherited_channel, policy_below, replica_id
from .job_engine import Request
from .jobs import Job, JobView
from .launcher import Launcher
from .observer import RunObserver
from .options import RunTarget
from .parts import Where, assemble
from .records import BatchBook, HistoryBook, UsageBook
from .results import AskResult
from .slots import RunSlots

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
        server_dir: Path | None = None,
    ) -> None:
        """`shared_slots`: the server's cap, of which `max_concurrent` is this bridge's share. `store`:
        one shared with other bridges (its owner opens it), else the bridge's own (`state_url`, or
        SQLite in the state dir). `label`: the tenant in metrics (default: the namespace, or
        `caller`). `launcher`: how CLI processes are started (shared by a server's bridges). `server_dir`: the
        server's own state dir (out of every sandbox's view), for a bridge whose store is shared."""
        depth = current_depth() if depth is None else depth
        above = inherited_channel() if depth > 0 else {}
        self.policy = policy = policy_below(policy or Policy(), above)
        self.namespace = namespace
        """Whose state this bridge keeps: the tenant, or the caller."""
        tenant = label or ("caller" if policy.credentials == "caller" else namespace)
        where = Where(namespace, tenant, replica or replica_id(), depth)
        self._parts = parts = assemble(
            policy,
            where,
            store=store,
            shared_slots=shared_slots,
            launcher=launcher,
            activity=activity,
            above=above,
            server_dir=server_dir,
        )
        self.jobs, self.pool = parts.jobs, parts.pool
        self.histories, self.batches = HistoryBook(parts.store, namespace), BatchBook(parts.store, namespace)
        self.usage = UsageBook(parts.store, parts.meter, namespace)

    async def __aenter__(self) -> Self:
        """Open the store (if it is the bridge's own), import conversations an earlier version left
        on disk, and start the housekeeping, the pool and the job engine."""
        await self._parts.enter()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._parts.exit()

    @property
    def store(self) -> Store:
        """The store this bridge keeps its namespace's state in (the surfaces read it through the books)."""
        return self._parts.store

    @property
    def label(self) -> str:
        """The bridge's tenant as a bounded metric label: its tenant's name, `local`, or `caller`."""
        return self._parts.runner.context.tenant

    @property
    def idle(self) -> bool:
        """No job runs here and none is queued that only this replica's bridge can run (it holds
        the secrets the job needs): closing the bridge would lose nothing."""
        return self._parts.engine.idle

    @property
    def credential_refused(self) -> bool:
        """In caller mode: the model API rejected the credential, which it had never accepted."""
        return self._parts.runner.credential.refused

    def start_soon(self, func: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run `func` in the bridge's own tasks: it may outlive the request that started it, and is
        cancelled when the bridge closes. `func` must handle its own errors."""
        if (tasks := self._parts.tasks) is None:
            raise ClaudeMCPError("This needs a running bridge: use `async with ClaudeBridge(...)`.")
        tasks.start_soon(func)

    async def ask(
        self,
        prompt: str,
        *,
        session_id: str | None = None,
        settings: CallSettings | None = None,
        observer: RunObserver | None = None,
        client_tools: ClientTools | None = None,
        agent: str | None = None,
        **setting_values: Any,
    ) -> AskResult:
        """Ask Claude; continue `session_id` if given. Settings as a model or as keywords.
        `client_tools`: the caller's own tools, whose calls go to `client_tools.caller`; `agent`:
        run the conversation as this agent (a server's, or one in the settings' `agents`)."""
        settings = _settings(settings, setting_values)
        target = RunTarget(resume=session_id)
        return await self._parts.runner.run(prompt, settings, target, observer, agent=agent, client_tools=client_tools)

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
            return await self._parts.runner.branch(session_id, settings)
        return await self._parts.runner.run(prompt, settings, RunTarget(resume=session_id, fork=True), observer)

    async def models(self) -> list[dict[str, Any]]:
        """The models the CLI offers, in its own words (aliases with the ids they resolve to)."""
        return await self._parts.cli_models()

    async def list_sessions(self, *, limit: int = 20, offset: int = 0) -> list[SessionInfo]:
        """Conversations, most recent first."""
        return await self._parts.conversations.page(limit=limit, offset=offset)

    async def get_session(self, session_id: str, *, limit: int = 50, offset: int = 0) -> SessionTranscript:
        """A page of a conversation's messages."""
        record = await self._parts.runner.planner.find(session_id)
        return await self._parts.conversations.read(record, limit=limit, offset=offset)

    async def close_session(self, session_id: str) -> bool:
        """End a conversation's warm process (the transcript stays). False if none was open."""
        async with self._parts.locks.hold(session_id, timeout_s=self.policy.default_timeout_s, on_wait=None):
            return await self.pool.close(session_id)

    async def delete_session(self, session_id: str) -> None:
        """Close a conversation's warm process and delete its transcript."""
        async with self._parts.locks.hold(session_id, timeout_s=self.policy.default_timeout_s, on_wait=None):
            await self.pool.close(session_id)
            await self._parts.conversations.delete(await self._parts.runner.planner.find(session_id))
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
        """Start a run here, in the background, and return its job at once (see `JobEngine.start`)."""
        request = Request(prompt, settings or CallSettings(), RunTarget(resume=session_id, fork=fork))
        return await self._parts.engine.start(owner, request, agent=agent, tool=tool, kept=kept)

    async def keep(self, job: Job) -> None:
        """A call's own run goes on without the call: it becomes a job like any other."""
        await self._parts.engine.keep(job)

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
        """Queue a run for whichever replica has a free run slot; its record at once (see `JobEngine.submit`)."""
        request = Request(prompt, settings or CallSettings(), RunTarget(resume=session_id, fork=fork))
        return await self._parts.engine.submit(
            owner, request, agent=agent, tool=tool, batch_id=batch_id, custom_id=custom_id, counted=counted
        )

    async def cancel_job(self, owner: str, job_id: str) -> JobView:
        """Stop a job's run and every process it started, on whichever replica runs it; a
        finished job is left as it is."""
        return await self._parts.engine.cancel(owner, job_id)


def _settings(settings: CallSettings | None, values: dict[str, Any]) -> CallSettings:
    if settings is not None:
        if values:
            raise TypeError("pass settings either as a CallSettings or as keywords, not both")
        return settings
    try:
        return CallSettings(**values)
    except ValidationError as exc:
        raise InvalidArguments(f"invalid settings: {exc}") from None
