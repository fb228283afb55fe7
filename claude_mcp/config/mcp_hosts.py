"""Where a call's own URL MCP servers may point: one check for every surface (the MCP tools'
`mcp_servers` of type `http`/`sse`, and the HTTP API's MCP connector).

The policy decides: `mcp_url_hosts` (if set) names the only hosts such a server may be on, and
unless `mcp_private_addresses` is on, every address its host has must be public (a host name is
resolved; loopback, private, link-local — cloud metadata at 169.254.169.254 among them — and
other non-public addresses are refused). Servers the operator defines in the policy are not
checked: they are the operator's own.

Between this check and the CLI's own connection the host's DNS answer could change (DNS
rebinding). A plain `http://` URL on a host name is therefore handed on pinned: on the address
that was checked, the name in its `Host` header (which the CLI sends as given). An `https://` URL
is left as it is (the certificate must match the name, so the CLI verifies it against that name):
a rebound name leads the CLI at most to a TLS handshake with an inside address, which cannot show
a certificate for the caller's name. Not stopped here: the CLI follows an MCP server's redirects,
so a server the caller controls can send it elsewhere; `mcp_url_hosts` (hosts the operator trusts)
and the network's own rules are the operator's controls for that.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

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


class UrlRefused(ValueError):
    """Why the policy does not let a call's MCP server be reached at a URL."""


async def reachable(url: str, headers: Mapping[str, str], policy: Policy) -> tuple[str, dict[str, str]]:
    """The URL and headers a call's MCP server at `url` is reached with (pinned when it had to be
    checked and is plain http on a host name), or `UrlRefused`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UrlRefused("url must be an http or https URL.")
    host = parts.hostname.lower()
    if policy.mcp_url_hosts is not None and not host_named(host, policy.mcp_url_hosts):
        raise UrlRefused(f"the host {host!r} is not one this server's policy lets MCP servers be reached on.")
    if policy.mcp_private_addresses:
        return url, dict(headers)
    found = await addresses(host)
    if not found:
        raise UrlRefused(f"the host {host!r} could not be resolved.")
    if not all(address.is_global for address in found):
        raise UrlRefused(
            f"the host {host!r} is not a public address (loopback, private, link-local and other non-public "
            "addresses are refused unless the server's policy allows them)."
        )
    if parts.scheme != "http" or _is_address(host):
        return url, dict(headers)
    return _pinned(url, found[0], headers)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _pinned(url: str, address: Address, headers: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    name = parts.netloc.rsplit("@", 1)[-1]  # host[:port], as the Host header would have carried it
    userinfo = parts.netloc[: -len(name)]
    shown = f"[{address}]" if address.version == 6 else str(address)
    port = f":{parts.port}" if parts.port is not None else ""
    pinned = {key: value for key, value in headers.items() if key.lower() != "host"}
    pinned["Host"] = next((value for key, value in headers.items() if key.lower() == "host"), name)
    return urlunsplit(parts._replace(netloc=f"{userinfo}{shown}{port}")), pinned


async def checked_servers(servers: Mapping[str, McpServer], policy: Policy) -> dict[str, McpServer]:
    """A call's own MCP servers as the CLI is to reach them (`reachable`), or `PolicyViolation`
    naming the first whose URL the policy refuses."""
    checked: dict[str, McpServer] = {}
    for name, server in servers.items():
        if isinstance(server, RemoteServer):
            try:
                url, headers = await reachable(server.url, server.headers, policy)
            except UrlRefused as refused:
                raise PolicyViolation("mcp_servers", f"mcp_servers.{name}: {refused}") from None
            server = server.model_copy(update={"url": url, "headers": headers})
        checked[name] = server
    return checked
