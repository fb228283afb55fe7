"""Long runs as MCP tasks (the Tasks extension, SEP-2663), driven by a client we did not write:
FastMCP's client with the `fastmcp-tasks` extension, over Streamable HTTP, against
`claude-mcp serve` subprocesses running the real CLI on the fake model. A task-capable tool
called by a client that declares the extension answers at once with a handle; the run goes on
as a job any replica may claim, poll, answer and cancel."""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import psutil
import pytest
from fastmcp import Client as FastMCPClient
from fastmcp_tasks.client import ToolTask, _send_get, _send_update, call_tool_task
from fastmcp_tasks.client_models import GetTaskRequest, GetTaskRequestParams
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.conftest import WAITS, call, text_of, tool_prompt
from tests.test_http import ALICE, BOB, RunningServer, connect, serving, tenants_config
from tests.test_replicas import SLEEPER, replica
from tests.test_streaming_and_cancellation import ALLOW_SLEEP, SLEEP, Progress, cmdline, wait_until_gone

pytestmark = [pytest.mark.anyio, WAITS]


@pytest.fixture
def config(tmp_path: Path, workdir: Path, cli_env: dict[str, str]) -> Path:
    path = tenants_config(tmp_path / "tasks.toml", workdir, cli_env)
    path.write_text("job_lease_s = 3\ntask_poll_interval_s = 0.2\n" + path.read_text())
    return path


@pytest.fixture
def server(tmp_path: Path, config: Path) -> Iterator[RunningServer]:
    with serving(tmp_path, config, "http") as running:
        yield running


