"""What the MCP SDK's Streamable HTTP transport answers outside JSON-RPC, answered inside it.

A thin ASGI wrapper around the transport's path (`/mcp`), not a fork of it:

- The transport refuses a foreign Host (421) or Origin (403), a wrong Content-Type (400) and a
  body over its cap (413) in plain text. The spec lets such an answer carry a JSON-RPC error
  without an id; here it does (same status, the transport's own words as its message).
- A request whose id is neither a string nor an integer (a float, an object, null) is not one the
  transport can answer: it takes it for a notification (202, no answer). It is refused here with
  400 and a JSON-RPC `Invalid Request` error.
- A request whose id is already in flight in the same session would never be answered (the
  transport keys its response streams by id): the second is refused at once with 400 and an
  error for that id; the first is answered as usual.

A POST's body is read here (at most the transport's own cap, then handed on unchanged), and only
the `id` and `method` of its top-level object are taken from it: from its first 64 KiB, parsed as a
partial document, where a client writes them; else from the whole, which pydantic-core parses
without making Python objects of the rest (~50 ms for a million list items). A JSON-RPC batch, which
the transport refuses, is left to it.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import anyio.to_thread
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE
from pydantic import BaseModel, ConfigDict
from pydantic_core import from_json
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..http_api.inputs import OFF_LOOP_BYTES, give_back_memory

INVALID_REQUEST = -32600
PREFIX_BYTES = 64 * 1024
SESSION_HEADER = "mcp-session-id"


def jsonrpc_error(message: str, request_id: str | int | None = None) -> bytes:
    """A JSON-RPC error response, as bytes."""
    error = {"jsonrpc": "2.0", "id": request_id, "error": {"code": INVALID_REQUEST, "message": message}}
    return json.dumps(error).encode()


class Head(BaseModel):
    """What is looked at of a JSON-RPC message."""

    model_config = ConfigDict(extra="ignore")

    id: Any = None
    method: Any = None


def request_id_in(body: bytes) -> tuple[Any] | None:
    """(the id,) of the JSON-RPC request (an object with a `method` and an `id`) a POST's body holds;
    None for anything else (a notification, a response, a batch, what is not JSON: the transport
    answers those itself)."""
    if not body.lstrip().startswith(b"{"):
        return None
    if len(body) > PREFIX_BYTES:
        try:
            start = from_json(body[:PREFIX_BYTES], allow_partial=True)
        except ValueError:
            start = None
        # Both there, and neither the last key of the prefix (a number cut short would look whole).
        if isinstance(start, dict) and {"id", "method"} <= start.keys() and list(start)[-1] not in ("id", "method"):
            return (start["id"],)
    try:
        head = Head.model_validate_json(body)
    except ValueError:
        return None
    return (head.id,) if {"id", "method"} <= head.model_fields_set else None


def well_formed_id(request_id: object) -> bool:
    return isinstance(request_id, str) or (isinstance(request_id, int) and not isinstance(request_id, bool))


class JsonRpcGuard:
    """Wraps the app serving Streamable HTTP at `path` (see the module's docstring)."""

    def __init__(self, app: ASGIApp, *, path: str = "/mcp", max_body: int = DEFAULT_MAX_REQUEST_BODY_SIZE) -> None:
        self.app = app
        self.path = path
        self.max_body = max_body
        self._in_flight: set[tuple[str, str | int]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") != self.path:
            await self.app(scope, receive, send)
            return
        send = _json_refusals(send)
        if scope["method"] != "POST" or not Headers(scope=scope).get("content-type", "").startswith("application/json"):
            await self.app(scope, receive, send)  # the transport refuses what is not JSON itself
            return
        body, receive = await _read_some(receive, self.max_body)
        found = request_id_in(body) if body is not None else None
        large = body is None or len(body) > OFF_LOOP_BYTES
        del body  # the transport reads it again (from `receive`): not held twice while it runs
        if found is None:
            await self.app(scope, receive, send)
            return
        (request_id,) = found
        if not well_formed_id(request_id):
            await _answer(send, 400, jsonrpc_error("A request's id must be a string or an integer."))
            return
        session = Headers(scope=scope).get(SESSION_HEADER)
        if session is None:  # no session yet (an initialize) or none at all: the transport answers it
            await self.app(scope, receive, send)
            return
        key = (session, request_id)
        if key in self._in_flight:
            shown = request_id if len(str(request_id)) <= 100 else f"{str(request_id)[:100]}…"
            message = f"Request id {shown!r} is already in use in this session: give each request an id of its own."
            await _answer(send, 400, jsonrpc_error(message, request_id))
            return
        self._in_flight.add(key)
        try:
            await self.app(scope, receive, send)
        finally:
            self._in_flight.discard(key)
            if large:  # what the transport parsed of it is dropped by now
                await anyio.to_thread.run_sync(give_back_memory)


async def _read_some(receive: Receive, most: int) -> tuple[bytes | None, Receive]:
    """The whole body if it is at most `most` bytes (None otherwise), and a `receive` that hands
    the app everything read here, then the rest, unchanged."""
    read: list[Message] = []
    size, complete = 0, False
    while size <= most:
        message = await receive()
        read.append(message)
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            complete = True
            break
    body = b"".join(m.get("body", b"") for m in read if m["type"] == "http.request")
    pending = list(read)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return (body if complete and size <= most else None), replay


def _json_refusals(send: Send) -> Send:
    """`send`, with a plain-text refusal (status 400 and over) turned into a JSON-RPC error."""
    refusal: Message | None = None
    text = bytearray()

    async def sending(message: Message) -> None:
        nonlocal refusal
        if message["type"] == "http.response.start" and message["status"] >= 400:
            kind = Headers(raw=message.get("headers", [])).get("content-type", "")
            if not kind.startswith("application/json") and not kind.startswith("text/event-stream"):
                refusal = message
                return
        if refusal is not None and message["type"] == "http.response.body":
            text.extend(message.get("body", b""))
            if not message.get("more_body", False):
                said = text.decode(errors="replace").strip()[:200] or f"HTTP {refusal['status']}"
                await _answer(send, refusal["status"], jsonrpc_error(said), _kept(refusal))
            return
        await send(message)

    return sending


def _kept(start: Message) -> list[tuple[bytes, bytes]]:
    """The headers of a refusal worth keeping (a challenge, a session id), without its body's."""
    dropped = {b"content-type", b"content-length"}
    return [(name, value) for name, value in start.get("headers", []) if name.lower() not in dropped]


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    start = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*start, *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
