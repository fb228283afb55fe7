"""How a tool runs work on the bridge: with progress and heartbeats, and, where the client is
asked questions by input rounds (the 2026-07-28 era), as a job whose question ends the round."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import mcp_types as types

from ...bridge.jobs import Job, JobView
from ...bridge.observer import RunObserver
from ...bridge.permissions import ELICITATION_SCHEMA
from ...errors import ClaudeMCPError
from ..call import Call, answer_of, elicitor
from ..progress import ProgressReporter

T = TypeVar("T")


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
        await with_progress(call, stream_text, lambda o: job.wait(math.inf, o, until_question=True))
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


def view_or_error(view: JobView) -> JobView:
    """A job that ended badly is an error result (with its view); running or completed is not."""
    if view.status in ("failed", "cancelled"):
        error = ClaudeMCPError(view.error or f"The job {view.status}.", session_id=view.session_id)
        error.structured = view
        raise error
    return view
