"""How the server is reached. stdio now; SSE and Streamable HTTP plug in here."""

from __future__ import annotations

from typing import Literal

from mcp.server.stdio import stdio_server

from .bridge import ClaudeBridge
from .server import build_server

Transport = Literal["stdio"]
TRANSPORTS: tuple[Transport, ...] = ("stdio",)


async def serve(bridge: ClaudeBridge, transport: Transport = "stdio") -> None:
    """Serve MCP on `transport` until the client goes away."""
    server = build_server(bridge)
    async with bridge, stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())
