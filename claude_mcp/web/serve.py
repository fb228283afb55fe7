"""How the server is reached and stopped: stdio (IDEs) or HTTP (`app.http_app`) until the client
goes away or a signal arrives. Over stdio a signal cancels the open calls at once, which stops
their CLI process trees; over HTTP the first one drains (`drain.Drain`: new calls refused, running
ones given the grace period, then stopped) and a second one stops everything at once."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.lowlevel.server import Server
from mcp.server.stdio import stdio_server

from ..mcp_surface.early import EarlyServer

if TYPE_CHECKING:
    from ..bridge.tenancy import Tenancy
    from .app import McpSessions, Transport

logger = logging.getLogger(__name__)


async def _on_signal(stop: Any) -> None:
    """Call `stop()` at the first SIGTERM, SIGINT or SIGHUP."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            logger.info("received %s: stopping every run and shutting down", signal.Signals(signum).name)
            stop()
            return


async def serve(
    tenancy: Tenancy,
    transport: Transport = "stdio",
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    allowed_hosts: tuple[str, ...] = (),
    api_heartbeat_s: float | None = None,
    drain_grace_s: float = 10,
    metrics_token: str | None = None,
    max_connections: int = 1000,
    sessions: McpSessions | None = None,
) -> None:
    """Serve MCP (and over HTTP, unless `api_heartbeat_s` is None, the Anthropic and OpenAI APIs)
    until the client goes away (stdio) or a signal arrives.

    Over stdio the open calls are then cancelled, which stops their CLI process trees; over HTTP
    the server drains for up to `drain_grace_s` first. `metrics_token`: the operator's token for
    `/metrics` (see `metrics.MetricsAccess`).
    """
    from ..mcp_surface.server import build_server

    server = build_server(tenancy)
    if transport == "stdio":
        await serve_stdio(server)
        return
    from .http_serve import serve_http

    await serve_http(
        server,
        tenancy,
        transport,
        host=host,
        port=port,
        allowed_hosts=allowed_hosts,
        api_heartbeat_s=api_heartbeat_s,
        drain_grace_s=drain_grace_s,
        metrics_token=metrics_token,
        max_connections=max_connections,
        sessions=sessions,
    )


async def serve_stdio(server: Server[Any]) -> None:
    """Serve one client over stdio until it goes away or a signal arrives (then the open calls are
    cancelled, which stops their CLI process trees)."""
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(_on_signal, tasks.cancel_scope.cancel)
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())
        tasks.cancel_scope.cancel()


async def serve_stdio_early(load: Callable[[], Server[Any]]) -> None:
    """Serve one client over stdio, answering the handshake and `tools/list` while `load` makes the
    full server in a worker thread (see `mcp_surface.early`)."""
    await serve_stdio(EarlyServer(load))
