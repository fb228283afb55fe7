"""How the server is reached. stdio now; SSE and Streamable HTTP plug in here."""

from __future__ import annotations

import logging
import signal
from typing import Literal

import anyio
from mcp.server.stdio import stdio_server

from .bridge import ClaudeBridge
from .server import build_server

Transport = Literal["stdio"]
TRANSPORTS: tuple[Transport, ...] = ("stdio",)


logger = logging.getLogger(__name__)


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            logger.info("received %s: stopping every run and shutting down", signal.Signals(signum).name)
            scope.cancel()
            return


async def serve(bridge: ClaudeBridge, transport: Transport = "stdio") -> None:
    """Serve MCP on `transport` until the client goes away or a signal arrives.

    Either way the open calls are cancelled, which stops their CLI process trees.
    """
    server = build_server(bridge)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(_stop_on_signal, tasks.cancel_scope)
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())
        tasks.cancel_scope.cancel()
