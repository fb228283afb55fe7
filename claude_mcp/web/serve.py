"""How the server is reached and stopped: stdio (IDEs) or HTTP (`app.http_app`) until the client
goes away or a signal arrives; either way the open calls are cancelled, which stops their CLI
process trees."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from collections.abc import Iterator
from typing import Any

import anyio
import uvicorn
from mcp.server.stdio import stdio_server

from ..bridge.tenancy import Tenancy
from ..mcp_surface.server import build_server
from .app import Transport, check_binding, http_app

logger = logging.getLogger(__name__)


async def _on_signal(stop: Any) -> None:
    """Call `stop()` at the first SIGTERM, SIGINT or SIGHUP."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            logger.info("received %s: stopping every run and shutting down", signal.Signals(signum).name)
            stop()
            return


class _WebServer(uvicorn.Server):
    """uvicorn, minus its own signal handling: ours stops the runs first, then the server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(
    tenancy: Tenancy,
    transport: Transport = "stdio",
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    allowed_hosts: tuple[str, ...] = (),
    api_heartbeat_s: float | None = None,
) -> None:
    """Serve MCP (and over HTTP, unless `api_heartbeat_s` is None, the Anthropic and OpenAI APIs)
    until the client goes away (stdio) or a signal arrives.

    Either way the open calls are cancelled, which stops their CLI process trees.
    """
    server = build_server(tenancy)
    if transport == "stdio":
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_on_signal, tasks.cancel_scope.cancel)
            async with stdio_server() as (read_stream, write_stream):
                await server.run(read_stream, write_stream, server.create_initialization_options())
            tasks.cancel_scope.cancel()
        return
    check_binding(host, tenancy)
    app = http_app(server, tenancy, transport, host, allowed_hosts, api_heartbeat_s=api_heartbeat_s)
    web = _WebServer(uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5))
    async with tenancy, anyio.create_task_group() as tasks:  # the store and warm processes live as long as the server

        def stop() -> None:
            web.should_exit = True

        tasks.start_soon(_on_signal, stop)
        tasks.start_soon(_announce, web, host, "/mcp" if transport == "http" else "/sse")
        await web.serve()
        tasks.cancel_scope.cancel()


async def _announce(web: uvicorn.Server, host: str, path: str) -> None:
    while not web.started:
        await anyio.sleep(0.01)
    port = web.servers[0].sockets[0].getsockname()[1]
    print(f"claude-mcp listening on http://{host}:{port}{path}", file=sys.stderr, flush=True)
