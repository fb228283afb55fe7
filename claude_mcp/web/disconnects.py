"""A Streamable HTTP client that goes away mid-call stops the call's run.

Over Streamable HTTP the answer to a `tools/call` streams on the POST's own response; when the
client drops that connection before the answer, the MCP SDK ends the response but lets the call
run on (nobody can receive its answer: the server keeps no event store to replay it from). So
this layer watches each POST that carries a request: if the client disconnects before the
response has ended, it tells the session, in the protocol's own words, that the client cancelled
that request (`notifications/cancelled`, posted to the same session with the same credentials),
and the SDK cancels the call: the run and its CLI process tree stop, as when a client cancels.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

PATH = "/mcp"
MAX_WATCHED = 4 * 2**20
"""Bodies up to this size are read for their request id (the transport's own cap)."""


def request_id(body: bytes) -> str | int | None:
    """The id of the JSON-RPC request a POST body carries (None: a notification, a response, a batch)."""
    try:
        message = json.loads(body)
    except ValueError:
        return None
    if isinstance(message, dict) and "method" in message and isinstance(message.get("id"), str | int):
        return message["id"]  # type: ignore[no-any-return]
    return None


def with_cancel_on_disconnect(app: ASGIApp) -> ASGIApp:
    async def watched(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get("path") != PATH:
            await app(scope, receive, send)
            return
        body = bytearray()
        state: dict[str, Any] = {"answered": False, "cancelled": False}

        async def receiving() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(body) <= MAX_WATCHED:
                body.extend(message.get("body", b""))
            elif message["type"] == "http.disconnect" and not state["answered"] and not state["cancelled"]:
                state["cancelled"] = True
                await _cancel(app, scope, bytes(body))
            return message

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                state["answered"] = True
            await send(message)

        await app(scope, receiving, sending)

    return watched


async def _cancel(app: ASGIApp, scope: Scope, body: bytes) -> None:
    """Post `notifications/cancelled` for the request in `body` to its session, as its client."""
    rid = request_id(body)
    headers = dict(scope.get("headers") or [])
    if rid is None or b"mcp-session-id" not in headers:
        return
    note = {
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": {"requestId": rid, "reason": "The client went away before the answer."},
    }
    payload = json.dumps(note).encode()
    kept = [(k, v) for k, v in scope.get("headers") or [] if k not in (b"content-length", b"content-type")]
    cancel_scope = {
        **scope,
        "headers": [*kept, (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
    }
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": payload, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        return None

    try:
        await app(cancel_scope, receive, send)
        logger.info("a client went away mid-call: its request %s was cancelled", rid)
    except Exception:
        logger.warning("could not cancel the request of a client that went away", exc_info=True)
