"""The tools a request's MCP server lists, asked before its run: those outside the server's
`tool_configuration` allowlist are then given to the CLI as `disallowed_tools`, so the model is
not offered them at all (the CLI has no rule for "only these tools of a server"; a deny rule for
the whole server would win over allowing some of them).

The server is asked once per request, over Streamable HTTP with the request's own headers, after
its URL passed the policy's address check; it is bounded in time, pages and names. A server that
cannot be asked (down, refusing the token, too slow) gives no names: its run then goes ahead as
the CLI finds it, and a tool outside the allowlist that the server lists to the CLI only is still
refused when called (it is never allowed).
"""

from __future__ import annotations

import logging
import re

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

log = logging.getLogger(__name__)

LIST_TIMEOUT_S = 10.0
MOST_PAGES = 10
MOST_TOOLS = 500
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""A name the CLI uses as is in `mcp__<server>__<tool>` (others it rewrites; those stay refused when called)."""


async def listed_tools(name: str, url: str, headers: dict[str, str]) -> list[str]:
    """The names of the tools the MCP server `name` at `url` lists (at most `MOST_TOOLS`); none if it cannot be."""
    names: list[str] = []
    with anyio.move_on_after(LIST_TIMEOUT_S) as scope:
        try:
            async with (
                httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(LIST_TIMEOUT_S)) as http,
                Client(streamable_http_client(url, http_client=http)) as client,
            ):
                cursor: str | None = None
                for _ in range(MOST_PAGES):
                    page = await client.list_tools(cursor=cursor)
                    names += [tool.name for tool in page.tools if _TOOL_NAME.match(tool.name)]
                    cursor = page.next_cursor
                    if cursor is None or len(names) >= MOST_TOOLS:
                        break
        except Exception as exc:  # whatever the caller's server does wrong, the run still decides
            log.info("MCP server %r could not be asked for its tools: %s", name, type(exc).__name__)
            return []
    if scope.cancelled_caught:
        log.info("MCP server %r did not list its tools within %s s", name, LIST_TIMEOUT_S)
        return []
    return names[:MOST_TOOLS]
