"""Graceful drain: at SIGTERM stop taking calls, let the running ones finish, stop the rest, exit.

While draining:

- `/readyz` answers 503, so load balancers stop routing here; `/healthz` stays 200 (the
  process is up).
- A new call or session gets 503 with `Retry-After` and `Connection: close`: an MCP `tools/call`
  or `initialize`, an API request (`/v1/…`), a new stream. What a client may still need to finish
  a running call passes: other JSON-RPC requests (`tools/list`, which a client may ask for to
  check a result, `ping`, …), responses (an answer to a permission question) and notifications
  (a cancellation); a DELETE ending an MCP session; and `/healthz`, `/readyz`, `/metrics`.
- Calls in flight (MCP tool calls, API requests, background jobs) have until `grace_s`, less a
  reserve for stopping, to finish. Then their runs are stopped, process trees included: each
  ends with `ShuttingDown` and its session_id (a job is marked failed with both, so it can be
  continued); whatever else is left is ended; and the server stops. The whole takes at most
  about `grace_s`, which is therefore the platform's termination grace period (Cloud Run: 10 s).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..telemetry import metrics
from ..telemetry.activity import ACTIVITY, Activity

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 1
"""What a refused client is told: retry at once, and another replica will take the call."""
READY_WAIT_S = 2.0
"""How long `/readyz` waits for the store to answer."""
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
MAX_INSPECTED = 1 << 20
"""A body larger than this during a drain is taken for a new call."""
STARTS_WORK = frozenset({"initialize", "tools/call"})
SHUTTING_DOWN = "The server is shutting down and takes no new calls; retry (another replica will take it)."


def _reserve(grace_s: float) -> float:
    """The part of the grace period kept for stopping what is left."""
    return min(2.0, grace_s / 5)


class Drain:
    """The server's drain: its state, the guard that refuses new requests, and the sequence."""

    def __init__(
        self, grace_s: float, activity: Activity = ACTIVITY, ready: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """`ready`: returns once what the server needs answers (the store), or raises; `/readyz` asks it."""
        self.grace_s = grace_s
        self.ready = ready
        self.draining = False
        self.activity = activity
        self._waiting: anyio.CancelScope | None = None

    def guard(self, app: ASGIApp) -> ASGIApp:
        """`app` behind the drain: `/readyz`, and 503 for new requests while draining."""
        return _Guarded(self, app)

    async def run(self, stop_server: Callable[[], None]) -> None:
        """Drain, then call `stop_server`."""
        self.draining = True
        self.activity.draining = True
        metrics.DRAINING.set(1)
        reserve_s = _reserve(self.grace_s)
        finish_s = max(0.0, self.grace_s - reserve_s)
        logger.info(
            "draining: new calls are refused; %d call(s) and run(s) in flight get %g s to finish",
            self.activity.count(),
            finish_s,
        )
        with anyio.move_on_after(finish_s) as self._waiting:
            await self.activity.wait_idle()
        if self.activity.count():
            await self._stop_the_rest(reserve_s)
        logger.info("drained: stopping the server")
        stop_server()

    def hurry(self) -> None:
        """Stop waiting for the calls in flight: stop them now (a second signal)."""
        if self._waiting is not None:
            self._waiting.cancel()

    async def _stop_the_rest(self, within_s: float) -> None:
        """Stop the runs first: each ends with `ShuttingDown` and its session_id, which its call
        (or job) passes on. Then end the calls still left."""
        runs = self.activity.stop("run")
        with anyio.move_on_after(within_s / 2):
            await self.activity.wait_idle("run")
            with anyio.move_on_after(0.25):
                await self.activity.wait_idle("call")
        calls = self.activity.stop("call")
        logger.warning("stopped %d run(s) and %d other call(s) still in flight", runs, calls)
        with anyio.move_on_after(within_s / 2):
            await self.activity.wait_idle()  # the stopped calls answer their clients


class _Guarded:
    def __init__(self, drain: Drain, app: ASGIApp) -> None:
        self.drain = drain
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        if path == "/readyz" and method in ("GET", "HEAD"):
            await self._readyz(scope, receive, send)
            return
        if path in OPEN_PATHS or method == "DELETE":
            await self.app(scope, receive, send)
            return
        if self.drain.draining:
            if method != "POST":
                await _refuse(path)(scope, receive, send)
                return
            body = await _read_body(receive)
            if body is None or _starts_work(body):
                await _refuse(path)(scope, receive, send)
                return
            receive = _replay(body, receive)
        if method == "POST":
            with self.drain.activity.tracking("request"):  # a call the drain waits for
                await self.app(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _store_answers(self) -> bool:
        if self.drain.ready is None:
            return True
        try:
            with anyio.fail_after(READY_WAIT_S):
                await self.drain.ready()
        except Exception:
            return False
        return True

    async def _readyz(self, scope: Scope, receive: Receive, send: Send) -> None:
        retry = {"Retry-After": str(RETRY_AFTER_S)}
        if self.drain.draining:
            response = JSONResponse({"status": "draining"}, 503, headers=retry)
        elif not await self._store_answers():
            response = JSONResponse({"status": "store unavailable"}, 503, headers=retry)
        else:
            response = JSONResponse({"status": "ready"})
        await response(scope, receive, send)


def _refuse(path: str) -> JSONResponse:
    body: dict[str, Any]
    if path.startswith("/v1/"):  # the HTTP APIs' own error shape
        body = {"type": "error", "error": {"type": "api_error", "message": SHUTTING_DOWN}}
    else:  # MCP: a JSON-RPC error
        body = {"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": SHUTTING_DOWN}}
    headers = {"Retry-After": str(RETRY_AFTER_S), "Connection": "close"}
    return JSONResponse(body, status_code=503, headers=headers)


async def _read_body(receive: Receive) -> bytes | None:
    """The request body, or None if it is larger than `MAX_INSPECTED`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_INSPECTED:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _starts_work(body: bytes) -> bool:
    """Whether a body starts a call or a session (anything but JSON-RPC is taken to)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return True
    messages = parsed if isinstance(parsed, list) else [parsed]
    if not messages or not all(isinstance(m, dict) and m.get("jsonrpc") == "2.0" for m in messages):
        return True
    return any(m.get("method") in STARTS_WORK and "id" in m for m in messages)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the app the body already read, then passes on."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
