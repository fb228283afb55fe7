"""The job tools: poll, answer, cancel and list background runs."""

from __future__ import annotations

import mcp_types as types

from ...bridge.jobs import JobView
from ...bridge.permissions import PermissionAnswer
from ..arguments import GetJobArgs, JobArgs, NoArgs
from ..call import Call, elicitor
from ..results import JobList
from .running import view_or_error, with_progress
from .spec import READS, ToolSpec


async def get_job(args: GetJobArgs, call: Call) -> JobView:
    jobs = call.bridge.jobs
    if args.permission_id is not None and args.decision is not None:
        answer = PermissionAnswer(decision=args.decision, reason=args.reason)
        await jobs.answer(call.owner, args.job_id, args.permission_id, answer)
    elif (job := jobs.local(call.owner, args.job_id)) is not None and job.pending is not None:
        # A job this replica runs can ask the person at this call's client directly.
        pending = job.pending
        if (
            (ask := elicitor(call)) is not None
            and (decided := await ask(pending)) is not None
            and job.pending is pending
        ):
            job.answer(pending.permission_id, decided)
    view = await with_progress(call, False, lambda o: jobs.wait(call.owner, args.job_id, args.wait_s, o))
    return view_or_error(view)


async def cancel_job(args: JobArgs, call: Call) -> JobView:
    return await call.bridge.cancel_job(call.owner, args.job_id)


async def list_jobs(args: NoArgs, call: Call) -> JobList:
    return JobList(jobs=await call.bridge.jobs.views(call.owner))


TOOLS = [
    ToolSpec(
        name="get_job",
        description="A background job's status, recent activity and streamed text, and its full result once "
        "finished. `wait_s` long-polls: the call returns as soon as the job finishes or the time is up. "
        "A job waiting for approval shows `pending_permission`; answer it here with `permission_id` and "
        "`decision` (or, if your client takes elicitations, you are asked during this call).",
        args=GetJobArgs,
        result=JobView,
        handler=get_job,
        annotations=READS,
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
        annotations=READS,
    ),
]
