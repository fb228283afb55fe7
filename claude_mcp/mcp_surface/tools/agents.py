"""The agent tools: `run_agent` (a whole task handed to a named agent) and `list_agents`."""

from __future__ import annotations

from collections.abc import Awaitable

import mcp_types as types

from ...bridge.jobs import Job, JobView
from ...state.store import JobRecord
from ..arguments import NoArgs, RunAgentArgs
from ..call import Call, asks_by_rounds
from ..results import AgentInfo, AgentList
from ..roots import in_client_root
from .running import detach_after, in_rounds, view_or_error, with_progress
from .spec import DELEGATES, READS, TaskSupport, ToolSpec


async def run_agent(args: RunAgentArgs, call: Call) -> JobView | types.InputRequiredResult:
    args = await in_client_root(args, call)

    def start() -> Awaitable[Job]:
        return call.bridge.start_job(
            call.owner,
            args.prompt,
            agent=args.agent,
            session_id=args.session_id,
            settings=args.settings(),
            tool="run_agent",
        )

    wait_s = call.bridge.policy.default_wait_s if args.wait_s is None else args.wait_s
    if (limit := detach_after(call)) is not None:
        wait_s = min(wait_s, limit)
    if asks_by_rounds(call) and wait_s > 0:
        outcome = await in_rounds(call, start, stream_text=False)
        return outcome if isinstance(outcome, types.InputRequiredResult) else view_or_error(outcome.view())
    job = await start()
    await with_progress(call, False, lambda o: job.wait(wait_s, o))
    return view_or_error(job.view())


async def _submit_run(args: RunAgentArgs, call: Call) -> JobRecord:
    args = await in_client_root(args, call)
    return await call.bridge.submit_job(
        call.owner,
        args.prompt,
        agent=args.agent,
        session_id=args.session_id,
        settings=args.settings(),
        tool="run_agent",
    )


async def list_agents(args: NoArgs, call: Call) -> AgentList:
    return AgentList(
        agents=[
            AgentInfo(name=name, description=agent.description, model=agent.model, tools=agent.tools)
            for name, agent in call.bridge.policy.agents.items()
        ]
    )


TOOLS = [
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
        annotations=DELEGATES,
        task=TaskSupport(submit=_submit_run, result=JobView.of_record),
    ),
    ToolSpec(
        name="list_agents",
        description="The named agents this server defines, for `run_agent` (a call may also pass its own in `agents`).",
        args=NoArgs,
        result=AgentList,
        handler=list_agents,
        annotations=READS,
    ),
]