class Person:
    """An elicitation handler that allows what it is asked, and remembers the questions."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def __call__(self, message: str, response_type: Any, params: Any, context: Any) -> dict[str, str]:
        self.asked.append(message)
        return {"decision": "allow_once"}


@asynccontextmanager
async def tasks_client(
    server: RunningServer, token: str, person: Person | None = None
) -> AsyncIterator[FastMCPClient[Any]]:
    async with FastMCPClient(server.url, auth=token, elicitation_handler=person, timeout=60) as client:
        yield client


def sleeping_under(server: RunningServer) -> list[psutil.Process]:
    """The `sleep 37` the fake model's Bash call starts under the server, and the processes between
    (the run's CLI and its shell); none if it is not running."""
    try:
        tree = psutil.Process(server.process.pid).children(recursive=True)
        sleeping = next((p for p in tree if "sleep 37" in cmdline(p)), None)
        return [] if sleeping is None else [sleeping, *(p for p in sleeping.parents() if p in tree)]
    except psutil.Error:
        return []


async def wait_for_sleep(server: RunningServer) -> list[psutil.Process]:
    return (await wait_for_sleep_on(server))[1]


async def wait_for_sleep_on(*servers: RunningServer) -> tuple[RunningServer, list[psutil.Process]]:
    """The server running the fake model's `sleep 37` (any replica may claim a task), and that run's processes."""
    with anyio.fail_after(30):
        while True:
            for server in servers:
                if tree := sleeping_under(server):
                    return server, tree
            await anyio.sleep(0.05)


async def until(task: ToolTask, *statuses: str, within_s: float = 30) -> Any:
    with anyio.fail_after(within_s):
        while (status := await task.status()).status not in statuses:
            await anyio.sleep(0.1)
    return status


async def test_a_task_augmented_call_answers_with_a_handle_and_its_result_is_the_tools_own(
    server: RunningServer,
) -> None:
    async with tasks_client(server, ALICE) as client:
        started = time.monotonic()
        task = await call_tool_task(client, "ask", {"prompt": "[[say:done as a task]]"})
        handed_after = time.monotonic() - started
        created = task.create_result
        assert created.status == "working" and created.ttl_ms and created.poll_interval_ms == 200
        assert handed_after < 5  # a handle, not the answer (which also comes quickly here)
        result = await task.result()
        assert result.structured_content is not None
        assert result.structured_content["result"] == "done as a task"
        assert result.structured_content["session_id"]
        final = await task.status()
        assert final.status == "completed" and final.result is not None
        # The same record, for clients without the extension.
        async with connect(server, ALICE) as plain:
            job = await plain.call_tool("get_job", {"job_id": task.task_id})
            assert job.structured_content is not None and job.structured_content["status"] == "completed"
            assert job.structured_content["result"]["result"] == "done as a task"


async def test_the_client_without_the_extension_gets_plain_results(server: RunningServer) -> None:
    async with connect(server, ALICE) as plain:  # the `mcp` client: declares no Tasks extension
        result = await plain.call_tool("ask", {"prompt": "[[say:plain answer]]"})
        assert not result.is_error and text_of(result) == "plain answer"
        listed = await plain.call_tool("list_jobs", {})
        assert listed.structured_content == {"jobs": []}


async def test_fastmcp_resolves_a_task_transparently_in_call_tool(server: RunningServer) -> None:
    async with tasks_client(server, ALICE) as client:
        result = await client.call_tool(
            "run_agent", {"prompt": "[[say:agent work]]", "agent": "sleeper", "agents": SLEEPER}
        )
        assert result.structured_content is not None
        assert result.structured_content["status"] == "completed"
        assert result.structured_content["result"]["result"] == "agent work"


async def test_a_task_is_cancelled_mid_run_and_leaves_no_process(server: RunningServer) -> None:
    async with tasks_client(server, ALICE) as client:
        task = await call_tool_task(
            client, "run_agent", {"agent": "sleeper", "agents": SLEEPER, "prompt": SLEEP, **ALLOW_SLEEP}
        )
        tree = await wait_for_sleep(server)
        assert (await task.status()).status == "working"
        asked = time.monotonic()
        await task.cancel()
        assert time.monotonic() - asked < 3
        assert (await until(task, "cancelled", within_s=5)).status == "cancelled"
        await wait_until_gone(tree)


async def test_a_permission_prompt_puts_the_task_in_input_required_until_tasks_update(
    server: RunningServer, tmp_path: Path
) -> None:
    target = tmp_path / "state" / "workspaces" / "alice" / "task.txt"  # a tenant's Claude works in its workspace
    person = Person()
    async with tasks_client(server, ALICE, person) as client:
        task = await call_tool_task(
            client, "ask", {"prompt": tool_prompt("Write", file_path=str(target), content="from a task\n")}
        )
        waiting = await until(task, "input_required")
        assert waiting.input_requests is not None and len(waiting.input_requests) == 1
        [(key, question)] = waiting.input_requests.items()
        assert question["method"] == "elicitation/create"
        assert question["params"]["message"] == f"Claude wants to: Write {target} (+2 lines)"
        assert not target.exists()
        result = await task.result()  # answers through the elicitation handler (tasks/update), then polls
        assert person.asked == [question["params"]["message"]]
        assert target.read_text() == "from a task\n"
        assert result.structured_content is not None and not result.structured_content["is_error"]
        # A stale answer to the same question is a no-op, not an error.
        await _send_update(client.session, task.task_id, {key: {"action": "accept", "content": {"decision": "deny"}}})


async def test_a_handle_outlives_its_connection_and_is_private_to_its_owner(server: RunningServer) -> None:
    async with tasks_client(server, ALICE) as first:
        task = await call_tool_task(first, "stream_ask", {"prompt": "[[slow:150]][[say:one two three four five]]"})
        task_id = task.task_id
    async with tasks_client(server, ALICE) as second:
        with anyio.fail_after(30):
            while (polled := await _send_get(second.session, task_id)).status != "completed":
                await anyio.sleep(0.1)
        assert polled.result is not None
        assert polled.result["structuredContent"]["result"] == "one two three four five"
    async with tasks_client(server, BOB) as stranger:
        with pytest.raises(MCPError, match=f"Task {task_id} not found"):
            await _send_get(stranger.session, task_id)
        with pytest.raises(MCPError, match="Task nope not found"):
            await _send_get(stranger.session, "nope")


async def test_bad_arguments_are_the_tools_error_not_a_task(server: RunningServer) -> None:
    async with tasks_client(server, ALICE) as client:
        bad = await client.call_tool("ask", {"prompt": "x", "bogus": 1}, raise_on_error=False)
        assert bad.is_error and "Invalid arguments for ask: unknown argument 'bogus'" in text_of(bad)
        unknown = await client.call_tool("run_agent", {"prompt": "x", "agent": "nobody"}, raise_on_error=False)
        assert unknown.is_error and "Unknown agent 'nobody'" in text_of(unknown)
        listed = await client.call_tool("list_jobs", {})
        assert listed.structured_content == {"jobs": []}


async def test_a_task_created_on_one_replica_is_run_polled_and_cancelled_from_the_other(
    tmp_path: Path, config: Path, postgres_database: str
) -> None:
    with replica(tmp_path, config, postgres_database, "a") as a, replica(tmp_path, config, postgres_database, "b") as b:
        async with tasks_client(a, ALICE) as on_a, tasks_client(b, ALICE) as on_b:
            done = await call_tool_task(on_a, "ask", {"prompt": "[[say:from replica a]]"})
            with anyio.fail_after(30):
                while (polled := await _send_get(on_b.session, done.task_id)).status != "completed":
                    await anyio.sleep(0.1)
            assert polled.result is not None and polled.result["structuredContent"]["result"] == "from replica a"
            task = await call_tool_task(
                on_a, "run_agent", {"agent": "sleeper", "agents": SLEEPER, "prompt": SLEEP, **ALLOW_SLEEP}
            )
            running_on, tree = await wait_for_sleep_on(a, b)
            asked = time.monotonic()
            from_b = ToolTask(on_a if running_on is b else on_b, "run_agent", task.create_result)  # the other one
            await from_b.cancel()
            assert (await until(from_b, "cancelled", within_s=5)).status == "cancelled"
            assert time.monotonic() - asked < 2 + 1  # the 2 s, plus the CLI's own exit
            await wait_until_gone(tree)


async def test_a_task_whose_replica_dies_ends_failed_with_its_session(
    tmp_path: Path, config: Path, postgres_database: str
) -> None:
    with replica(tmp_path, config, postgres_database, "a") as a, replica(tmp_path, config, postgres_database, "b") as b:
        async with tasks_client(a, ALICE) as on_a:
            task = await call_tool_task(
                on_a, "run_agent", {"agent": "sleeper", "agents": SLEEPER, "prompt": SLEEP, **ALLOW_SLEEP}
            )
            dying, tree = await wait_for_sleep_on(a, b)  # usually A, which took it at once
            created = task.create_result
        async with connect(b if dying is a else a, ALICE) as plain:  # the store has its session (within a sync)
            with anyio.fail_after(10):
                while not (await call(plain, "get_job", job_id=task.task_id))["session_id"]:
                    await anyio.sleep(0.1)
        dying.process.send_signal(signal.SIGKILL)
        dying.process.wait(timeout=10)
        killed = time.monotonic()
        await wait_until_gone([p for p in tree if p.pid != dying.process.pid])  # its CLIs die with it
        async with tasks_client(b if dying is a else a, ALICE) as survivor:
            from_b = ToolTask(survivor, "run_agent", created)
            failed = await until(from_b, "failed", within_s=3 + 5 + 5)
            assert time.monotonic() - killed < 3 + 5 + 5
            assert failed.error is not None and "replica running this job stopped" in failed.error["message"]
            assert failed.error["data"]["session_id"]


async def test_tasks_methods_need_the_extension_declared(server: RunningServer) -> None:
    async with connect(server, ALICE) as plain:
        with pytest.raises(MCPError) as refused:
            await plain.session.send_request(GetTaskRequest(params=GetTaskRequestParams(task_id="x")), types.Result)
        assert refused.value.error.code == types.MISSING_REQUIRED_CLIENT_CAPABILITY
        assert "io.modelcontextprotocol/tasks" in refused.value.error.message


async def test_on_a_handshake_era_connection_there_are_no_tasks(server: RunningServer) -> None:
    async with connect(server, ALICE, mode="legacy") as legacy:
        with pytest.raises(MCPError) as refused:
            await legacy.session.send_request(GetTaskRequest(params=GetTaskRequestParams(task_id="x")), types.Result)
        assert refused.value.error.code == types.METHOD_NOT_FOUND
        result = await legacy.call_tool("ask", {"prompt": "[[say:legacy answer]]"})
        assert text_of(result) == "legacy answer"


# No long answer lost to a client's timeout.

SLOW = "[[slow:400]][[say:one two three four five six seven eight nine ten eleven twelve thirteen fourteen]]"


@pytest.fixture
def detaching(tmp_path: Path, config: Path) -> Iterator[RunningServer]:
    config.write_text("detach_after_s = 3\n" + config.read_text())
    with serving(tmp_path, config, "http") as running:
        yield running


@asynccontextmanager
async def timing_out(server: RunningServer, timeout_s: float) -> AsyncIterator[Client]:
    """An `mcp` client with a short request timeout, like the Inspector's 60 s (and no progress token)."""
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {ALICE}"}, timeout=60) as http:
        transport = streamable_http_client(server.url, http_client=http)
        async with Client(transport, read_timeout_seconds=timeout_s) as client:
            yield client


async def test_a_client_without_a_progress_token_gets_the_job_before_its_timeout_then_the_answer(
    detaching: RunningServer,
) -> None:
    async with timing_out(detaching, 4.5) as client:
        asked = time.monotonic()
        detached = await client.call_tool("stream_ask", {"prompt": SLOW})
        assert time.monotonic() - asked < 4.5
        assert not detached.is_error and detached.structured_content is not None
        job_id = detached.structured_content["job_id"]
        assert detached.structured_content["subtype"] == "detached"
        assert f"get_job(job_id={job_id!r}" in text_of(detached)
        with anyio.fail_after(30):
            while (job := await call(client, "get_job", job_id=job_id, wait_s=2))["status"] == "running":
                pass
        assert job["status"] == "completed"
        assert job["result"]["result"] == SLOW.split("say:")[1].rstrip("]")
        assert detached.structured_content["session_id"] in ("", job["session_id"])


async def test_a_client_with_a_progress_token_waits_for_the_whole_answer(detaching: RunningServer) -> None:
    progress = Progress()
    async with connect(detaching, ALICE) as client:
        result = await client.call_tool("stream_ask", {"prompt": SLOW}, progress_callback=progress)
        assert result.structured_content is not None and result.structured_content["job_id"] is None
        assert result.structured_content["result"].endswith("fourteen")
        assert progress.text.endswith("fourteen")  # streamed as it came
        assert (await call(client, "list_jobs"))["jobs"] == []


async def test_a_call_that_ends_in_time_is_not_a_job_and_its_errors_are_its_own(detaching: RunningServer) -> None:
    async with connect(detaching, ALICE) as client:
        assert text_of(await client.call_tool("ask", {"prompt": "[[say:quick]]"})) == "quick"
        missing = await client.call_tool("ask", {"prompt": "x", "session_id": "00000000-0000-4000-8000-000000000000"})
        assert missing.is_error and "No conversation with that session_id" in text_of(missing)
        assert (await call(client, "list_jobs"))["jobs"] == []
