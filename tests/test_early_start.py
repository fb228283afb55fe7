"""A stdio start answers the handshake and `tools/list` before the bridge is loaded
(`mcp_surface.early`): what it says then is what the full server says, and a call that arrives
while the bridge is still loading waits for it and gets its answer."""

from __future__ import annotations

import json
import threading

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
