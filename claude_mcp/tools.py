"""The tools: each a name, a description, argument and result models, and a thin handler
over `ClaudeBridge`. `server.py` publishes them."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import mcp_types as types
from pydantic import BaseModel

from .calls import Call, answer_of, asks_by_rounds, elicitor
from .errors import ClaudeMCPError
from .jobs import Job, JobView
from .permissions import ELICITATION_SCHEMA, PermissionAnswer
from .progress import STATUS_PREFIX, ProgressReporter, RunObserver
from .results import AskResult
from .settings import (
    AskArgs,
    ForkArgs,
    GetJobArgs,
    GetSessionArgs,
    JobArgs,
    ListSessionsArgs,
    NoArgs,
    RunAgentArgs,
    SessionArgs,
)
from .tool_results import AgentInfo, AgentList, ForkResult, JobList, SessionChange, SessionList
from .transcripts import SessionTranscript

INSTRUCTIONS = (
    "Delegate work to Claude (Claude Code). `ask` sends a prompt and returns Claude's answer with a "
    "session_id; pass that session_id to a later `ask` to continue the same conversation. "
    "`stream_ask` does the same while streaming the answer as progress notifications."
)

_SETTINGS_NOTE = (
    "Without session_id a new conversation starts; with the session_id of an earlier result "
    "the conversation continues. Optional settings (model, cwd, system_prompt, allowed_tools, "
    "permission_mode, max_turns, json_schema, …) apply to this call, within the server's policy."
)

T = TypeVar("T")
Handler = Callable[[Any, Call], Awaitable[BaseModel | types.InputRequiredResult]]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One tool: its name and description, its argument and result models, and its handler."""

    name: str
    description: str
    args: type[BaseModel]
    result: type[BaseModel]
    handler: Handler
    annotations: types.ToolAnnotations | None = None

    def describe(self) -> types.Tool:
        return types.Tool(
            name=self.name,
            description=self.description,
            input_schema=self.args.model_json_schema(),
            output_schema=self.result.model_json_schema(),
            annotations=self.annotations,
        )


