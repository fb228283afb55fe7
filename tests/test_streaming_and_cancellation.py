"""`stream_ask`, progress, cancellation that really stops the work, and the concurrency cap.
All through the real CLI; the fake model streams slowly or starts a long `sleep` via Bash. That bridges
sharing one cap never pass it together is the run slots' logic, on the scripted CLI in `test_run_slots`."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from mcp import Client

from claude_mcp import ClaudeBridge, Policy
from claude_mcp.mcp_surface.progress import STATUS_PREFIX
from claude_mcp.mcp_surface.server import build_server
from tests.conftest import MORE_WAITS, text_of, tool_prompt
from tests.test_stdio import server_params, write_config

pytestmark = [pytest.mark.anyio, MORE_WAITS]

# The CLI refuses a bare long `sleep`; chained after an echo it runs (as its own `sleep` process).
SLEEP = tool_prompt("Bash", command="echo started && sleep 37")
ALLOW_SLEEP = {"allowed_tools": ["Bash(echo *)", "Bash(sleep *)"]}


def cmdline(process: psutil.Process) -> str:
    """The command line of a live process, or "" for a zombie or a vanished one."""
    try:
        return "" if process.status() == psutil.STATUS_ZOMBIE else " ".join(process.cmdline())
    except psutil.Error:
        return ""


def work_processes(root: psutil.Process | None = None) -> list[psutil.Process]:
    """Live descendants of `root` (default: this test process) that are claude runs or their tools."""
    found = []
    for process in (root or psutil.Process()).children(recursive=True):
        line = cmdline(process)
        if "claude" in line.split(" ")[0] or "sleep 37" in line:
            found.append(process)
    return found


async def wait_until_gone(processes: list[psutil.Process], within_s: float = 8) -> None:
    with anyio.fail_after(within_s):
        while any(cmdline(p) for p in processes):
            await anyio.sleep(0.05)


async def wait_for_sleep(root: psutil.Process | None = None) -> list[psutil.Process]:
    """Wait until the fake model's `sleep 37` runs under `root`; return the whole work tree."""
    with anyio.fail_after(30):
        while not any("sleep 37" in cmdline(p) for p in work_processes(root)):
            await anyio.sleep(0.05)
    return work_processes(root)


class Progress:
    def __init__(self) -> None:
        self.messages: list[str] = []
        self.values: list[float] = []

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.values.append(progress)
        self.messages.append(message or "")

    @property
    def text(self) -> str:
        return "".join(m for m in self.messages if not m.startswith(STATUS_PREFIX))

    @property
    def status(self) -> list[str]:
        return [m for m in self.messages if m.startswith(STATUS_PREFIX)]


async def test_stream_ask_streams_the_answer_in_order_before_the_result(client: Client) -> None:
    progress = Progress()
    words = " ".join(f"w{i}" for i in range(12))
    result = await client.call_tool("stream_ask", {"prompt": f"[[slow:30]] {words}"}, progress_callback=progress)
    assert not result.is_error
    assert text_of(result) == f"Echo: {words}"
    assert progress.text == text_of(result)
    assert len([m for m in progress.messages if not m.startswith(STATUS_PREFIX)]) >= 12
    assert progress.values == sorted(progress.values) and len(set(progress.values)) == len(progress.values)


async def test_progress_reports_tool_activity(client: Client) -> None:
    progress = Progress()
    prompt = tool_prompt("Bash", command="echo hi")
    await client.call_tool("ask", {"prompt": prompt}, progress_callback=progress)
    assert f"{STATUS_PREFIX}Running Bash: `echo hi`" in progress.status
    assert progress.text == "", "ask sends status lines only"


async def test_heartbeats_keep_coming_while_a_tool_runs(policy: Policy) -> None:
    quick = policy.model_copy(update={"heartbeat_s": 0.3})
    progress = Progress()
    async with Client(build_server(ClaudeBridge(quick, depth=0))) as client:
        prompt = tool_prompt("Bash", command="sleep 2")
        await client.call_tool(
            "ask", {"prompt": prompt, "allowed_tools": ["Bash(sleep *)"]}, progress_callback=progress
        )
    assert len([m for m in progress.status if "working" in m]) >= 3


