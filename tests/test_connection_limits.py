"""What one connection may hold over HTTP: a client that trickles its headers is cut off at the
deadline (slow-loris), whoever completes a request in time is served, and a connection kept
alive gets a deadline again for its next request. A real uvicorn on loopback with the server's
own protocol class."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from claude_mcp.web.limits import BoundedH11

pytestmark = pytest.mark.anyio


class QuickDeadline(BoundedH11):
    header_timeout_s = 0.5


async def hello(request: object) -> PlainTextResponse:
    return PlainTextResponse("hello")


@contextmanager
def listening() -> Iterator[uvicorn.Server]:
    app = Starlette(routes=[Route("/", hello)])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, http=QuickDeadline, log_level="warning", log_config=None)
    )
    yield server


def closed_by_server(connection: socket.socket) -> bool:
    try:
        return connection.recv(1) == b""
    except (ConnectionResetError, BlockingIOError):
        return False


async def test_trickled_headers_are_cut_off_and_a_prompt_request_is_served() -> None:
    with listening() as server:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(server.serve)
            with anyio.fail_after(10):
                while not server.started:
                    await anyio.sleep(0.01)
            port = server.servers[0].sockets[0].getsockname()[1]
            slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
            started = time.monotonic()
            for connection in slow:
                connection.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the end of the headers
            prompt = socket.create_connection(("127.0.0.1", port))
            prompt.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = b""
            while b"hello" not in answer:  # the headers and the body may come apart
                answer += await anyio.to_thread.run_sync(prompt.recv, 4096)
            for connection in slow:
                connection.settimeout(5)
                connection.sendall(b"X-Trickle: 1\r\n")  # still trickling: no help
                assert await anyio.to_thread.run_sync(closed_by_server, connection)
            assert time.monotonic() - started < 3
            prompt.settimeout(5)  # kept alive: its next request has a deadline too
            assert await anyio.to_thread.run_sync(closed_by_server, prompt)
            for connection in [*slow, prompt]:
                connection.close()
            server.should_exit = True
