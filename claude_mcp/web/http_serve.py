"""HTTP serving (Streamable HTTP or SSE, and the HTTP APIs) under uvicorn until a signal: the
first one drains (`drain.Drain`: new calls refused, running ones given the grace period, then
stopped), a second one stops everything at once. Imported only when serving over HTTP (uvicorn and
Starlette cost a stdio start ~0.1 s)."""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import uvicorn

from ..bridge.tenancy import Tenancy
from ..telemetry import logs
from .app import McpSessions, Transport, check_binding, http_app, security_settings, with_host_checks
from .disconnects import with_cancel_on_disconnect
from .drain import Drain
from .limits import BoundedH11
from .metrics import MetricsAccess, with_metrics

logger = logging.getLogger(__name__)


async def _drain_on_signals(drain: Drain, stop: Callable[[], None]) -> None:
    """Drain at the first SIGTERM, SIGINT or SIGHUP; at the next, stop every run at once."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with anyio.create_task_group() as tasks:
            async for signum in signals:
                name = signal.Signals(signum).name
                if not drain.draining:
                    logger.info("received %s: draining (up to %g s), then shutting down", name, drain.grace_s)
                    tasks.start_soon(drain.run, stop)
                else:
                    logger.info("received %s again: stopping every run now", name)
                    drain.hurry()


class _WebServer(uvicorn.Server):
    """uvicorn, minus its own signal handling: ours stops the runs first, then the server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_http(
    server: Any,
    tenancy: Tenancy,
    transport: Transport,
    *,
    host: str,
    port: int,
    allowed_hosts: tuple[str, ...],
    api_heartbeat_s: float | None,
    drain_grace_s: float,
    metrics_token: str | None,
    max_connections: int,
    sessions: McpSessions | None,
) -> None:
    """Serve `server` (and the HTTP APIs) over HTTP until a signal; see `serve.serve`."""
    check_binding(host, tenancy)
    app = http_app(server, tenancy, transport, host, allowed_hosts, api_heartbeat_s=api_heartbeat_s, sessions=sessions)
    drain = Drain(drain_grace_s, ready=tenancy.store.ping)
    served = with_host_checks(
        with_metrics(
            drain.guard(with_cancel_on_disconnect(app)),
            MetricsAccess(tenancy, host=host, operator_token=metrics_token),
        ),
        security_settings(host, allowed_hosts),
    )
    # Once drained only idle streams are left open: uvicorn need not wait long for them. Its log
    # lines go through our handlers (text or JSON), not a format of its own.
    config = uvicorn.Config(
        served,
        host=host,
        port=port,
        log_level="warning",
        log_config=None,
        timeout_graceful_shutdown=1,
        http=BoundedH11,
        limit_concurrency=max_connections,
    )
    web = _WebServer(config)
    async with tenancy, anyio.create_task_group() as tasks:  # the store and warm processes live as long as the server

        def stop() -> None:
            web.should_exit = True

        tasks.start_soon(_drain_on_signals, drain, stop)
        tasks.start_soon(_announce, web, host, "/mcp" if transport == "http" else "/sse")
        await web.serve()
        tasks.cancel_scope.cancel()


async def _announce(web: uvicorn.Server, host: str, path: str) -> None:
    while not web.started:
        await anyio.sleep(0.01)
    port = web.servers[0].sockets[0].getsockname()[1]
    logs.announce(f"claude-mcp listening on http://{host}:{port}{path}")
