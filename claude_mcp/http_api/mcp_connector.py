"""The Messages API's MCP connector (beta `mcp-client-2025-04-04`): a request's own MCP servers
(`mcp_servers`: `type: "url"`, `url`, `name`, `authorization_token`, `tool_configuration`) handed
to the run as HTTP MCP servers.

The policy decides: such servers are permitted where `http` is in `mcp_server_types`, only on
the hosts `mcp_url_hosts` names (if set), and never at a non-public address (loopback, private,
link-local, …; a host name is resolved and each of its addresses checked) unless
`mcp_private_addresses` is on. The authorization token is a secret: it lives in memory and in
the CLI's MCP configuration only (an `Authorization` header), never stored (per-call settings
never stick to a conversation) nor logged. A server's tools run without asking where its
`tool_configuration` allows them (all, by default); the others are refused when called.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import anyio

from ..config.call_settings import CHECKED, CallSettings
from ..config.policy import Policy
from ..config.specs import RemoteServer
from .mcp_params import McpServerParam, ToolConfiguration
from .shapes import ApiError


def _refused(index: int, message: str) -> ApiError:
    return ApiError(400, "invalid_request_error", f"mcp_servers.{index}: {message}")


def _host_named(host: str, patterns: tuple[str, ...]) -> bool:
    return any(host == p or (p.startswith("*.") and host.endswith(p[1:])) for p in patterns)


async def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        found = await anyio.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):  # unknown, or not a host name at all (a label too long, …)
        return []
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in found]


async def check_server(index: int, server: McpServerParam, policy: Policy) -> None:
    """`ApiError` unless the policy lets a request hand the run this server."""
    if server.type != "url":
        raise _refused(index, f"type {server.type!r} is not supported; send 'url'.")
    if "http" not in policy.mcp_server_types:
        raise _refused(index, "this server's policy permits no MCP servers of a request's own.")
    parts = urlsplit(server.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _refused(index, "url must be an http or https URL.")
    host = parts.hostname.lower()
    if policy.mcp_url_hosts is not None and not _host_named(host, policy.mcp_url_hosts):
        raise _refused(index, f"the host {host!r} is not one this server's policy lets MCP servers be reached on.")
    if policy.mcp_private_addresses:
        return
    addresses = await _addresses(host)
    if not addresses:
        raise _refused(index, f"the host {host!r} could not be resolved.")
    if not all(address.is_global for address in addresses):
        raise _refused(
            index,
            f"the host {host!r} is not a public address (loopback, private, link-local and other non-public "
            "addresses are refused unless the server's policy allows them).",
        )


async def with_servers(settings: CallSettings, servers: tuple[McpServerParam, ...], policy: Policy) -> CallSettings:
    """`settings` with the request's MCP servers (checked against `policy`), their tools allowed
    or disallowed as each server's `tool_configuration` says."""
    if not servers:
        return settings
    names = [server.name for server in servers]
    if len(set(names)) != len(names):
        raise ApiError(400, "invalid_request_error", "mcp_servers: each server needs a name of its own.")
    given, allowed, disallowed = {}, list(settings.allowed_tools or ()), list(settings.disallowed_tools or ())
    for index, server in enumerate(servers):
        await check_server(index, server, policy)
        headers = {"Authorization": f"Bearer {server.authorization_token}"} if server.authorization_token else {}
        given[server.name] = RemoteServer(type="http", url=server.url, headers=headers)
        configured = server.tool_configuration or ToolConfiguration()
        if not configured.enabled:
            disallowed.append(f"mcp__{server.name}")
        elif configured.allowed_tools is None:
            allowed.append(f"mcp__{server.name}")
        else:
            allowed += [f"mcp__{server.name}__{tool}" for tool in configured.allowed_tools]
    fields = settings.model_dump(exclude_unset=True) | {
        "mcp_servers": {**(settings.mcp_servers or {}), **given},
        "allowed_tools": allowed,
        "disallowed_tools": disallowed,
    }
    return CallSettings.model_validate(fields, context={CHECKED: True})
