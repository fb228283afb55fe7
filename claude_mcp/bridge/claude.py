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
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from types import TracebackType
from typing import Any, Self

import anyio
from pydantic import ValidationError

from ..config.call_settings import CallSettings
from ..config.policy import Policy, ResolvedSettings
from ..errors import Busy, ClaudeMCPError, DepthExceeded, InvalidArguments
from ..state import transcripts
from ..state.settings_records import FileSettingsStore, SessionSettingsStore, default_state_dir, sticky
from .jobs import Job, JobRegistry, MemoryJobRegistry
from .observer import RunObserver
from .options import BUDGET_ENV, DEPTH_ENV, RunTarget, build_options
from .permissions import PermissionGate
from .process import CLIProcess
from .results import AskResult, failure_of
from .slots import RunSlots
from .spare import Spare
from .turns import SessionLocks
from .warm import WarmPool, WarmSession

logger = logging.getLogger(__name__)


def inherited_budget() -> float | None:
    """The budget of the run that started this server, if Claude started it (a per-call ceiling)."""
    try:
        value = float(os.environ.get(BUDGET_ENV, ""))
    except ValueError:
        return None
    return value if value > 0 else None


def current_depth() -> int:
    """How many claude-mcp servers are above this one (0 when a person started it)."""
    try:
        return max(0, int(os.environ.get(DEPTH_ENV, "0")))
    except ValueError:
        return 0


class RunFailed(ClaudeMCPError):
    """The CLI gave a result, but an error one; `result` holds it for the caller."""

    def __init__(self, error: ClaudeMCPError, result: AskResult) -> None:
        super().__init__(error.message, session_id=error.session_id)
        self.kind = error.kind
        self.cause = error
        self.result = result
        self.structured = result


