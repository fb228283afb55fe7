"""The one place a stdio start is deferred: the handshake and `tools/list` are answered before the
bridge is loaded, and every other request waits for it (#30, start-up cost).

An MCP client pays the server's start at every launch, and most of what claude-mcp loads beyond
the `mcp` SDK itself is the bridge: claude-agent-sdk, the store, the tools' handlers and their
pydantic models (~200 ms of CPU). The handshake and the tool listing need none of it, so they are
answered from `front.json`: what the full server says at `initialize` (its capabilities and
instructions) and lists, written by `python -m claude_mcp.mcp_surface.early` from the full
server and held equal to it by a test. The full server is loaded in the background as soon as the
connection starts (imported and built in a worker thread, its lifespan entered on the event
loop); a request other than `tools/list` that arrives first waits for it, then is handled by it
exactly as if it had been there from the start. A load that fails (a refused set-up, such as a
sandbox that cannot be made) stops the server with that error, one line and exit status 2 like
any refusal at start; a request that was waiting gets no result.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import HandlerEntry, Server
from mcp.shared.exceptions import MCPError
from mcp_types import METHOD_NOT_FOUND
from pydantic import ConfigDict

from .._version import __version__

FRONT = Path(__file__).with_name("front.json")
"""What the full server says at the handshake and lists (generated; see `front_of`)."""


class _Unchecked(types.RequestParams):
    """A waiting request's params as they came: the full server's own model checks them once it is loaded."""

    model_config = ConfigDict(extra="allow")


async def front_of(server: Server[Any]) -> dict[str, Any]:
    """What `server` says before any tool runs (the JSON written to `FRONT`): its name, instructions
    and extensions, its tool listing, and the request methods it serves (its capabilities follow)."""
    return {
        "name": server.name,
        "instructions": server.instructions,
        "extensions": server.extensions,
        "tools": [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in await _listed(server)],
        "requests": sorted(server._request_handlers),  # (the SDK has no public list of them)
    }


async def _listed(server: Server[Any]) -> list[types.Tool]:
    entry = server.get_request_handler("tools/list")
    assert entry is not None, "the server lists no tools"
    listed = await entry.handler(None, None)  # type: ignore[arg-type]  # (build_server's needs neither)
    assert isinstance(listed, types.ListToolsResult)
    return listed.tools


class EarlyServer(Server[Any]):
    """Serves the full server's methods from the start: `tools/list` from the front, `ping` and
    `server/discover` as the SDK does (as the full server does), and the others once `load()` has
    made the full server in a worker thread (imports and building: it must not need the event
    loop). From then on every request and notification is the full server's."""

    def __init__(self, load: Callable[[], Server[Any]], front: dict[str, Any] | None = None) -> None:
        front = front if front is not None else json.loads(FRONT.read_text())
        super().__init__(front["name"], version=__version__, instructions=front["instructions"], lifespan=self._loading)
        self.extensions = front["extensions"]
        self._load = load
        self._full: Server[Any] | None = None
        self._loaded = anyio.Event()
        for method in front["requests"]:  # the same methods, hence the same capabilities
            if self.get_request_handler(method) is None:
                self.add_request_handler(method, _Unchecked, self._when_loaded)
        tools = types.ListToolsResult(tools=[types.Tool.model_validate(tool) for tool in front["tools"]])

        async def list_tools(ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams) -> Any:
            return tools

        self.add_request_handler("tools/list", types.PaginatedRequestParams, list_tools)

    def get_request_handler(self, method: str) -> HandlerEntry[Any] | None:
        return self._full.get_request_handler(method) if self._full is not None else super().get_request_handler(method)

    def get_notification_handler(self, method: str) -> HandlerEntry[Any] | None:
        if self._full is not None:
            return self._full.get_notification_handler(method)
        return super().get_notification_handler(method)  # (the SDK's, as on the full server)

    async def _when_loaded(self, ctx: ServerRequestContext[Any, Any], params: _Unchecked) -> Any:
        await self._loaded.wait()
        assert self._full is not None
        entry = self._full.get_request_handler(ctx.method)
        if entry is None:
            raise MCPError(code=METHOD_NOT_FOUND, message="Method not found", data=ctx.method)
        typed = entry.params_type.model_validate({} if ctx.params is None else ctx.params, by_name=False)
        return await entry.handler(ctx, typed)

    @asynccontextmanager
    async def _loading(self, _: Server[Any]) -> AsyncIterator[dict[str, Any]]:
        stopped = anyio.Event()

        async def hold_full_server() -> None:
            full = await anyio.to_thread.run_sync(self._load)
            async with full.lifespan(full):
                self._full = full
                self._loaded.set()
                await stopped.wait()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(hold_full_server)
            try:
                yield {}
            finally:
                stopped.set()


if __name__ == "__main__":  # regenerate front.json after changing a tool, its models or the instructions
    from ..bridge.claude import ClaudeBridge
    from ..config.policy import Policy
    from .server import build_server

    front = anyio.run(front_of, build_server(ClaudeBridge(Policy(), depth=0)))
    FRONT.write_text(json.dumps(front, indent=1, ensure_ascii=False) + "\n")
