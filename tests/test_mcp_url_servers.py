"""Where a call's own URL MCP servers may point, over MCP (#29): the `ask` tool's `mcp_servers` of
type `http`/`sse` are held to the same policy as the HTTP API's MCP connector — no loopback,
private, link-local or cloud-metadata address (a host name is resolved first) unless the policy's
`mcp_private_addresses` allows it, and only the hosts `mcp_url_hosts` names when it is set. The
allowed case runs `tests/echo_mcp_server.py` over Streamable HTTP and the real CLI calls its tool."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from mcp import Client

from claude_mcp import ClaudeBridge, Policy
from claude_mcp.mcp_surface.server import build_server
from tests.conftest import call, text_of
from tests.test_api_content_mcp import TOKEN, echo_url  # noqa: F401  (fixture: the echo server over HTTP)

pytestmark = pytest.mark.anyio

SHOUT = "[[tool:mcp__echo__shout:" + json.dumps({"text": "hi"}) + "]]"


async def connected(policy: Policy) -> AsyncIterator[Client]:
    async with Client(build_server(ClaudeBridge(policy, depth=0))) as client:
        yield client


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1:9/mcp", "http"),
        ("http://localhost:9/mcp", "http"),
        ("http://[::1]:9/mcp", "sse"),
        ("http://10.0.0.7/mcp", "http"),
        ("http://192.168.1.1/sse", "sse"),
        ("http://169.254.169.254/latest/meta-data/", "http"),
        ("http://[fe80::1%25eth0]/mcp", "http"),
        ("http://0.0.0.0:9/mcp", "http"),
    ],
)
async def test_a_call_cannot_point_its_mcp_servers_at_a_non_public_address(client: Client, url: str, kind: str) -> None:
    result = await client.call_tool(
        "ask", {"prompt": "hi", "mcp_servers": {"inside": {"type": kind, "url": url}}, "allowed_tools": ["mcp__inside"]}
    )
    assert result.is_error
    assert "mcp_servers.inside" in text_of(result) and "not a public address" in text_of(result)


async def test_the_policys_host_list_binds_the_mcp_tools_too(policy: Policy) -> None:
    hosts = policy.model_copy(update={"mcp_url_hosts": ("*.example.com",), "mcp_private_addresses": True})
    async for client in connected(hosts):
        result = await client.call_tool(
            "ask", {"prompt": "hi", "mcp_servers": {"x": {"type": "http", "url": "http://127.0.0.1:9/mcp"}}}
        )
        assert result.is_error and "not one this server's policy lets MCP servers be reached on" in text_of(result)


async def test_with_private_addresses_allowed_a_call_uses_its_own_server_on_loopback(
    policy: Policy,
    echo_url: str,  # noqa: F811  (the fixture)
) -> None:
    allowing = policy.model_copy(update={"mcp_private_addresses": True})
    server = {"type": "http", "url": echo_url, "headers": {"Authorization": f"Bearer {TOKEN}"}}
    async for client in connected(allowing):
        answer = await call(client, "ask", prompt=SHOUT, mcp_servers={"echo": server}, allowed_tools=["mcp__echo"])
    assert "HI!" in answer["result"]
