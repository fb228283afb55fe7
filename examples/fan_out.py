"""Fan out work to three agents in the background, as another agent framework would.

Starts three `run_agent` jobs without waiting, polls them, cancels one, and collects the
other two results. Uses your own Claude login, in the current directory:

    python examples/fan_out.py [--config claude-mcp.toml]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

AGENTS = {
    "reviewer": {
        "description": "Finds bugs",
        "prompt": "You review code and list concrete bugs.",
        "tools": ["Read", "Grep", "Glob"],
    },
    "tester": {
        "description": "Proposes tests",
        "prompt": "You propose missing unit tests.",
        "tools": ["Read", "Grep", "Glob"],
    },
    "scribe": {
        "description": "Summarises",
        "prompt": "You summarise what the project does.",
        "tools": ["Read", "Glob"],
    },
}
TASKS = {
    "reviewer": "Review the Python files here for bugs.",
    "tester": "Which tests are missing for the Python files here?",
    "scribe": "Summarise this project in five lines.",
}


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    if result.structured_content is None:
        raise RuntimeError(f"{tool} failed: {result.content}")
    return result.structured_content


async def main(config: str | None) -> None:
    args = ["-m", "claude_mcp", "serve", *(["--config", config] if config else [])]
    async with Client(StdioServerParameters(command=sys.executable, args=args)) as client:
        jobs = {}
        for name, task in TASKS.items():
            started = await call(client, "run_agent", agent=name, agents=AGENTS, prompt=task, wait_s=0)
            jobs[name] = started["job_id"]
            print(f"started {name}: job {started['job_id']} ({started['status']})")

        for job in (await call(client, "list_jobs"))["jobs"]:
            print(f"  {job['agent']}: {job['status']}, {len(job['progress'])} activity lines so far")

        cancelled = await call(client, "cancel_job", job_id=jobs.pop("scribe"))
        print(f"cancelled scribe: {cancelled['status']}")

        for name, job_id in jobs.items():
            done = await call(client, "get_job", job_id=job_id, wait_s=600)
            answer = (done["result"] or {}).get("result", done.get("error"))
            print(f"{name} {done['status']}: {answer}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config")
    anyio.run(main, parser.parse_args().config)
