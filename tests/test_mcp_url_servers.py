"""Where a call's own URL MCP servers may point, over MCP (#29): the `ask` tool's `mcp_servers` of
type `http`/`sse` are held to the same policy as the HTTP API's MCP connector — no loopback,
private, link-local or cloud-metadata address (a host name is resolved first) unless the policy's
`mcp_private_addresses` allows it, and only the hosts `mcp_url_hosts` names when it is set. The
allowed case runs `tests/echo_mcp_server.py` over Streamable HTTP and the real CLI calls its tool."""

from __future__ import annotations

import ipaddress
import json
import threading
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from mcp import Client

from claude_mcp import ClaudeBridge, Policy
from claude_mcp.config import mcp_hosts
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


class _Public(ipaddress.IPv4Address):
    """An address the check takes for public (the test's stand-in for a DNS answer it cannot get here)."""

    @property
    def is_global(self) -> bool:
        return True


@pytest.fixture
def resolving(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """Host names the address check resolves as the test says (the CLI's own lookups are untouched)."""
    answers: dict[str, list[Any]] = {}

    async def addresses(host: str) -> list[Any]:
        return answers.get(host) or [ipaddress.ip_address(host)]

    monkeypatch.setattr(mcp_hosts, "addresses", addresses)
    return answers


async def test_a_plain_http_url_is_pinned_to_the_address_that_was_checked(resolving: dict[str, list[Any]]) -> None:
    resolving["mcp.example"] = [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("93.184.216.35")]
    resolving["v6.example"] = [ipaddress.ip_address("2606:4700::1111")]
    policy = Policy()
    token = {"Authorization": "Bearer t"}
    assert await mcp_hosts.reachable("http://mcp.example:8080/mcp?x=1", token, policy) == (
        "http://93.184.216.34:8080/mcp?x=1",
        {"Authorization": "Bearer t", "Host": "mcp.example:8080"},
    )
    assert await mcp_hosts.reachable("http://u:p@v6.example/sse", {"host": "Other"}, policy) == (
        "http://u:p@[2606:4700::1111]/sse",
        {"Host": "Other"},  # a Host the call set itself is kept
    )
    # https keeps its name (the certificate is checked against it); an address needs no pin
    assert await mcp_hosts.reachable("https://mcp.example/mcp", token, policy) == ("https://mcp.example/mcp", token)
    assert await mcp_hosts.reachable("http://93.184.216.34/mcp", {}, policy) == ("http://93.184.216.34/mcp", {})
    allowing = Policy(mcp_private_addresses=True)  # nothing checked, nothing pinned
    assert await mcp_hosts.reachable("http://mcp.example/mcp", {}, allowing) == ("http://mcp.example/mcp", {})


async def test_the_cli_reaches_a_pinned_server_on_the_checked_address_with_its_name_as_host(
    client: Client, resolving: dict[str, list[Any]]
) -> None:
    """The name resolves nowhere for the CLI: only the pin (to a listener on loopback, taken for
    public here) lets it connect, and the server is asked for by its name."""
    seen: list[tuple[str, str | None]] = []

    class Capture(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            seen.append((self.command, self.headers.get("Host")))
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_DELETE = _answer

        def log_message(self, *args: Any) -> None:
            pass

    listener = ThreadingHTTPServer(("127.0.0.1", 0), Capture)
    port = listener.server_address[1]
    resolving["mcp.pinned.invalid"] = [_Public("127.0.0.1")]
    thread = threading.Thread(target=listener.serve_forever, daemon=True)
    thread.start()
    try:
        servers = {"pinned": {"type": "http", "url": f"http://mcp.pinned.invalid:{port}/mcp"}}
        await call(client, "ask", prompt="hello", mcp_servers=servers)
    finally:
        listener.shutdown()
        listener.server_close()
    assert seen and all(host == f"mcp.pinned.invalid:{port}" for _, host in seen)
