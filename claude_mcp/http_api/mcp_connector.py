"""The Messages API's MCP connector (beta `mcp-client-2025-04-04`): a request's own MCP servers
(`mcp_servers`: `type: "url"`, `url`, `name`, `authorization_token`, `tool_configuration`) handed
to the run as HTTP MCP servers.

The policy decides: such servers are permitted where `http` is in `mcp_server_types`, and where
they may point is checked as for the MCP tools' own URL servers (`config.mcp_hosts`). The
authorization token is a secret: it lives in memory and in the CLI's MCP configuration only (an
`Authorization` header), never stored (per-call settings never stick to a conversation) nor
logged. A server's tools run without asking where its `tool_configuration` allows them (all, by
default); the others are not offered to the model (`mcp_listing`), and refused if called.
"""

from __future__ import annotations

from ..config.call_settings import CHECKED, CallSettings
from ..config.mcp_hosts import UrlRefused, reachable
from ..config.policy import Policy
from ..config.specs import RemoteServer
from .mcp_listing import listed_tools
from .mcp_params import McpServerParam, ToolConfiguration
from .shapes import ApiError


def _refused(index: int, message: str) -> ApiError:
    return ApiError(400, "invalid_request_error", f"mcp_servers.{index}: {message}")


async def check_server(
    index: int, server: McpServerParam, headers: dict[str, str], policy: Policy
) -> tuple[str, dict[str, str]]:
    """The URL and headers the run reaches this server with (`config.mcp_hosts.reachable`), or
    `ApiError` unless the policy lets a request hand the run this server."""
    if server.type != "url":
        raise _refused(index, f"type {server.type!r} is not supported; send 'url'.")
    if "http" not in policy.mcp_server_types:
        raise _refused(index, "this server's policy permits no MCP servers of a request's own.")
    try:
        return await reachable(server.url, headers, policy)
    except UrlRefused as refused:
        raise _refused(index, str(refused)) from None


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
        token = {"Authorization": f"Bearer {server.authorization_token}"} if server.authorization_token else {}
        url, headers = await check_server(index, server, token, policy)
        given[server.name] = RemoteServer(type="http", url=url, headers=headers)
        configured = server.tool_configuration or ToolConfiguration()
        if not configured.enabled:
            disallowed.append(f"mcp__{server.name}")
        elif configured.allowed_tools is None:
            allowed.append(f"mcp__{server.name}")
        else:
            allowed += [f"mcp__{server.name}__{tool}" for tool in configured.allowed_tools]
            listed = await listed_tools(server.name, url, headers)  # the others are not offered at all
            disallowed += [f"mcp__{server.name}__{tool}" for tool in listed if tool not in configured.allowed_tools]
    fields = settings.model_dump(exclude_unset=True) | {
        "mcp_servers": {**(settings.mcp_servers or {}), **given},
        "allowed_tools": allowed,
        "disallowed_tools": disallowed,
    }
    return CallSettings.model_validate(fields, context={CHECKED: True})