async def test_a_cancelled_call_stops_the_cli_and_its_tools(client: Client) -> None:
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(client.call_tool, "ask", {"prompt": SLEEP, **ALLOW_SLEEP})
        tree = await wait_for_sleep()
        tasks.cancel_scope.cancel()
    await wait_until_gone(tree)
    assert not (await client.call_tool("ask", {"prompt": "still serving"})).is_error


async def test_a_timeout_stops_the_cli_and_its_tools(client: Client) -> None:
    result = await client.call_tool("ask", {"prompt": SLEEP, "timeout_s": 3, **ALLOW_SLEEP})
    assert result.is_error and "timeout" in text_of(result)
    assert work_processes() == []


def server_process() -> psutil.Process:
    servers = [p for p in psutil.Process().children() if "claude_mcp" in " ".join(p.cmdline())]
    assert len(servers) == 1
    return servers[0]


async def test_a_client_disconnect_stops_the_work(tmp_path: Path, workdir: Path, cli_env: dict[str, str]) -> None:
    config = write_config(tmp_path / "c.toml", workdir, cli_env)
    async with Client(server_params(config)) as client, anyio.create_task_group() as tasks:
        tasks.start_soon(client.call_tool, "ask", {"prompt": SLEEP, **ALLOW_SLEEP})
        tree = await wait_for_sleep()
        tasks.cancel_scope.cancel()
    await wait_until_gone(tree)


async def test_sigterm_to_the_server_stops_the_work(tmp_path: Path, workdir: Path, cli_env: dict[str, str]) -> None:
    config = write_config(tmp_path / "c.toml", workdir, cli_env)
    tree: list[psutil.Process] = []
    with pytest.raises(Exception):  # noqa: B017 - the connection ends under the client
        async with Client(server_params(config)) as client, anyio.create_task_group() as tasks:
            tasks.start_soon(client.call_tool, "ask", {"prompt": SLEEP, **ALLOW_SLEEP})
            tree = await wait_for_sleep()
            server = server_process()
            os.kill(server.pid, signal.SIGTERM)
            await wait_until_gone([server, *tree])
            raise RuntimeError("server gone")
    assert tree


async def test_calls_beyond_the_cap_wait_in_order_and_all_succeed(policy: Policy) -> None:
    """Through MCP: each call beyond the cap is told its place in the queue, and all succeed, one CLI at a
    time (the order and the cap at scale run on the scripted CLI in `test_run_slots`)."""
    capped = policy.model_copy(update={"max_concurrent": 1, "max_warm": 0})  # count running CLIs only
    peak = 0
    progress = [Progress() for _ in range(3)]
    results: list[Any] = [None] * 3

    async def watch() -> None:
        nonlocal peak
        while True:
            clis = [p for p in psutil.Process().children() if "claude" in cmdline(p).split(" ")[0]]  # ours only
            peak = max(peak, len(clis))
            await anyio.sleep(0.02)

    async with Client(build_server(ClaudeBridge(capped, depth=0))) as client:

        async def call(i: int) -> None:
            results[i] = await client.call_tool(
                "ask", {"prompt": f"[[slow:100]] call {i} a b c d"}, progress_callback=progress[i]
            )

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(watch)
            async with anyio.create_task_group() as calls:
                for i in range(3):
                    calls.start_soon(call, i)
                    await anyio.sleep(0.05)
            tasks.cancel_scope.cancel()
    assert all(not r.is_error for r in results), [text_of(r) for r in results]
    assert peak == 1
    queued = [m for p in progress for m in p.status if "queued, position" in m]
    assert f"{STATUS_PREFIX}queued, position 2" in queued


async def test_a_full_queue_fails_fast_as_busy(policy: Policy) -> None:
    tiny = policy.model_copy(update={"max_concurrent": 1, "max_queued": 0})
    async with Client(build_server(ClaudeBridge(tiny, depth=0))) as client, anyio.create_task_group() as tasks:
        tasks.start_soon(client.call_tool, "ask", {"prompt": SLEEP, **ALLOW_SLEEP})
        await wait_for_sleep()
        busy = await client.call_tool("ask", {"prompt": "me too"})
        assert busy.is_error and "busy" in text_of(busy)
        tasks.cancel_scope.cancel()
