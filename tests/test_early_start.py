"""A stdio start answers the handshake and `tools/list` before the bridge is loaded
(`mcp_surface.early`): what it says then is what the full server says, and a call that arrives
while the bridge is still loading waits for it and gets its answer."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.server.lowlevel.server import Server
from mcp_types.version import SUPPORTED_PROTOCOL_VERSIONS

from claude_mcp import ClaudeBridge, Policy
from claude_mcp.mcp_surface.early import FRONT, EarlyServer, front_of
from claude_mcp.mcp_surface.server import build_server
from tests.conftest import text_of

pytestmark = pytest.mark.anyio


async def test_the_front_is_what_the_full_server_says_and_lists() -> None:
    full = build_server(ClaudeBridge(Policy(), depth=0))
    assert json.loads(FRONT.read_text()) == await front_of(full), (
        "front.json is out of date: run `python -m claude_mcp.mcp_surface.early`"
    )
    early = EarlyServer(lambda: full)
    assert early.create_initialization_options() == full.create_initialization_options()
    for version in SUPPORTED_PROTOCOL_VERSIONS:
        assert early.get_capabilities(protocol_version=version) == full.get_capabilities(protocol_version=version)


async def test_tools_are_listed_before_the_bridge_loads_and_a_call_waits_for_it(policy: Policy) -> None:
    release = threading.Event()

    def load() -> Server[object]:  # (in the worker thread, as at a real start)
        assert release.wait(60), "the test never let the bridge load"
        return build_server(ClaudeBridge(policy, depth=0))

    answers: list[str] = []
    async with Client(EarlyServer(load)) as client:
        with anyio.fail_after(30):
            listed = await client.list_tools()
        assert {"ask", "list_sessions", "run_agent"} <= {tool.name for tool in listed.tools}

        async def ask() -> None:
            result = await client.call_tool("ask", {"prompt": "remember mango"})
            answers.append(text_of(result) if not result.is_error else f"error: {text_of(result)}")

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(ask)
            await anyio.wait_all_tasks_blocked()  # the call is in, waiting for the bridge
            assert answers == [] and not release.is_set()
            release.set()
        assert answers == ["OK, I will remember mango"]
        bad = await client.call_tool("ask", {"prompt": "x", "max_turns": "many"})  # the full server's checks
        assert bad.is_error and "max_turns" in text_of(bad)


def test_a_set_up_refused_while_the_bridge_loads_still_stops_the_server_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "claude-mcp.toml"
    config.write_text('isolation = "sandbox"\nbwrap_path = "/nonexistent/bwrap"\n')
    handshake = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "test", "version": "1"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_sessions", "arguments": {}}},
    ]
    done = subprocess.run(
        [sys.executable, "-m", "claude_mcp", "serve", "--config", str(config), "--root", str(tmp_path)],
        input="".join(json.dumps(message) + "\n" for message in handshake),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    refusal = done.stderr.splitlines()[-1]
    assert refusal.startswith("claude-mcp: Refusing to start") and "bwrap_path" in refusal
    assert "Traceback" not in done.stderr
    (answer,) = [json.loads(line) for line in done.stdout.splitlines() if '"id":2' in line]
    assert "result" not in answer and answer["error"]["message"] == "Connection closed"  # never run