def build_tools() -> list[ToolSpec]:
    """The tools this server publishes. Each handler gets the call's tenant and call.bridge."""

    async def with_progress(call: Call, stream_text: bool, work: Callable[[RunObserver], Awaitable[T]]) -> T:
        """Run `work` while progress reports what it does, with heartbeats in between."""

        async def send(progress: float, message: str) -> None:
            await call.ctx.session.report_progress(progress, None, message)

        reporter = ProgressReporter(
            send, stream_text=stream_text, heartbeat_s=call.bridge.policy.heartbeat_s, asker=elicitor(call)
        )
        outcome: T | ClaudeMCPError
        async with anyio.create_task_group() as heartbeat:
            heartbeat.start_soon(reporter.heartbeat)
            try:  # caught inside the group, which would otherwise wrap it in an ExceptionGroup
                outcome = await work(reporter)
            except ClaudeMCPError as exc:
                outcome = exc
            finally:
                heartbeat.cancel_scope.cancel()
        if isinstance(outcome, ClaudeMCPError):
            raise outcome
        return outcome

    async def in_rounds(
        call: Call, start: Callable[[], Awaitable[Job]], stream_text: bool
    ) -> Job | types.InputRequiredResult:
        """Run as a job; end this round with the job's question, if it asks one before finishing."""
        if call.request_state is not None:
            job_id, _, permission_id = call.request_state.partition(":")
            job = call.bridge.jobs.get(call.owner, job_id)
            if job.pending is not None and job.pending.permission_id == permission_id:
                job.answer(permission_id, answer_of((call.input_responses or {}).get("permission")))
        else:
            job = await start()
        try:
            await with_progress(
                call, stream_text, lambda o: call.bridge.wait_for_job(job, math.inf, o, until_question=True)
            )
        except BaseException:
            job.scope.cancel()  # the caller went away: so does the run
            raise
        if job.pending is not None and not job.done.is_set():
            question = types.ElicitRequest(
                params=types.ElicitRequestFormParams(
                    message=f"Claude wants to: {job.pending.description}", requested_schema=ELICITATION_SCHEMA
                )
            )
            return types.InputRequiredResult(
                input_requests={"permission": question}, request_state=f"{job.job_id}:{job.pending.permission_id}"
            )
        return job

    async def asking(args: AskArgs, call: Call, stream_text: bool) -> AskResult | types.InputRequiredResult:
        settings = args.settings()
        if not asks_by_rounds(call):
            return await with_progress(
                call,
                stream_text,
                lambda o: call.bridge.ask(args.prompt, session_id=args.session_id, settings=settings, observer=o),
            )
        outcome = await in_rounds(
            call,
            lambda: call.bridge.start_job(call.owner, args.prompt, session_id=args.session_id, settings=settings),
            stream_text,
        )
        if isinstance(outcome, types.InputRequiredResult):
            return outcome
        view = _view_or_error(outcome.view())
        assert view.result is not None
        return view.result

    async def ask(args: AskArgs, call: Call) -> AskResult | types.InputRequiredResult:
        return await asking(args, call, stream_text=False)

    async def stream_ask(args: AskArgs, call: Call) -> AskResult | types.InputRequiredResult:
        return await asking(args, call, stream_text=True)

    async def fork_session(args: ForkArgs, call: Call) -> ForkResult | types.InputRequiredResult:
        settings = args.settings()
        prompt = args.prompt
        if prompt is not None and asks_by_rounds(call):
            rounds = await in_rounds(
                call,
                lambda: call.bridge.start_job(
                    call.owner, prompt, session_id=args.session_id, fork=True, settings=settings
                ),
                stream_text=False,
            )
            if isinstance(rounds, types.InputRequiredResult):
                return rounds
            answer = _view_or_error(rounds.view()).result
            assert answer is not None
            return ForkResult(session_id=answer.session_id, forked_from=args.session_id, answer=answer)
        outcome = await with_progress(
            call, False, lambda o: call.bridge.fork(args.session_id, prompt, settings=settings, observer=o)
        )
        if isinstance(outcome, AskResult):
            return ForkResult(session_id=outcome.session_id, forked_from=args.session_id, answer=outcome)
        return ForkResult(session_id=outcome, forked_from=args.session_id)

    async def list_sessions(args: ListSessionsArgs, call: Call) -> SessionList:
        return SessionList(sessions=call.bridge.list_sessions(limit=args.limit, offset=args.offset))

    async def get_session(args: GetSessionArgs, call: Call) -> SessionTranscript:
        return call.bridge.get_session(args.session_id, limit=args.limit, offset=args.offset)

    async def delete_session(args: SessionArgs, call: Call) -> SessionChange:
        await call.bridge.delete_session(args.session_id)
        return SessionChange(session_id=args.session_id, changed=True)

    async def close_session(args: SessionArgs, call: Call) -> SessionChange:
        return SessionChange(session_id=args.session_id, changed=await call.bridge.close_session(args.session_id))

    async def run_agent(args: RunAgentArgs, call: Call) -> JobView | types.InputRequiredResult:
        def start() -> Awaitable[Job]:
            return call.bridge.start_job(
                call.owner, args.prompt, agent=args.agent, session_id=args.session_id, settings=args.settings()
            )

        wait_s = call.bridge.policy.default_wait_s if args.wait_s is None else args.wait_s
        if asks_by_rounds(call) and wait_s > 0:
            outcome = await in_rounds(call, start, stream_text=False)
            return outcome if isinstance(outcome, types.InputRequiredResult) else _view_or_error(outcome.view())
        job = await start()
        await with_progress(call, False, lambda o: call.bridge.wait_for_job(job, wait_s, o))
        return _view_or_error(job.view())

    async def get_job(args: GetJobArgs, call: Call) -> JobView:
        job = call.bridge.jobs.get(call.owner, args.job_id)
        if args.permission_id is not None and args.decision is not None:
            job.answer(args.permission_id, PermissionAnswer(decision=args.decision, reason=args.reason))
        elif job.pending is not None and (ask := elicitor(call)) is not None:
            pending = job.pending
            if (answer := await ask(pending)) is not None and job.pending is pending:
                job.answer(pending.permission_id, answer)
        await with_progress(call, False, lambda o: call.bridge.wait_for_job(job, args.wait_s, o))
        return _view_or_error(job.view())

    async def cancel_job(args: JobArgs, call: Call) -> JobView:
        return (await call.bridge.cancel_job(call.owner, args.job_id)).view()

    async def list_jobs(args: NoArgs, call: Call) -> JobList:
        return JobList(jobs=[job.view() for job in call.bridge.jobs.owned_by(call.owner)])

    async def list_agents(args: NoArgs, call: Call) -> AgentList:
        return AgentList(
            agents=[
                AgentInfo(name=name, description=agent.description, model=agent.model, tools=agent.tools)
                for name, agent in call.bridge.policy.agents.items()
            ]
        )

    reads = types.ToolAnnotations(read_only_hint=True, open_world_hint=False)

    return [
        ToolSpec(
            name="ask",
            description=(
                "Ask Claude (Claude Code) to answer or do something, and wait for the final answer. "
                + _SETTINGS_NOTE
                + f" While it works, progress reports tool activity and heartbeats (lines starting {STATUS_PREFIX!r})."
            ),
            args=AskArgs,
            result=AskResult,
            handler=ask,
            annotations=types.ToolAnnotations(read_only_hint=False, open_world_hint=True),
        ),
        ToolSpec(
            name="stream_ask",
            description=(
                "Like `ask`, but the answer streams as it is written: each progress notification's message is "
                f"the next chunk of text, or a status line starting {STATUS_PREFIX!r} (tool activity, queue "
                "position, heartbeat). The final result still carries the whole answer. " + _SETTINGS_NOTE
            ),
            args=AskArgs,
            result=AskResult,
            handler=stream_ask,
            annotations=types.ToolAnnotations(read_only_hint=False, open_world_hint=True),
        ),
        ToolSpec(
            name="fork_session",
            description=(
                "Branch a conversation into a new session_id; later turns in either branch are invisible to the "
                "other. With `prompt`, the new branch is asked it at once and `answer` holds the result; "
                "without, the new session_id comes back right away. Settings as for `ask`."
            ),
            args=ForkArgs,
            result=ForkResult,
            handler=fork_session,
            annotations=types.ToolAnnotations(read_only_hint=False, open_world_hint=True),
        ),
        ToolSpec(
            name="list_sessions",
            description="Conversations on this server, most recent first: title or first prompt, working "
            "directory, last update, and whether a warm process keeps it fast to continue.",
            args=ListSessionsArgs,
            result=SessionList,
            handler=list_sessions,
            annotations=reads,
        ),
        ToolSpec(
            name="get_session",
            description="A page of one conversation's messages (oldest first), with the total count.",
            args=GetSessionArgs,
            result=SessionTranscript,
            handler=get_session,
            annotations=reads,
        ),
        ToolSpec(
            name="close_session",
            description="End a conversation's warm CLI process; the transcript stays and can be continued.",
            args=SessionArgs,
            result=SessionChange,
            handler=close_session,
            annotations=types.ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False),
        ),
        ToolSpec(
            name="delete_session",
            description="Delete a conversation: its warm process is closed and its transcript removed.",
            args=SessionArgs,
            result=SessionChange,
            handler=delete_session,
            annotations=types.ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False),
        ),
        ToolSpec(
            name="run_agent",
            description=(
                "Hand a whole task to a named agent (its instructions, tools and model; see `list_agents`). If it "
                "finishes within `wait_s` the full result comes back (`status: completed`, `result`); otherwise a "
                "job handle returns at once (`status: running`, `job_id`, `session_id`) while the run goes on in "
                "the background: poll it with `get_job`, stop it with `cancel_job`. Settings as for `ask`."
            ),
            args=RunAgentArgs,
            result=JobView,
            handler=run_agent,
            annotations=types.ToolAnnotations(read_only_hint=False, open_world_hint=True),
        ),
        ToolSpec(
            name="get_job",
            description="A background job's status, recent activity and streamed text, and its full result once "
            "finished. `wait_s` long-polls: the call returns as soon as the job finishes or the time is up. "
            "A job waiting for approval shows `pending_permission`; answer it here with `permission_id` and "
            "`decision` (or, if your client takes elicitations, you are asked during this call).",
            args=GetJobArgs,
            result=JobView,
            handler=get_job,
            annotations=reads,
        ),
        ToolSpec(
            name="cancel_job",
            description="Stop a background job and every process it started. A finished job is left as it is.",
            args=JobArgs,
            result=JobView,
            handler=cancel_job,
            annotations=types.ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False),
        ),
        ToolSpec(
            name="list_jobs",
            description="Your background jobs, newest first (finished ones are kept for a while).",
            args=NoArgs,
            result=JobList,
            handler=list_jobs,
            annotations=reads,
        ),
        ToolSpec(
            name="list_agents",
            description="The named agents this server defines, for `run_agent` (a call may also pass its own "
            "in `agents`).",
            args=NoArgs,
            result=AgentList,
            handler=list_agents,
            annotations=reads,
        ),
    ]


def _view_or_error(view: JobView) -> JobView:
    """A job that ended badly is an error result (with its view); running or completed is not."""
    if view.status in ("failed", "cancelled"):
        error = ClaudeMCPError(view.error or f"The job {view.status}.", session_id=view.session_id)
        error.structured = view
        raise error
    return view
