"""The conversation tools: `ask`, `stream_ask` and `fork_session`."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import mcp_types as types

from ...bridge.jobs import Job
from ...bridge.results import AskResult
from ...state.store import JobRecord
from ..arguments import AskArgs, ForkArgs
from ..call import Call, asks_by_rounds
from ..progress import STATUS_PREFIX
from ..results import ForkResult
from ..roots import in_client_root
from .running import detach_after, detached, in_rounds, outcome_of, own_run, with_progress
from .spec import DELEGATES, TaskSupport, ToolSpec

SETTINGS_NOTE = (
    "Without session_id a new conversation starts; with the session_id of an earlier result "
    "the conversation continues. Optional settings (model, cwd, system_prompt, allowed_tools, "
    "permission_mode, max_turns, json_schema, …) apply to this call, within the server's policy."
)


async def _asking(args: AskArgs, call: Call, tool: str) -> AskResult | types.InputRequiredResult:
    args = await in_client_root(args, call)
    settings = args.settings()
    stream_text = tool == "stream_ask"
    if asks_by_rounds(call):
        outcome = await in_rounds(
            call,
            lambda: call.bridge.start_job(
                call.owner, args.prompt, session_id=args.session_id, settings=settings, tool=tool
            ),
            stream_text,
        )
        return outcome if isinstance(outcome, types.InputRequiredResult) else _answer(outcome)
    if (limit := detach_after(call)) is not None:
        job = await call.bridge.start_job(
            call.owner, args.prompt, session_id=args.session_id, settings=settings, tool=tool, kept=False
        )
        return await own_run(call, job, limit, stream_text)
    return await with_progress(
        call,
        stream_text,
        lambda o: call.bridge.ask(args.prompt, session_id=args.session_id, settings=settings, observer=o),
    )


def _answer(job: Job) -> AskResult:
    """A job's result, as the call that waited on it returns it (still running: how to collect it)."""
    return outcome_of(job) if job.done.is_set() else detached(job, time.time() - job.started_at)


async def ask(args: AskArgs, call: Call) -> AskResult | types.InputRequiredResult:
    return await _asking(args, call, "ask")


async def stream_ask(args: AskArgs, call: Call) -> AskResult | types.InputRequiredResult:
    return await _asking(args, call, "stream_ask")


async def fork_session(args: ForkArgs, call: Call) -> ForkResult | types.InputRequiredResult:
    args = await in_client_root(args, call)
    settings = args.settings()
    prompt = args.prompt
    if prompt is not None and asks_by_rounds(call):
        rounds = await in_rounds(
            call,
            lambda: call.bridge.start_job(
                call.owner, prompt, session_id=args.session_id, fork=True, settings=settings, tool="fork_session"
            ),
            stream_text=False,
        )
        if isinstance(rounds, types.InputRequiredResult):
            return rounds
        return forked(args.session_id, _answer(rounds))
    if prompt is not None and (limit := detach_after(call)) is not None:
        job = await call.bridge.start_job(
            call.owner,
            prompt,
            session_id=args.session_id,
            fork=True,
            settings=settings,
            tool="fork_session",
            kept=False,
        )
        return forked(args.session_id, await own_run(call, job, limit, stream_text=False))
    outcome = await with_progress(
        call, False, lambda o: call.bridge.fork(args.session_id, prompt, settings=settings, observer=o)
    )
    if isinstance(outcome, AskResult):
        return forked(args.session_id, outcome)
    return ForkResult(session_id=outcome, forked_from=args.session_id)


def forked(origin: str, answer: AskResult) -> ForkResult:
    return ForkResult(session_id=answer.session_id, forked_from=origin, answer=answer)


# As tasks: the run is queued as a job, for whichever replica has a free run slot.
def _submitting(tool: str) -> Callable[[AskArgs, Call], Awaitable[JobRecord | None]]:
    async def submit(args: AskArgs, call: Call) -> JobRecord:
        args = await in_client_root(args, call)
        return await call.bridge.submit_job(
            call.owner, args.prompt, session_id=args.session_id, settings=args.settings(), tool=tool
        )

    return submit


async def _submit_fork(args: ForkArgs, call: Call) -> JobRecord | None:
    if args.prompt is None:
        return None  # a fork without a prompt is only a copy: it answers at once
    args = await in_client_root(args, call)
    assert args.prompt is not None
    return await call.bridge.submit_job(
        call.owner, args.prompt, session_id=args.session_id, fork=True, settings=args.settings(), tool="fork_session"
    )


def _answer_of(record: JobRecord) -> AskResult:
    return AskResult.model_validate(record.result)


def _fork_of(record: JobRecord) -> ForkResult:
    return forked(str((record.request or {}).get("session_id")), _answer_of(record))


TOOLS = [
    ToolSpec(
        name="ask",
        description=(
            "Ask Claude (Claude Code) to answer or do something, and wait for the final answer. "
            + SETTINGS_NOTE
            + f" While it works, progress reports tool activity and heartbeats (lines starting {STATUS_PREFIX!r})."
        ),
        args=AskArgs,
        result=AskResult,
        handler=ask,
        annotations=DELEGATES,
        task=TaskSupport(submit=_submitting("ask"), result=_answer_of),
    ),
    ToolSpec(
        name="stream_ask",
        description=(
            "Like `ask`, but the answer streams as it is written: each progress notification's message is "
            f"the next chunk of text, or a status line starting {STATUS_PREFIX!r} (tool activity, queue "
            "position, heartbeat). The final result still carries the whole answer. " + SETTINGS_NOTE
        ),
        args=AskArgs,
        result=AskResult,
        handler=stream_ask,
        annotations=DELEGATES,
        task=TaskSupport(submit=_submitting("stream_ask"), result=_answer_of),
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
        annotations=DELEGATES,
        task=TaskSupport(submit=_submit_fork, result=_fork_of),
    ),
]
