"""Where a call's own URL MCP servers may point: one check for every surface (the MCP tools'
`mcp_servers` of type `http`/`sse`, and the HTTP API's MCP connector).

The policy decides: `mcp_url_hosts` (if set) names the only hosts such a server may be on, and
unless `mcp_private_addresses` is on, every address its host has must be public (a host name is
resolved; loopback, private, link-local — cloud metadata at 169.254.169.254 among them — and
other non-public addresses are refused). Servers the operator defines in the policy are not
checked: they are the operator's own.

The CLI resolves the host again when it connects, so a host whose DNS answers change between the
two lookups (DNS rebinding) could still reach a private address: where that matters, name the
hosts callers may use in `mcp_url_hosts`.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from urllib.parse import urlsplit

import anyio

from ..errors import PolicyViolation
from .policy import Policy
from .specs import McpServer, RemoteServer

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def host_named(host: str, patterns: tuple[str, ...]) -> bool:
    """Whether `host` is one of `patterns` (a name, or `*.example.com` for its subdomains)."""
    return any(host == p or (p.startswith("*.") and host.endswith(p[1:])) for p in patterns)


async def addresses(host: str) -> list[Address]:
    """The addresses `host` stands for (itself if it is one); none if it cannot be resolved."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        found = await anyio.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):  # unknown, or not a host name at all (a label too long, …)
        return []
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in found]


async def url_refusal(url: str, policy: Policy) -> str | None:
    """Why `policy` does not let a call's MCP server be reached at `url`, or None if it does."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "url must be an http or https URL."
    host = parts.hostname.lower()
    if policy.mcp_url_hosts is not None and not host_named(host, policy.mcp_url_hosts):
        return f"the host {host!r} is not one this server's policy lets MCP servers be reached on."
    if policy.mcp_private_addresses:
        return None
    found = await addresses(host)
    if not found:
        return f"the host {host!r} could not be resolved."
    if not all(address.is_global for address in found):
        return (
            f"the host {host!r} is not a public address (loopback, private, link-local and other non-public "
            "addresses are refused unless the server's policy allows them)."
        )
    return None


async def check_call_servers(servers: Mapping[str, McpServer], policy: Policy) -> None:
    """`PolicyViolation` unless `policy` lets a call reach each of its own URL servers."""
    for name, server in servers.items():
        if isinstance(server, RemoteServer) and (why := await url_refusal(server.url, policy)) is not None:
            raise PolicyViolation("mcp_servers", f"mcp_servers.{name}: {why}")
