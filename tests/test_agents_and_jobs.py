"""`run_agent`, background jobs, per-call MCP servers and chains of claude-mcp servers, end to end
through the real CLI and the fake model. How queued jobs are claimed, one per free run slot and in order,
is the job engine's logic: it runs on the scripted CLI in `test_job_engine`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from claude_mcp import ClaudeBridge, Policy
from claude_mcp.bridge.job_book import JobBook
from claude_mcp.bridge.jobs import Job, JobNotFound
from claude_mcp.config.specs import AgentSpec
from claude_mcp.mcp_surface.server import build_server
from claude_mcp.state.sqlite import SqliteStore
from tests.conftest import MORE_WAITS, TESTS, call, text_of, tool_prompt
from tests.test_stdio import write_config
from tests.test_streaming_and_cancellation import ALLOW_SLEEP, SLEEP, wait_for_sleep, wait_until_gone

pytestmark = [pytest.mark.anyio, MORE_WAITS]

REVIEWER = AgentSpec(description="Reviews code for bugs", prompt="You are REVIEWER-7.", tools=["Read", "Grep"])


@pytest.fixture
async def agent_client(policy: Policy) -> Any:
    with_agents = policy.model_copy(update={"agents": {"reviewer": REVIEWER}})
    async with Client(build_server(ClaudeBridge(with_agents, depth=0))) as client:
        yield client


async def test_named_agents_are_listed(agent_client: Client) -> None:
    agents = (await call(agent_client, "list_agents"))["agents"]
    assert agents == [
        {"name": "reviewer", "description": "Reviews code for bugs", "model": None, "tools": ["Read", "Grep"]}
    ]


async def test_an_agents_prompt_and_tools_reach_the_model(agent_client: Client) -> None:
    done = await call(agent_client, "run_agent", agent="reviewer", prompt="[[report]]")
    assert done["status"] == "completed"
    seen = json.loads(done["result"]["result"])
    assert "REVIEWER-7" in seen["system"]
    assert "Read" in seen["tools"] and "Grep" in seen["tools"] and "Bash" not in seen["tools"]
    assert done["session_id"] == done["result"]["session_id"]


async def test_a_per_call_agent_can_be_run(client: Client) -> None:
    agents = {"poet": {"description": "Writes verse", "prompt": "You are POET-3.", "tools": ["Read"]}}
    done = await call(client, "run_agent", agent="poet", prompt="[[report]]", agents=agents)
    assert "POET-3" in json.loads(done["result"]["result"])["system"]


async def test_an_unknown_agent_is_a_clear_error(agent_client: Client) -> None:
    result = await agent_client.call_tool("run_agent", {"agent": "nobody", "prompt": "hi"})
    assert result.is_error and "Unknown agent 'nobody'; known agents: reviewer" in text_of(result)


async def test_a_long_run_returns_a_job_that_get_job_completes(agent_client: Client) -> None:
    started = await call(agent_client, "run_agent", agent="reviewer", prompt="[[slow:150]] a b c d e f g h", wait_s=0.3)
    assert started["status"] == "running" and started["result"] is None
    polled = await call(agent_client, "get_job", job_id=started["job_id"])
    assert polled["status"] == "running"
    finished = await call(agent_client, "get_job", job_id=started["job_id"], wait_s=30)
    assert finished["status"] == "completed"
    assert finished["result"]["result"] == "Echo: a b c d e f g h"
    assert finished["text"] == "Echo: a b c d e f g h"
    listed = (await call(agent_client, "list_jobs"))["jobs"]
    assert [job["job_id"] for job in listed] == [started["job_id"]]


async def test_cancel_job_stops_the_run_and_its_tools(client: Client) -> None:
    sleeper = {"sleeper": {"description": "Waits", "prompt": "You wait.", "tools": ["Bash"]}}
    started = await call(client, "run_agent", agent="sleeper", agents=sleeper, prompt=SLEEP, wait_s=0, **ALLOW_SLEEP)
    tree = await wait_for_sleep()
    cancelled = await client.call_tool("cancel_job", {"job_id": started["job_id"]})
    assert cancelled.structured_content is not None and cancelled.structured_content["status"] == "cancelled"
    await wait_until_gone(tree)
    after = await client.call_tool("get_job", {"job_id": started["job_id"]})
    assert after.is_error and "cancelled" in text_of(after)
    assert any("Running Bash" in line for line in after.structured_content["progress"])


async def test_unknown_jobs_are_a_clear_error(client: Client) -> None:
    result = await client.call_tool("get_job", {"job_id": "00000000-0000-4000-8000-000000000000"})
    assert result.is_error and "No job with that job_id" in text_of(result)


async def test_jobs_are_visible_only_to_their_owner(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.sqlite3")
    await store.open()
    try:
        jobs = JobBook(store, "replica-a", lease_s=15)
        job = Job(owner="alice", agent=None)
        await jobs.add(job)
        assert jobs.get("alice", job.job_id) is job
        assert (await jobs.view("alice", job.job_id)).job_id == job.job_id
        elsewhere = JobBook(store, "replica-b", lease_s=15)  # another replica sees it through the store
        assert (await elsewhere.view("alice", job.job_id)).status == "running"
        with pytest.raises(JobNotFound) as refused:
            await elsewhere.view("bob", job.job_id)
        with pytest.raises(JobNotFound) as unknown:
            await elsewhere.view("bob", "00000000-0000-4000-8000-000000000000")
        with pytest.raises(JobNotFound):
            await elsewhere.cancel("bob", job.job_id)
        assert str(refused.value) == str(unknown.value)
        assert await jobs.views("bob") == []
    finally:
        await store.close()


ECHO_SERVER = {"command": sys.executable, "args": [str(TESTS / "echo_mcp_server.py")]}


async def test_the_model_can_use_a_per_call_mcp_server(client: Client) -> None:
    prompt = tool_prompt("mcp__echo__shout", text="hello there")
    servers = {"echo": ECHO_SERVER}
    done = await call(client, "ask", prompt=prompt, mcp_servers=servers, allowed_tools=["mcp__echo__shout"])
    assert done["result"].startswith("TOOL_RESULT: ") and "HELLO THERE!" in done["result"]


def chained(tmp_path: Path, workdir: Path, cli_env: dict[str, str], extra: str = "") -> dict[str, Any]:
    """This server, as an MCP server the CLI can start (configured like the outer one)."""
    config = write_config(tmp_path / "inner.toml", workdir, cli_env, extra)
    return {"claude": {"command": sys.executable, "args": ["-m", "claude_mcp", "serve", "--config", str(config)]}}


async def test_claude_can_delegate_to_this_server_one_level_deep(
    client: Client, tmp_path: Path, workdir: Path, cli_env: dict[str, str]
) -> None:
    prompt = tool_prompt("mcp__claude__ask", prompt="inner question")
    done = await call(
        client,
        "ask",
        prompt=prompt,
        mcp_servers=chained(tmp_path, workdir, cli_env),
        allowed_tools=["mcp__claude__ask"],
    )
    assert "Echo: inner question" in done["result"]


async def test_a_chain_past_max_depth_is_refused(
    client: Client, tmp_path: Path, workdir: Path, cli_env: dict[str, str]
) -> None:
    servers = chained(tmp_path, workdir, cli_env, "max_depth = 1")
    prompt = tool_prompt("mcp__claude__ask", prompt="inner question")
    done = await call(client, "ask", prompt=prompt, mcp_servers=servers, allowed_tools=["mcp__claude__ask"])
    assert "max_depth=1" in done["result"]
    assert "Echo: inner question" not in done["result"]


async def test_the_budget_is_carried_down_a_chain(
    client: Client, tmp_path: Path, workdir: Path, cli_env: dict[str, str]
) -> None:
    prompt = tool_prompt("mcp__claude__ask", prompt="spend", max_budget_usd=5)
    done = await call(
        client,
        "ask",
        prompt=prompt,
        mcp_servers=chained(tmp_path, workdir, cli_env),
        allowed_tools=["mcp__claude__ask"],
        max_budget_usd=1,
    )
    assert "max_budget_usd=5 exceeds the server limit of 1" in done["result"]


async def test_a_job_outlives_the_call_that_started_it(agent_client: Client) -> None:
    started = await call(agent_client, "run_agent", agent="reviewer", prompt="[[slow:50]] x y z", wait_s=0)
    with anyio.fail_after(30):
        while (await call(agent_client, "get_job", job_id=started["job_id"]))["status"] == "running":
            await anyio.sleep(0.1)
    assert (await call(agent_client, "get_job", job_id=started["job_id"]))["result"]["result"] == "Echo: x y z"


def test_the_chain_example_config_is_valid() -> None:
    policy = Policy.load(TESTS.parent / "examples" / "chain.toml")
    assert set(policy.agents) == {"reviewer", "fixer"}
    assert policy.mcp_servers["team"].type == "stdio"


async def test_the_fan_out_example_runs(tmp_path: Path, workdir: Path, cli_env: dict[str, str]) -> None:
    config = write_config(tmp_path / "c.toml", workdir, cli_env)
    completed = await anyio.run_process(
        [sys.executable, str(TESTS.parent / "examples" / "fan_out.py"), "--config", str(config)], check=False
    )
    output = completed.stdout.decode()
    assert completed.returncode == 0, completed.stderr.decode()[-2000:]
    assert "started reviewer" in output and "cancelled scribe" in output
    assert "reviewer completed: Echo: Review the Python files here for bugs." in output
    assert "tester completed: Echo: Which tests are missing" in output
