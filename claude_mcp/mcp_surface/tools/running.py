"""How a tool runs work on the bridge: with progress and heartbeats; where the client is asked
questions by input rounds (the 2026-07-28 era), as a job whose question ends the round; and,
for a client whose request nothing keeps alive (no progress token), as a run that goes on as a
job once it outlives `detach_after_s`, so that no long answer is lost to a client's timeout."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import mcp_types as types

from ...bridge.jobs import Job, JobView
from ...bridge.observer import RunObserver
from ...bridge.permissions import ELICITATION_SCHEMA
from ...bridge.results import AskResult
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


def detach_after(call: Call) -> float | None:
    """How long this call may wait on its run before returning with the job the run goes on as:
    set for a client that sent no progress token, whose request nothing (not even heartbeats)
    keeps alive past its timeout (60 s in the common SDKs)."""
    if (call.ctx.meta or {}).get("progress_token") is not None:  # the SDK's name for `_meta.progressToken`
        return None
    limit = call.bridge.policy.detach_after_s
    return limit if limit > 0 else None


async def own_run(call: Call, job: Job, limit: float, stream_text: bool) -> AskResult:
    """Wait on the call's own run (a job not kept yet) for up to `limit`: its result, or its error
    raised; if it is still going, it becomes a kept job and the result says how to collect it.
    The caller cancelling the call stops the run."""
    try:
        await with_progress(call, stream_text, lambda o: job.wait(limit, o))
    except BaseException:
        job.scope.cancel()
        raise
    if job.done.is_set():
        return outcome_of(job)
    await call.bridge.keep(job)
    return detached(job, limit)


def outcome_of(job: Job) -> AskResult:
    """A finished job's result, or the error it failed with."""
    if job.status == "completed" and job.result is not None:
        return job.result
    if job.failure is not None:
        raise job.failure
    raise ClaudeMCPError(job.error or f"The run {job.status}.", session_id=job.session_id)


def detached(job: Job, waited_s: float) -> AskResult:
    """The result of a call whose run goes on as `job`."""
    conversation = f" in conversation {job.session_id}" if job.session_id else ""
    return AskResult(
        result=(
            f"Claude is still working after {waited_s:g} s; the run goes on{conversation} as job {job.job_id}. "
            f"Collect the answer with get_job(job_id={job.job_id!r}, wait_s=…), or stop it with cancel_job."
        ),
        session_id=job.session_id or "",
        is_error=False,
        subtype="detached",
        num_turns=0,
        duration_ms=int((time.time() - job.started_at) * 1000),
        job_id=job.job_id,
    )


async def in_rounds(
    call: Call, start: Callable[[], Awaitable[Job]], stream_text: bool
) -> Job | types.InputRequiredResult:
    """Run as a job; end this round with the job's question, if it asks one before finishing.
    (A client that sent no progress token gets the job still running after `detach_after_s`.)"""
    if call.request_state is not None:
        job_id, _, permission_id = call.request_state.partition(":")
        job = call.bridge.jobs.get(call.owner, job_id)
        if job.pending is not None and job.pending.permission_id == permission_id:
            job.answer(permission_id, answer_of((call.input_responses or {}).get("permission")))
    else:
        job = await start()
    try:
        limit = detach_after(call) or math.inf
        await with_progress(call, stream_text, lambda o: job.wait(limit, o, until_question=True))
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