class ClaudeBridge:
    """Delegates prompts to Claude Code under a server policy.

    Use it as an async context manager: on exit every warm CLI process is closed.
    """

    def __init__(
        self, policy: Policy | None = None, *, depth: int | None = None, shared_slots: RunSlots | None = None
    ) -> None:
        """`shared_slots`: a cap shared with other bridges (tenants); this bridge's own
        `max_concurrent` is then its share of it."""
        policy = policy or Policy()
        if (budget := inherited_budget()) is not None and (policy.max_budget_usd or budget) >= budget:
            # Below a budgeted run, no call may cost more than that whole run may.
            policy = policy.model_copy(update={"max_budget_usd": budget})
        self.policy = policy
        self.depth = current_depth() if depth is None else depth
        self.slots = RunSlots(self.policy.max_concurrent, self.policy.max_queued)
        self.shared_slots = shared_slots
        self.warm = WarmPool(self.policy.max_warm, self.policy.warm_ttl_s)
        self._locks = SessionLocks()
        self.recorded: SessionSettingsStore = FileSettingsStore(
            self.policy.state_dir or default_state_dir(self.policy.cli_env)
        )
        self._tasks: anyio.abc.TaskGroup | None = None
        self._users = 0
        self.jobs: JobRegistry = MemoryJobRegistry()
        prompts = self.policy.permission_prompts
        self.permissions = PermissionGate(
            mode="deny" if isinstance(prompts, tuple) else prompts,
            rules=prompts if isinstance(prompts, tuple) else (),
            timeout_s=self.policy.permission_timeout_s,
        )
        self._spare = Spare(self.policy, self.permissions, child_depth=self.depth + 1)

    async def __aenter__(self) -> Self:
        """Start the warm-session sweeper. Re-entrant: each connection of a server enters it."""
        self._users += 1
        if self._tasks is None:
            self._tasks = anyio.create_task_group()
            await self._tasks.__aenter__()
            self._tasks.start_soon(self._housekeeping, min(30.0, self.policy.warm_ttl_s / 4))
            if self.policy.spare_process and self.depth < self.policy.max_depth:
                self._spare.run_in(self._tasks)
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

    async def ask(
        self,
        prompt: str,
        *,
        session_id: str | None = None,
        settings: CallSettings | None = None,
        observer: RunObserver | None = None,
        **setting_values: Any,
    ) -> AskResult:
        """Ask Claude; continue `session_id` if given. Settings as a model or as keywords."""
        settings = _settings(settings, setting_values)
        return await self._run(prompt, settings, RunTarget(resume=session_id), observer)

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
            new_id = transcripts.fork_session(self.policy.cli_env, session_id)
            self.recorded.save(new_id, sticky(settings).over(self.recorded.load(session_id) or CallSettings()))
            return new_id
        return await self._run(prompt, settings, RunTarget(resume=session_id, fork=True), observer)

    def list_sessions(self, *, limit: int = 20, offset: int = 0) -> list[transcripts.SessionInfo]:
        """Conversations, most recent first."""
        return transcripts.list_sessions(self.policy.cli_env, limit=limit, offset=offset, live=self.warm.live_ids())

    def get_session(self, session_id: str, *, limit: int = 50, offset: int = 0) -> transcripts.SessionTranscript:
        """A page of a conversation's messages."""
        return transcripts.read_session(self.policy.cli_env, session_id, limit=limit, offset=offset)

    async def close_session(self, session_id: str) -> bool:
        """End a conversation's warm process (the transcript stays). False if none was open."""
        async with self._locks.hold(session_id, timeout_s=self.policy.default_timeout_s, on_wait=None):
            return await self.warm.close(session_id)

    async def delete_session(self, session_id: str) -> None:
        """Close a conversation's warm process and delete its transcript."""
        async with self._locks.hold(session_id, timeout_s=self.policy.default_timeout_s, on_wait=None):
            await self.warm.close(session_id)
            transcripts.delete_session(self.policy.cli_env, session_id)
            self.recorded.delete(session_id)

    async def start_job(
        self,
        owner: str,
        prompt: str,
        *,
        agent: str | None = None,
        session_id: str | None = None,
        fork: bool = False,
        settings: CallSettings | None = None,
    ) -> Job:
        """Start a run in the background and return its job at once (continuing `session_id`, or a
        fork of it). Bad settings fail here, not in the job. The run is bounded by its timeout; its
        job is kept `job_retention_s` after."""
        settings = settings or CallSettings()
        if self._tasks is None:
            raise ClaudeMCPError("Background jobs need a running bridge: use `async with ClaudeBridge(...)`.")
        if len(self.jobs.owned_by(owner)) >= self.policy.max_jobs:
            raise Busy(
                f"You have {self.policy.max_jobs} jobs (running or kept), the limit; cancel some or wait for "
                "finished ones to expire."
            )
        resolved = self.policy.resolve(settings)
        if agent is not None and agent not in resolved.agents:
            raise InvalidArguments(f"Unknown agent {agent!r}; known agents: {', '.join(resolved.agents) or '(none)'}.")
        job = Job(owner=owner, agent=agent, session_id=None if fork else session_id)
        self.jobs.add(job)
        self._tasks.start_soon(self._run_job, job, prompt, settings, RunTarget(resume=session_id, fork=fork))
        return job

    async def _run_job(self, job: Job, prompt: str, settings: CallSettings, target: RunTarget) -> None:
        with job.scope:
            try:
                job.finish("completed", result=await self._run(prompt, settings, target, job, agent=job.agent))
            except RunFailed as exc:
                job.finish("failed", result=exc.result, error=str(exc))
            except ClaudeMCPError as exc:
                job.finish("failed", error=str(exc))
            except Exception:
                logger.exception("job %s failed unexpectedly", job.job_id)
                job.finish("failed", error="The job failed because of an internal error; the server log has details.")
        if not job.done.is_set():
            job.finish("cancelled", error="The job was cancelled; its processes were stopped.")

    async def cancel_job(self, owner: str, job_id: str) -> Job:
        """Stop a job's run and every process it started; a finished job is left as it is."""
        job = self.jobs.get(owner, job_id)
        if not job.done.is_set():
            job.scope.cancel()
            with anyio.CancelScope(shield=True), anyio.move_on_after(30):
                await job.done.wait()
        return job

    async def _housekeeping(self, every_s: float) -> None:
        while True:
            await anyio.sleep(every_s)
            await self.warm.sweep()
            self.jobs.expire(time.time() - self.policy.job_retention_s)

    @asynccontextmanager
    async def _slot(self, observer: RunObserver | None, timeout_s: float) -> AsyncIterator[None]:
        """A run slot of this bridge's own, then (if shared) one of the whole server's."""
        started = anyio.current_time()
        queued = observer.queued if observer else None
        async with self.slots.slot(queued, timeout_s=timeout_s):
            if self.shared_slots is None:
                yield
                return
            left = timeout_s - (anyio.current_time() - started)
            async with self.shared_slots.slot(queued, timeout_s=left):
                yield

    async def _run(
        self,
        prompt: str,
        call: CallSettings,
        target: RunTarget,
        observer: RunObserver | None,
        *,
        agent: str | None = None,
    ) -> AskResult:
        if self.depth >= self.policy.max_depth:
            raise DepthExceeded(
                f"Refused: this claude-mcp server is already {self.depth} level(s) deep in a chain of Claude "
                f"delegations and the policy allows max_depth={self.policy.max_depth}. Do the work directly "
                "instead of delegating further."
            )
        if target.resume is not None:
            call = call.over(self.recorded.load(target.resume) or CallSettings())
        explicit = frozenset(call.model_fields_set)
        if target.resume is not None and "cwd" not in explicit:
            # A conversation is resumed where it ran: the CLI keeps transcripts per directory.
            recorded = transcripts.session_cwd(self.policy.cli_env, target.resume)
            if recorded is not None:
                call = call.model_copy(update={"cwd": recorded})
        resolved = self.policy.resolve(call)
        if agent is not None:
            if agent not in resolved.agents:
                known = ", ".join(resolved.agents) or "(none)"
                raise InvalidArguments(f"Unknown agent {agent!r}; known agents: {known}.")
            resolved = replace(resolved, agent=agent)
            explicit |= {"agent"}
        if target.resume is not None:
            target = replace(target, override_system_prompt=bool(explicit & {"system_prompt", "append_system_prompt"}))
        started = anyio.current_time()
        continuing = target.resume if not target.fork else None

        async def waiting() -> None:
            if observer is not None:
                await observer.waiting_for_session()

        async with self._locks.hold(continuing, timeout_s=resolved.timeout_s, on_wait=waiting):
            warm = self.warm.take(continuing) if continuing else None
            if target.resume is None:
                warm = self._spare.take(resolved)
            if warm is not None and (conflicts := warm.conflicts(resolved, explicit)):
                logger.info("restarting the warm process of a session to change %s", ", ".join(conflicts))
                await warm.process.close()
                warm = None
            time_left = resolved.timeout_s - (anyio.current_time() - started)
            try:  # a taken warm or spare process is closed too if the wait for a slot fails
                async with self._slot(observer, time_left):
                    if warm is None:
                        options = build_options(resolved, self.policy, target=target, child_depth=self.depth + 1)
                        warm = WarmSession(CLIProcess(options, self.permissions), resolved, anyio.current_time())
                    else:
                        await _apply_in_place(warm, resolved, explicit)
                    warm.process.asker = observer.ask_permission if observer else None
                    outcome = await warm.process.turn(
                        prompt,
                        timeout_s=resolved.timeout_s,
                        time_left_s=resolved.timeout_s - (anyio.current_time() - started),
                        stall_timeout_s=self.policy.stall_timeout_s,
                        on_message=observer.message if observer else None,
                    )
                    warm.process.asker = None
                    self.recorded.save(outcome.result.session_id, sticky(call))
                    await self.warm.put(outcome.result.session_id, warm)
            except BaseException:
                if warm is not None:
                    await warm.process.close(graceful=False)
                raise
        result = AskResult.from_message(outcome.result, outcome.text)
        failure = failure_of(result, outcome.api_error_status)
        if failure is not None:
            logger.info("run ended with an error: %s", failure.kind)
            raise RunFailed(failure, result)
        return result


async def _apply_in_place(warm: WarmSession, wanted: ResolvedSettings, explicit: frozenset[str]) -> None:
    """Change what a live process can change without a restart."""
    if "model" in explicit and wanted.model != warm.settings.model:
        await warm.process.set_model(wanted.model)
    if "permission_mode" in explicit and wanted.permission_mode != warm.settings.permission_mode:
        await warm.process.set_permission_mode(wanted.permission_mode)
    warm.settings = replace(
        warm.settings,
        model=wanted.model if "model" in explicit else warm.settings.model,
        permission_mode=wanted.permission_mode if "permission_mode" in explicit else warm.settings.permission_mode,
    )


def _settings(settings: CallSettings | None, values: dict[str, Any]) -> CallSettings:
    if settings is not None:
        if values:
            raise TypeError("pass settings either as a CallSettings or as keywords, not both")
        return settings
    try:
        return CallSettings(**values)
    except ValidationError as exc:
        raise InvalidArguments(f"invalid settings: {exc}") from None
